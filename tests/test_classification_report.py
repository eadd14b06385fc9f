"""The classification task's report: its figures (ROC, confusion matrices, study probabilities,
the gallery of the most confident errors) and chapters (cohort, methods from the config, final
results), built from a small fake results tree of two study types and two classes, and rendered
to HTML and LaTeX."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import PIL.Image
import pytest
from matplotlib.figure import Figure as MplFigure

from segsweep.evaluate import gallery
from segsweep.evaluate.calibration import reliability_table
from segsweep.io.image_sets import read_image_set, write_image_set
from segsweep.plotting import save
from segsweep.report import classification_figures as cf
from segsweep.report.chapters import classification as chapters
from segsweep.report.document import Document, Figure, Paragraph, Table, walk
from segsweep.report.latex import write_latex
from segsweep.report.render import render_html
from segsweep.sweep.grammar import sweep_runs

CLASSES = ["normal", "abnormal"]
# study, patient, study type, true class, study probability of abnormal, images
STUDIES = [
    ("s1", "p1", "XR_WRIST", "normal", 0.10, 2),
    ("s2", "p1", "XR_ELBOW", "normal", 0.70, 1),  # false positive
    ("s3", "p2", "XR_WRIST", "normal", 0.90, 3),  # false positive, the more confident
    ("s4", "p3", "XR_ELBOW", "abnormal", 0.20, 2),  # false negative
    ("s5", "p3", "XR_WRIST", "abnormal", 0.80, 1),
    ("s6", "p4", "XR_ELBOW", "abnormal", 0.95, 2),
]
THRESHOLD = 0.5
TRAIN = {
    "model": "resnet18",
    "input_size": None,
    "dropout": 0.2,
    "init_from": None,
    "freeze_blocks": 0,
    "optimizer": "adam",
    "momentum": 0.9,
    "lr": 0.001,
    "lr_policy": "step",
    "decay": 0.0,
    "lr_gamma": 0.1,
    "lr_step_epochs": 10,
    "weight_decay": 0.0001,
    "class_weights": "balanced",
    "batch_size": 16,
    "epochs": 30,
    "patience": 5,
    "early_stopping_metric": "val_auc",
    "checkpoint_every": 1,
    "checkpoint_unit": "epochs",
    "augment": True,
    "aug_p": 0.5,
    "aug_flip": True,
    "aug_shift": 0.1,
    "aug_rotate": 10.0,
    "aug_brightness": 0.0,
    "aug_contrast": 0.1,
    "aug_gamma": 0.0,
    "seed": 0,
}
CONFIG = {
    "task": "classification",
    "data": {
        "source": "synthetic",
        "labels": {"normal": 0, "abnormal": 1},
        "radiographs": {"seed": 7, "study_types": ["XR_WRIST", "XR_ELBOW"], "abnormal": 0.4},
    },
    "preprocess": {"image_size": 32},
    "split": {"seed": 0, "stratify": "label", "folds": 0},
    "train": TRAIN,
    "selection": {"metric": "auc", "level": "study", "higher_is_better": True},
    "final": {"n_best": 1, "group_by": []},
    "classification": {
        "study_probability": "mean",
        "threshold": "youden",
        "bootstrap": 1000,
        "gallery": 2,
    },
}
SWEEP = {"grids": {"lr": {"lr": [0.001, 0.0001]}}, "repeats": 1}


def per_study() -> pd.DataFrame:
    rows = [
        {
            "study_id": s,
            "patient_id": p,
            "study_type": t,
            "n_images": n,
            "true": c,
            "p_normal": 1 - q,
            "p_abnormal": q,
            "predicted": "abnormal" if q >= THRESHOLD else "normal",
            "threshold": THRESHOLD,
        }
        for s, p, t, c, q, n in STUDIES
    ]
    return pd.DataFrame(rows)


def per_image() -> pd.DataFrame:
    """Each study's images spread ±0.05 around its probability, the first the lowest."""
    rows = []
    for s, p, t, c, q, n in STUDIES:
        for i, spread in enumerate(np.linspace(-0.05, 0.05, n) if n > 1 else [0.0]):
            value = float(np.clip(q + spread, 0, 1))
            rows.append(
                {
                    "image_id": f"{s}_i{i}",
                    "study_id": s,
                    "patient_id": p,
                    "study_type": t,
                    "path": f"{s}/{i}.png",
                    "true": c,
                    "p_normal": 1 - value,
                    "p_abnormal": value,
                    "predicted": "abnormal" if value >= THRESHOLD else "normal",
                }
            )
    return pd.DataFrame(rows)


def metrics_rows(model: str) -> list[dict]:
    values = {
        "accuracy": (0.667, 0.333, 1.0),
        "sensitivity": (0.667, 0.0, 1.0),
        "specificity": (0.333, 0.0, 1.0),
        "precision": (0.5, 0.0, 1.0),
        "f1": (0.571, 0.0, 0.889),
        "auc": (0.778, 0.25, 1.0),
        "kappa": (0.0, -0.5, 0.75),
    }
    return [
        {
            "model": model,
            "split": split,
            "metric": metric,
            "value": v,
            "low": lo,
            "high": hi,
            "n_studies": 6 if split == "test" else 5,
            "n_patients": 4 if split == "test" else 3,
            "threshold": THRESHOLD,
        }
        for split in ("val", "test")
        for metric, (v, lo, hi) in values.items()
    ]


def study_type_rows(model: str) -> list[dict]:
    rows = []
    for split in ("val", "test"):
        for kind, n, patients, positive, accuracy in (
            ("XR_ELBOW", 3, 3, 2, 0.667),
            ("XR_WRIST", 3, 3, 1, 0.333),
            ("all", 6, 4, 3, 0.5),
        ):
            row = {
                "model": model,
                "split": split,
                "study_type": kind,
                "n_studies": n,
                "n_patients": patients,
                "n_positive": positive,
            }
            for metric, value in (
                ("accuracy", accuracy),
                ("sensitivity", 0.5),
                ("specificity", float("nan")),
                ("kappa", 0.1),
                ("auc", 0.7),
            ):
                row |= {metric: value, f"{metric}_low": value - 0.2, f"{metric}_high": value + 0.2}
            rows.append(row)
    return rows


def confusion_rows(model: str) -> list[dict]:
    counts = {
        ("normal", "normal"): 1,
        ("normal", "abnormal"): 2,
        ("abnormal", "normal"): 1,
        ("abnormal", "abnormal"): 2,
    }
    return [
        {"model": model, "split": split, "true": t, "predicted": p, "count": n}
        for split in ("val", "test")
        for (t, p), n in counts.items()
    ]


def roc_rows(model: str) -> list[dict]:
    fpr = np.linspace(0, 1, 101)
    tpr = np.sqrt(fpr)
    return [
        {
            "model": model,
            "split": split,
            "fpr": f,
            "tpr": t,
            "tpr_low": t * 0.8,
            "tpr_high": min(1.0, t * 1.1 + 0.05),
            "auc": 0.778,
        }
        for split in ("val", "test")
        for f, t in zip(fpr, tpr, strict=True)
    ]


def calibration_rows(model: str) -> list[dict]:
    return [
        {
            "model": model,
            "split": split,
            "n_studies": 6 if split == "test" else 5,
            "n_patients": 4 if split == "test" else 3,
            "bins": 2,
            "probability": "p_abnormal",
            "ece": 0.2,
            "ece_low": 0.1,
            "ece_high": 0.4,
        }
        for split in ("val", "test")
    ]


def reliability_rows(model: str) -> list[dict]:
    bins = reliability_table(per_study(), CLASSES)
    return [
        {"model": model, "split": s, **row}
        for s in ("val", "test")
        for row in bins.to_dict("records")
    ]


def write_results(root: Path, models: list[str]) -> SimpleNamespace:
    """A fake results tree of `models` (the same predictions each) and the report inputs."""
    tables = root / "tables"
    tables.mkdir(parents=True)
    paths = {}
    for name, rows in (
        ("classification_metrics", metrics_rows),
        ("study_types", study_type_rows),
        ("confusion", confusion_rows),
        ("roc", roc_rows),
        ("calibration", calibration_rows),
        ("reliability", reliability_rows),
    ):
        paths[name] = tables / f"{name}.csv"
        pd.DataFrame([r for m in models for r in rows(m)]).to_csv(paths[name], index=False)
    final = root / "final.csv"
    pd.DataFrame({"run_id": models, "group": ["overall", *["lr"] * (len(models) - 1)]}).to_csv(
        final, index=False
    )
    studies, images = {}, {}
    for model in models:
        folder = root / "final" / model / "test"
        folder.mkdir(parents=True)
        studies[model], images[model] = folder / "per_study.csv", folder / "per_image.csv"
        per_study().to_csv(studies[model], index=False)
        per_image().to_csv(images[model], index=False)
    table = per_image()
    rng = np.random.default_rng(0)
    pixels = rng.normal(size=(len(table), 32, 32)).astype(np.float32)
    pixels[:, 8:24, 14:18] += 3.0  # a bright bar: something to see
    h5 = root / "datasets" / "test.h5"
    text = {
        c: table[c].tolist() for c in ("image_id", "study_id", "patient_id", "study_type", "path")
    }
    write_image_set(h5, pixels, (table["true"] == "abnormal").astype(int).to_numpy(), text, CLASSES)
    # the cohort: the test studies above, and training and validation studies of other patients
    cohort = [(s, p, t, c, n, "test") for s, p, t, c, _, n in STUDIES]
    cohort += [
        ("s7", "p5", "XR_WRIST", "normal", 2, "train"),
        ("s8", "p5", "XR_ELBOW", "abnormal", 1, "train"),
        ("s9", "p6", "XR_WRIST", "abnormal", 1, "val"),
        ("s10", "p7", "XR_ELBOW", "normal", 3, "val"),
    ]
    manifest = pd.DataFrame(
        [
            {
                "subject_id": s,
                "patient_id": p,
                "study_type": t,
                "label": c,
                "n_images": n,
                "valid": True,
            }
            for s, p, t, c, n, _ in cohort
        ]
        + [
            {
                "subject_id": "s11",
                "patient_id": "p8",
                "study_type": "XR_WRIST",
                "label": "normal",
                "n_images": 1,
                "valid": False,
            }
        ]
    )
    data = root / "data"
    data.mkdir()
    manifest.to_csv(data / "manifest.csv", index=False)
    pd.DataFrame(
        [
            {"image": f"{s}/{i}.png", "label": c, "study_id": s, "patient_id": p, "study_type": t}
            for s, p, t, c, n, _ in cohort
            for i in range(n)
        ]
    ).to_csv(data / "images.csv", index=False)
    pd.DataFrame({"subject_id": [c[0] for c in cohort], "split": [c[5] for c in cohort]}).to_csv(
        data / "splits.csv", index=False
    )
    pd.DataFrame([{"subject": "s11", "file": "s11/0.png", "problem": "unreadable image"}]).to_csv(
        data / "dropped.csv", index=False
    )
    checks = data / "splits_checks.csv"
    pd.DataFrame({"check": ["no patient in two sets"], "passed": [True], "detail": [""]}).to_csv(
        checks, index=False
    )
    examples = data / "examples.png"
    fig = MplFigure(figsize=(3, 1.5))
    fig.subplots().imshow(pixels[0], cmap="gray")
    save(fig, examples)  # drawn by the data stage: PNG, SVG and PDF
    figures = {
        name: root / "figures" / f"{name}.png"
        for name in ("cls_roc", "cls_confusion", "cls_probabilities", "cls_calibration")
    }
    cf.draw_classification_figures(final, paths, studies, figures)
    galleries = {}  # drawn by the final test, one per model, as it reads the test images
    for model in models:
        galleries[model] = root / "final" / model / "gallery.png"
        tables = pd.read_csv(studies[model]), pd.read_csv(images[model])
        shown = gallery.gallery_cases(*tables, CLASSES, 2)["study_id"].tolist()
        gallery.gallery_figure(
            {model: tables[0]},
            {model: tables[1]},
            read_image_set(h5, studies=shown),
            2,
            galleries[model],
        )
    return SimpleNamespace(
        config=CONFIG,
        sweep=SWEEP,
        manifest=data / "manifest.csv",
        dropped=data / "dropped.csv",
        splits=data / "splits.csv",
        checks=checks,
        description=None,
        tables=paths,
        figures={**figures, "cls_examples": examples},
        final=final,
        provenance={},  # no run's provenance.json: the methods name no ImageNet file
        classification={
            "images": data / "images.csv",
            "test_per_study": studies,
            "test_per_image": images,
            "gallery": galleries,
        },
        h5=h5,
    )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    run = sweep_runs(CONFIG, SWEEP)[0].run_id
    return write_results(tmp_path_factory.mktemp("cls"), [run])


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    return write_results(
        tmp_path_factory.mktemp("cls2"), [r.run_id for r in sweep_runs(CONFIG, SWEEP)]
    )


def paragraphs(blocks: list) -> str:
    """The text of every paragraph, references as their kind and key."""
    out = []
    for block in walk(blocks):
        if isinstance(block, Paragraph):
            out.append(
                "".join(
                    f"[{' '.join(i.key for i in p.items)}]" if hasattr(p, "items") else str(p)
                    for p in block.parts
                )
            )
    return "\n".join(out)


def items(chapter) -> dict[str, Table | Figure]:
    return {b.key: b for b in walk(chapter.blocks) if isinstance(b, Table | Figure)}


def test_every_figure_is_written_as_png_svg_and_pdf(inputs: SimpleNamespace) -> None:
    pngs = [inputs.figures[n] for n in ("cls_roc", "cls_confusion", "cls_probabilities")]
    for name, png in [*enumerate(pngs), *inputs.classification["gallery"].items()]:
        png = Path(png)
        assert png.stat().st_size > 1000, name
        assert png.with_suffix(".svg").is_file() and png.with_suffix(".pdf").is_file()
        with PIL.Image.open(png) as image:
            assert image.width <= 6.3 * 150 + 2  # fitted to the text width


def test_the_gallery_shows_the_most_confident_errors_by_their_most_telling_image() -> None:
    cases = gallery.gallery_cases(per_study(), per_image(), CLASSES, n=4)
    fp, fn = cases[cases["category"] == "fp"], cases[cases["category"] == "fn"]
    assert fp["study_id"].tolist() == ["s3", "s2"]  # highest probability first
    assert fp["image_id"].tolist() == ["s3_i2", "s2_i0"]  # the study's most abnormal image
    assert fn["study_id"].tolist() == ["s4"] and fn["image_id"].tolist() == ["s4_i0"]
    assert gallery.gallery_cases(per_study(), per_image(), CLASSES, n=1)["study_id"].tolist() == [
        "s3",
        "s4",
    ]


def test_a_gallery_without_errors_of_a_kind_says_none(
    inputs: SimpleNamespace, tmp_path: Path
) -> None:
    studies = per_study()
    studies = studies[studies["study_id"] != "s4"]  # no false negative left
    images = read_image_set(inputs.h5, studies=["s2", "s3"])
    out = tmp_path / "gallery.png"
    gallery.gallery_figure({"m": studies}, {"m": per_image()}, images, 2, out)
    assert "none" in out.with_suffix(".svg").read_text()


def test_figures_without_models_still_draw(tmp_path: Path) -> None:
    empty = pd.DataFrame(columns=["model", "split", "fpr", "tpr", "tpr_low", "tpr_high", "auc"])
    cf.roc_figure(empty, tmp_path / "roc.png")
    cf.confusion_figure(
        pd.DataFrame(columns=["model", "split", "true", "predicted", "count"]),
        tmp_path / "confusion.png",
    )
    cf.probability_figure({}, CLASSES, tmp_path / "p.png")
    assert all((tmp_path / f).is_file() for f in ("roc.png", "confusion.png", "p.png"))


def test_the_roc_legend_gives_the_auc_with_its_interval(inputs: SimpleNamespace) -> None:
    svg = Path(inputs.figures["cls_roc"]).with_suffix(".svg").read_text()
    assert "AUC 0.778 [0.250, 1.000]" in svg
    assert "6 studies, 4 patients" in svg  # the test panel's title
    confusion = Path(inputs.figures["cls_confusion"]).with_suffix(".svg").read_text()
    assert "67 %" in confusion  # 2 of the 3 normal studies called abnormal: the row's share


def test_the_data_chapter_counts_images_studies_and_patients(inputs: SimpleNamespace) -> None:
    chapter = chapters.data_chapter(inputs)
    found = items(chapter)
    assert {"cls-cohort", "cls-examples", "cls-dropped", "cls-split-audit"} <= set(found)
    said = paragraphs(chapter.blocks)
    assert (
        "It has 18 images in 10 studies of 7 patients, of 2 study types (XR_ELBOW, XR_WRIST)"
        in said
    )
    assert "5 studies (50 %) are abnormal and 5 (50 %) normal" in said
    assert "6 studies of 4 patients for test" in said
    assert "1 study failed input validation and takes no part" in said
    assert "audits the split: every check passed" in said
    assert "seed 7" in said and "32 × 32 pixels" in said
    assert found["cls-dropped"].columns == ["Study", "File", "Problem"]
    cohort = found["cls-cohort"]
    assert "10 studies of 7 patients" in cohort.caption
    assert cohort.columns == [
        "Split",
        "Study type",
        "Patients",
        "Studies",
        "normal",
        "abnormal",
        "Images",
    ]
    assert ["Test", "All", "4", "6", "3 (50 %)", "3 (50 %)", "11"] in cohort.rows
    assert ["All", "All", "7", "10", "5 (50 %)", "5 (50 %)", "18"] == cohort.rows[-1]


def test_the_methods_chapter_is_written_from_the_config(inputs: SimpleNamespace) -> None:
    chapter = chapters.methods_chapter(inputs)
    said = paragraphs(chapter.blocks)
    for phrase in (
        "torchvision's ResNet-18",
        "one output per class (2: normal, abnormal), with dropout 0.2 before it",
        "the images at their packed size, 32 × 32 pixels",
        "Every run starts from random weights (trained from scratch)",
        "The optimiser is Adam, with a learning rate swept over 0.0001, 0.001, multiplied",
        "multiplied by 0.1 every 10 epochs",
        "a weight decay of 0.0001 and a batch size of 16 images",
        "n/(K·n_k)",
        "left-right flips, shifts by up to 0.1 of the size, rotations by up to ± 10°",
        "at most 30 epochs, stopping early after 5 epochs without improvement of val_auc",
        "a checkpoint is saved every epoch",
        "the highest study-level ROC AUC on the validation set",
        "the mean of its images' probabilities",
        "Youden's J",
        "1000 resamples of the patients",
    ):
        assert phrase in said, phrase
    assert "brightness" not in said  # set to 0: off
    assert "cls-swept" in items(chapter)


def test_methods_name_transfer_and_a_fixed_threshold() -> None:
    train = {**TRAIN, "init_from": "pretrain", "freeze_blocks": 2}
    said = chapters.initialisation_sentence(train, {}, ["pretrain", "other"])
    assert said == (
        "Every run starts from the selected checkpoint of run pretrain of this sweep (the "
        "weights whose name and shape match are loaded), with the first 2 blocks frozen."
    )
    config = {**CONFIG, "classification": {**CONFIG["classification"], "threshold": 0.5}}
    assert chapters.threshold_sentence(config, CLASSES).endswith(
        "reaches the threshold 0.500, fixed by classification.threshold."
    )


def test_the_results_chapter_states_metrics_with_their_patients(inputs: SimpleNamespace) -> None:
    chapter = chapters.results_chapter(inputs)
    found = items(chapter)
    assert set(found) == {
        "cls-metrics",
        "cls-study-types",
        "cls-confusion",
        "cls-roc",
        "cls-probabilities",
        "cls-gallery-default",
        "cls-calibration",
    }
    metrics, types = found["cls-metrics"], found["cls-study-types"]
    gallery = found["cls-gallery-default"].caption
    assert "its 2 most confident of 2 false positives" in gallery
    assert "1 of 1 false negative (the lowest" in gallery
    assert metrics.columns == ["Metric", "Validation", "Test"]
    assert ["ROC AUC", "0.778 [0.250, 1.000]", "0.778 [0.250, 1.000]"] in metrics.rows
    assert (
        "(6 studies of 4 patients)" in metrics.caption
        and "5 studies of 3 patients" in metrics.caption
    )
    assert types.columns[:4] == ["Study type", "Studies", "Patients", "Abnormal"]
    assert [r[0] for r in types.rows] == ["XR_ELBOW", "XR_WRIST", "All"]  # All last, as Table 5.1
    assert types.rows[-1][4] == "0.500 [0.300, 0.700]" and types.rows[-1][6] == "–"
    assert "6 studies of 4 patients" in types.caption
    said = paragraphs(chapter.blocks)
    assert "On the 4 patients of the test set (6 studies)" in said
    assert (
        "an accuracy of 0.667 [0.333, 1.000]" in said
        and "a ROC AUC of 0.778 [0.250, 1.000]" in said
    )
    assert "threshold on the study probability was 0.500 for" in said
    assert "Youden's J" in said and "5 studies of 3 patients" in said
    assert "highest on XR_ELBOW (0.667 [0.467, 0.867], 3 studies of 3 patients)" in said
    assert "called 2 of the 3 normal studies abnormal (false positives)" in said
    assert "missed 1 of the 3 abnormal studies" in said


def test_two_final_models_share_a_metrics_table_grouped_by_split(
    two_models: SimpleNamespace,
) -> None:
    section = chapters.final_section(two_models)
    metrics = items(section)["cls-metrics"]
    assert [g for g, _ in metrics.group_header] == ["", "Validation set", "Test set"]
    assert len(metrics.columns) == 5 and "(overall)" in metrics.columns[1]
    types = items(section)["cls-study-types"]
    assert types.columns[0] == "Model" and len(types.rows) == 6
    assert "the same patients for every model" in paragraphs(section.blocks)
    assert {"cls-gallery-default", "cls-gallery-lr-0-0001"} <= set(items(section))


def test_the_chapters_render_to_html_and_latex(inputs: SimpleNamespace, tmp_path: Path) -> None:
    document = Document(
        "Classification",
        "A",
        "2020-01-01",
        "made",
        [
            chapters.data_chapter(inputs),
            chapters.methods_chapter(inputs),
            chapters.results_chapter(inputs),
        ],
    ).number()
    html = render_html(document)
    for key in (
        "tab-cls-metrics",
        "tab-cls-study-types",
        "tab-cls-cohort",
        "fig-cls-roc",
        "fig-cls-gallery-default",
        "fig-cls-confusion",
        "fig-cls-probabilities",
        "fig-cls-calibration",
        "fig-cls-examples",
    ):
        assert f'id="{key}"' in html, key
    assert re.search(r'href="#tab-cls-metrics">Table 3\.1</a>', html)
    assert "0.778 [0.250, 1.000]" in html
    write_latex(document, tmp_path / "latex")
    for table in document.tables:
        tex = (tmp_path / "latex" / "tables" / f"{table.key}.tex").read_text()
        assert rf"\label{{tab:{table.key}}}" in tex
    metrics_tex = (tmp_path / "latex" / "tables" / "cls-metrics.tex").read_text()
    assert "Cohen's $\\kappa$" in metrics_tex
    assert all(
        (tmp_path / "latex" / "figures" / f"{f.key}.pdf").is_file() for f in document.figures
    )
