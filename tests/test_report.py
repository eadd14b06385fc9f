"""The thesis from a fake results tree: thesis tables, numbered and referenced captions, embedded
figures, text written from the configuration, and a multi-page PDF from the same HTML.

The whole chain (analysis → figures → report, HTML and PDF) runs once for the module.
"""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import pandas as pd
import pytest
from test_analysis import (
    CONFIG,
    HALVING,
    SWEEP,
    analysis_args,
    cli_args,
    halve,
    write_fake_results,
)

from segsweep.provenance import config_hash
from segsweep.report.chapters import final_results, methods, preprocessing
from segsweep.report.inputs import ReportInputs
from segsweep.report.render import render_html
from segsweep.report.thesis import build_document
from segsweep.sweep import budget_summary
from segsweep.tasks import stages


def pdf_pages(pdf: bytes) -> int:
    """Page objects in a PDF, looking inside compressed object streams (no pypdf needed)."""
    try:
        from pypdf import PdfReader
    except ImportError:
        texts = [pdf]
        for match in re.finditer(rb"stream\r?\n", pdf):
            try:
                texts.append(zlib.decompressobj().decompress(pdf[match.end() :]))
            except zlib.error:
                continue
        return sum(len(re.findall(rb"/Type\s*/Page(?!s)\b", t)) for t in texts)
    import io

    return len(PdfReader(io.BytesIO(pdf)).pages)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("report")
    results = write_fake_results(root)
    stages.analysis(analysis_args(results))
    stages.figures(cli_args(results))
    html, pdf = root / "out" / "thesis.html", root / "out" / "thesis.pdf"
    stages.report([*cli_args(results), "--out-html", str(html), "--out-pdf", str(pdf)])
    return {"results": results, "html": html.read_text(encoding="utf-8"), "pdf": pdf.read_bytes()}


def test_single_hyperparameter_tables_have_the_thesis_columns(built: dict) -> None:
    html = built["html"]
    header = "".join(f'<th class="num">{c}</th>' for c in ["Min", "Max", "STD", "Mean", "Median"])
    assert html.count(header + '<th class="num">No. experiments</th>') == 3  # labels, loss, lr
    # loss = dice: scores 0.8, 0.7, 0.4 → min, max, STD, mean, median, count
    cells = ["dice", "0.400", "0.800", "0.208", "0.633", "0.700", "3"]
    assert re.search(r"<tr>\s*" + r"\s*".join(f"<td[^>]*>{c}</td>" for c in cells), html)


def test_pair_tables_show_mean_median_count_cells(built: dict) -> None:
    html = built["html"]
    pairs = pd.read_csv(built["results"] / "tables" / "pairs.csv")
    row = pairs[(pairs.a == "loss") & (pairs.a_level == "dice") & (pairs.b_level == "merged")]
    mean, median, count = row[["mean", "median", "count"]].iloc[0]
    count = int(count)
    assert f"{mean:.3f}/{median:.3f} ({count})" == "0.600/0.600 (2)"
    assert f'<td class="num">{mean:.3f}/{median:.3f} ({count})</td>' in html
    assert "-/- (0)" in html  # lr 0.0001 was never run with separate labels
    assert html.count("The format is “mean/median (count)”") == 3  # 2 configured, 1 by effect


CAPTION = re.compile(
    r'<figure class="(?:table|figure)[^"]*" id="((?:tab|fig)-[a-z0-9-]+)">\s*'
    r'(?:<img[^>]*>\s*)?<figcaption><span class="label">(Table|Figure) ([0-9A-C]+)\.(\d+):'
)


def test_every_table_and_figure_is_numbered_captioned_and_referenced(built: dict) -> None:
    html = built["html"]
    captions = CAPTION.findall(html)
    numbers: dict[tuple[str, str], list[int]] = {}
    for ident, kind, chapter, n in captions:
        numbers.setdefault((kind.lower(), chapter), []).append(int(n))
        label = f"{kind} {chapter}.{n}"
        assert f'<a class="ref" href="#{ident}">{label}</a>' in html, f"{label} not referenced"
    assert len(captions) == html.count('<span class="label">')  # every caption found
    assert all(ns == list(range(1, len(ns) + 1)) for ns in numbers.values())
    # anchors say what a table or figure shows, not where it stands
    assert 'id="tab-hp-loss"' in html and 'id="tab-pair-loss-labels"' in html
    assert 'id="fig-jitter-lr"' in html and 'id="tab-all-runs"' in html
    # 3 hyperparameters, Kruskal–Wallis, 3 pairs, best, bootstrap ranking, pairwise tests of the
    # best, final; per split: distribution, metrics, per class, per patient, paired tests
    assert len(numbers[("table", "4")]) == 21
    # 3 jitter plots, ranking, curves, cost, 2 histograms, 2 boxplots
    assert len(numbers[("figure", "4")]) == 10
    assert len(numbers[("figure", "3")]) == 1  # checkpoint scores
    assert "Table 1.1:" in html and "Figure 4.1:" in html and "Table A.1:" in html


def test_figures_are_embedded_and_the_html_is_self_contained(built: dict) -> None:
    html = built["html"]
    sources = re.findall(r'src="([^"]*)"', html)
    assert len(sources) == 11  # 10 in chapter 4, checkpoint scores
    # drawn by segsweep.plotting.save: embedded as their SVG, vector in the PDF too
    assert all(s.startswith("data:image/svg+xml;base64,PD94bWwg") for s in sources)
    assert "<link" not in html and "<style>" in html and "@page" in html


def check_summary(html: str) -> list[str]:
    """The summary follows the title page; each of its sentences cites a table and every
    number with decimals in it stands in a table it cites. Returns the paragraphs."""
    summary = re.search(r'<section class="summary" id="summary">(.*?)</section>', html, re.S)[1]
    paragraphs = re.findall(r"<p>(.*?)</p>", summary, re.S)
    assert len(paragraphs) >= 3 and html.index('id="summary"') < html.index('class="contents"')
    for paragraph in paragraphs:
        cited = re.findall(r'href="#(tab-[\w-]+)"', paragraph)
        assert cited, f"a summary sentence cites no table: {paragraph}"
        shown = " ".join(
            re.search(rf'<figure class="table[^"]*" id="{key}">(.*?)</figure>', html, re.S)[1]
            for key in cited
        )
        for value in re.findall(r"\d+\.\d{3}", re.sub(r"<[^>]+>", "", paragraph)):
            assert value in shown, (value, paragraph)
    return [re.sub(r"<[^>]+>", "", p) for p in paragraphs]


def test_the_summary_states_the_findings_with_their_tables(built: dict) -> None:
    sweep, best, effects, *finals = check_summary(built["html"])
    assert sweep.startswith("The sweep trained 5 runs over “labels” (2 levels), “loss”")
    assert "default (labels = merged, loss = dice, lr = 0.001)" in best
    assert "0.800 [0.700, 0.900] on the validation set, over 3 patients (Table 4." in best
    assert "showed no detectable difference" in effects and "n = 5 runs" in effects
    assert "Compared patient by patient, the runs differed (Friedman, p = 0.017" in effects
    assert [f.split(" reached")[0] for f in finals] == [
        "On the 2 test patients, the final model default",
        "On the 2 test patients, the final model labels-separate",
    ]


def test_best_model_per_patient_is_bold(built: dict) -> None:
    html = built["html"]
    # default beats labels-separate by 0.1 on every patient (fake per-slice Dice)
    assert '<td class="num"><strong>0.875 (0.875)</strong></td>' in html
    assert '<td class="num">0.775 (0.775)</td>' in html
    assert html.count("<strong>") == 5  # 3 validation + 2 test patients


def test_text_is_written_from_the_configuration(built: dict) -> None:
    html = built["html"]
    assert '<h1 class="title">Fake sweep</h1>' in html and "Tester" in html
    assert "shrunk in-plane by a factor of 4 with 3 fitting levels" in html
    assert "resampled to 64 × 64 pixels" in html
    assert "highest mean per-patient (3D) Dice of the foreground class" in html
    assert "The sweep has 5 training runs" in html
    for heading in ["1 Data", "2 Preprocessing", "3 Methods", "4 Results", "A All runs"]:
        assert f"<h1>{heading}</h1>" in html
    assert "labels-separate_loss-cross-entropy" in html  # appendix A lists every run
    assert config_hash(CONFIG, SWEEP) in html
    assert "loss_vs_labels:" in html  # the sweep as YAML


def test_pdf_has_several_pages(built: dict) -> None:
    assert built["pdf"].startswith(b"%PDF")
    assert pdf_pages(built["pdf"]) > 1


def test_selection_and_final_sentences() -> None:
    selection = {**CONFIG["selection"], "higher_is_better": False, "metric": "iou"}
    selection |= {"aggregate": "median", "level": "slice"}
    text = methods.selection_sentence(selection, 2)
    assert text.startswith("Checkpoints were saved every 2 epochs. For each run, the checkpoint")
    assert "lowest median per-slice IoU of the foreground class" in text
    assert methods.final_sentence({"n_best": 1, "group_by": []}) == (
        "The final models are the best run overall on validation; only these were evaluated "
        "on the test set."
    )
    assert "3 best runs overall on validation and the best run for each combination of “loss”" in (
        methods.final_sentence({"n_best": 3, "group_by": ["loss"]})
    )


def test_the_metric_conventions_state_the_nsd_tolerance_and_its_empty_cases() -> None:
    conventions = " ".join(methods.metric_conventions(2.5))
    assert "normalised surface Dice (NSD" in conventions and "τ = 2.5 mm" in conventions
    assert "the cropped grid in the processed space" in conventions
    assert "HD95, ASSD and NSD are undefined" in conventions  # both empty
    assert "the NSD is then 0" in conventions  # exactly one empty
    assert methods.nsd_tolerance({}) == 1.0  # the schema's default without a metrics section
    assert methods.nsd_tolerance({"metrics": {"nsd_tolerance_mm": 0.5}}) == 0.5
    assert "τ = 1 mm" in " ".join(methods.metric_conventions(methods.nsd_tolerance({})))


def test_config_hash_is_canonical() -> None:
    reordered = dict(reversed(list(CONFIG.items())))
    assert config_hash(reordered, SWEEP) == config_hash(CONFIG, SWEEP)
    changed = {**CONFIG, "train": {**CONFIG["train"], "lr": 0.01}}
    assert config_hash(changed, SWEEP) != config_hash(CONFIG, SWEEP)
    assert re.fullmatch(r"[0-9a-f]{64}", config_hash(CONFIG, SWEEP))


def document_of(results: Path, config: dict = CONFIG):
    return build_document(ReportInputs.under(results, config, SWEEP, []), date="2020-01-01")


def test_render_html_uses_the_given_templates(built: dict, tmp_path: Path) -> None:
    template = "<title>{{ document.title }}</title>{{ document.tables | length }}"
    (tmp_path / "thesis.html.j2").write_text(template)
    document = document_of(built["results"])
    assert render_html(document, tmp_path) == "<title>Fake sweep</title>30"
    assert document.date == "2020-01-01"


def test_final_model_tables_hold_the_numbers_of_the_csvs(built: dict) -> None:
    html, tables = built["html"], built["results"] / "tables"
    distribution = pd.read_csv(tables / "slice_distribution.csv")
    for row in distribution.itertuples():
        cells = [f"{getattr(row, c):.3f}" for c in ["mean", "median", "std", "q25", "q75"]]
        assert re.search(r"\s*".join(f"<td[^>]*>{c}</td>" for c in cells), html), row
    summary = pd.read_csv(tables / "metrics_summary.csv")
    for row in summary[summary.metric == "dice"].itertuples():
        assert f"{row.mean:.3f} ({row.median:.3f}) ± {row.std:.3f}" in html
    tests = pd.read_csv(tables / "final_tests.csv")
    compared = pd.read_csv(tables / "configuration_tests.csv")  # the 5 best, pairwise
    assert len(tests) == 2 and (compared["test"] == "Wilcoxon").sum() == 10
    assert html.count(">Wilcoxon<") == 12
    # per class: the fakes' femur has one validation patient (Dice 0, IoU 0), so no STD
    assert html.count("</span> Per-class per-patient Dice, IoU, HD95 and NSD (τ = ") == 2
    femur = ["default", "femur", "1", "0.000 (0.000) ± –", "0.000 (0.000) ± –", "–", "–"]
    assert re.search(row_pattern(femur), html)
    dice = summary[(summary.metric == "dice") & (summary.split == "test")]
    for row in dice.itertuples():  # the foreground rows repeat the metrics summary
        cells = [
            row.run_id,
            "foreground",
            "2",
            f"{row.mean:.3f} ({row.median:.3f}) ± {row.std:.3f}",
        ]
        start = r"<tr>\s*" + r"\s*".join(f"<td[^>]*>{re.escape(c)}</td>" for c in cells)
        assert re.search(start, html), row  # IoU and HD95 follow
    assert "Kruskal–Wallis" in html and "Empty conventions" in html


def row_pattern(cells: list[str]) -> str:
    return r"<tr>\s*" + r"\s*".join(f"<td[^>]*>{re.escape(c)}</td>" for c in cells) + r"\s*</tr>"


def test_data_and_preprocessing_tables_hold_the_numbers_of_the_csvs(built: dict) -> None:
    html = built["html"]
    # dataset table: resolution from ingest.json "original"; maas-000 has no record
    assert re.search(
        row_pattern(["epi", "coronal", "3", "2", "3", "100 × 100 × 41 (1.6 × 1.6 × 3 mm)"]), html
    )
    assert re.search(
        row_pattern(["jopp", "coronal", "2", "2", "2", "64 × 64 × 24 (2.5 × 2.5 × 4 mm)"]), html
    )
    assert re.search(row_pattern(["maas", "sagittal", "1", "0", "1", "–"]), html)
    # split audit from splits_checks.csv
    assert re.search(row_pattern(["Subject in one split", "yes", "ok"]), html)
    assert "every check passed" in html
    # centre error per subject with mean and max (of the defined errors, absolute offsets)
    assert re.search(row_pattern(["epi-001", "joint", "4.5", "-3.0", "3.0", "1.5"]), html)
    assert re.search(row_pattern(["jopp-000", "joint", "–", "–", "–", "–"]), html)
    assert re.search(row_pattern(["Mean", "", "4.2", "1.0", "2.5", "0.0"]), html)
    assert re.search(row_pattern(["Max", "", "6.1", "5.0", "3.0", "2.0"]), html)
    assert "4.2 mm on average over 3 subjects and at most 6.1 mm (jopp-001)" in html
    # kept fraction per class with mean and min
    assert re.search(row_pattern(["epi-000", "1.000", "–"]), html)
    assert re.search(row_pattern(["Mean", "0.925", "0.625"]), html)
    assert re.search(row_pattern(["Min", "0.850", "0.500"]), html)
    assert "the smallest fraction is 0.500 (fibula of epi-001)" in html
    for label in ["Table 1.3", "Table 2.1", "Table 2.2"]:
        assert f'<span class="label">{label}:</span>' in html


def test_report_builds_without_the_optional_csvs(built: dict, tmp_path: Path) -> None:
    import shutil

    results = tmp_path / "results"
    shutil.copytree(built["results"], results)
    for path in ["splits/splits_checks.csv", "crop/centre_error.csv", "crop/kept_fraction.csv"]:
        (results / path).unlink()
    shutil.rmtree(results / "data" / "epi-000")
    document = document_of(results)
    keys = {t.key for t in document.tables}
    assert not keys & {"split-audit", "centre-error", "kept-fraction"}
    html = render_html(document)
    assert "Table 2.1" not in html and "<h1>2 Preprocessing</h1>" in html
    assert "100 × 100 × 41 (1.6 × 1.6 × 3 mm)" in html  # epi-001 still has its record


def test_preprocessing_text_lists_classes_by_label_value_and_counts_fitting_levels() -> None:
    config = {
        "data": {"labels": {"canal": 7, "disc": 5, "vertebra": 2}},  # sorted keys, as loaded
        "preprocess": {"n4": {"enabled": True, "shrink": 2, "iterations": [40]}},
    }
    text = " ".join(preprocessing.preprocessing_text(config))
    assert "The masks label vertebra (2), disc (5), canal (7);" in text
    assert "with 1 fitting level, at most 40 iterations" in text


def test_the_inputs_levels_are_explained_when_runs_choose_their_inputs() -> None:
    config = {
        "data": {"channels": ["ct", "pet"]},
        "preprocess": {"normalise": "window", "windows": [[-160, 240], [10, 110]]},
    }
    assert "packed images" not in " ".join(preprocessing.preprocessing_text(config))
    text = " ".join(preprocessing.preprocessing_text(config, inputs_used=True))
    assert "The packed images have the channels “ct[-160,240]”, “ct[10,110]”, “pet”." in text
    assert "“name[low,high]” is that channel clipped to [low, high]" in text
    single = " ".join(preprocessing.preprocessing_text({"preprocess": {}}, inputs_used=True))
    assert "the channels “image”." in single


@pytest.mark.parametrize(
    ("crop", "phrase"),
    [
        ({}, "the joint centre detected from the image"),
        ({"centre": "joint"}, "the joint centre detected from the image"),
        ({"centre": "foreground"}, "the centroid of the image's foreground (Otsu threshold)"),
        ({"centre": "image"}, "the image centre"),
        (
            {"centre": "fixed", "centre_mm": [10, -2.5, 30]},
            "a fixed physical point (10, -2.5, 30 mm)",
        ),
    ],
)
def test_crop_centre_is_worded_per_method(crop: dict, phrase: str) -> None:
    assert preprocessing.centre_phrase(crop) == phrase
    config = {"preprocess": {"crop": {"window_mm": 90, "size": 64, "slices": 24, **crop}}}
    assert f"window of 90 mm around {phrase} and resampled" in " ".join(
        preprocessing.preprocessing_text(config)
    )


def test_crop_centre_wording_reaches_the_text_caption_and_note(built: dict) -> None:
    liver = {**CONFIG, "data": {**CONFIG["data"], "labels": {"liver": 1}}}
    liver["preprocess"] = {**CONFIG["preprocess"], "crop": {**CONFIG["preprocess"]["crop"]}}
    liver["preprocess"]["crop"]["centre"] = "foreground"
    html = render_html(document_of(built["results"], liver))
    phrase = "the centroid of the image&#39;s foreground (Otsu threshold)"  # HTML-escaped
    assert "joint centre" not in html
    assert f"the distance between {phrase} and the reference centre" in html
    assert f"Distance of the crop centre ({phrase}) from the reference centre" in html
    assert (
        "With a single class, the reference centre is the centroid of all labelled voxels." in html
    )
    knee = built["html"]  # three classes, joint centre
    assert "the distance between the joint centre detected from the image and" in knee
    assert (
        "where two classes meet; where only one class is present or no classes meet, it is " in knee
    )


def test_reference_centre_note_per_number_of_classes() -> None:
    assert preprocessing.reference_centre_note({"liver": 1}) == (
        "With a single class, the reference centre is the centroid of all labelled voxels."
    )
    note = preprocessing.reference_centre_note({"femur": 1, "tibia": 2})
    assert note.startswith("The reference centre is the centroid of the zone where two classes")
    assert note.endswith("no classes meet, it is the centroid of all labelled voxels.")


CLASS_ROWS = [
    # run_id, space, class, metric, patients, mean, median, std
    ("a", "native", "foreground", "dice", 2, 0.75, 0.75, 0.05),
    ("a", "processed", "disc", "dice", 2, 0.6, 0.6, 0.1),
    ("a", "processed", "canal", "dice", 2, 0.9, 0.9, 0.0),
    ("a", "processed", "vertebra", "dice", 2, 0.7, 0.7, 0.1),
    ("a", "processed", "foreground", "dice", 2, 0.95, 0.95, 0.01),
    ("a", "processed", "canal", "hd95", 2, 3.0, 3.0, 1.0),
    ("a", "processed", "canal", "nsd", 2, 0.8, 0.8, 0.1),
    ("b", "processed", "foreground", "dice", 2, 0.8, 0.8, 0.1),
]


def class_table() -> pd.DataFrame:
    columns = ["run_id", "space", "class", "metric", "patients", "mean", "median", "std"]
    return pd.DataFrame(CLASS_ROWS, columns=columns).assign(split="test", undefined=0)


def test_class_frame_orders_models_spaces_and_classes() -> None:
    frame = final_results.class_frame(class_table(), ["b", "a"])
    assert frame.columns.tolist() == [
        "Model",
        "Space",
        "Class",
        "Patients",
        "Dice",
        "IoU",
        "HD95 (mm)",
        "NSD",
    ]
    assert frame[["Model", "Space", "Class"]].values.tolist() == [
        ["b", "processed", "foreground"],
        ["a", "processed", "foreground"],  # classes in the CSV's order, processed space first
        ["a", "processed", "disc"],
        ["a", "processed", "canal"],
        ["a", "processed", "vertebra"],
        ["a", "native", "foreground"],
    ]
    canal = frame.iloc[3].tolist()[3:]
    assert canal == [
        "2",
        "0.900 (0.900) ± 0.000",
        "–",
        "3.000 (3.000) ± 1.000",
        "0.800 (0.800) ± 0.100",
    ]
    processed = class_table().query("space == 'processed'")
    assert "Space" not in final_results.class_frame(processed, ["a"]).columns  # one space only


def test_class_extremes_name_the_best_and_worst_class_without_the_foreground() -> None:
    assert final_results.class_extremes(class_table(), ["a", "b"]) == [
        {
            "run": "a",
            "best": "canal",
            "best_mean": "0.900",
            "worst": "disc",
            "worst_mean": "0.600",
        }
    ]  # b predicts the merged foreground only


def test_text_names_the_best_and_worst_class(built: dict, tmp_path: Path) -> None:
    import shutil

    results = tmp_path / "results"
    shutil.copytree(built["results"], results)
    path = results / "tables" / "class_summary.csv"
    classes = pd.read_csv(path)
    femur = classes[(classes["class"] == "femur") & (classes.run_id == "default")]
    tibia = femur.assign(**{"class": "tibia", "mean": 0.5, "median": 0.5})
    pd.concat([classes, tibia]).to_csv(path, index=False)
    html = render_html(document_of(results))
    assert (
        "In the processed space, default segmented tibia best (mean Dice 0.500) and "
        "femur worst (0.000)." in html
    )
    assert html.count("segmented tibia best") == 1  # validation only; the test set has no tibia


def test_the_all_runs_table_is_interactive_and_marks_the_final_models(built: dict) -> None:
    document = document_of(built["results"])
    runs = next(t for t in document.tables if t.key == "all-runs")
    assert runs.interactive and runs.search == "Run" and runs.unit == "runs"
    assert runs.filters == ["labels", "loss", "lr"]  # the swept hyperparameters
    marked = {runs.rows[i][runs.columns.index("Run")] for i in runs.marked}
    assert marked == {"default", "labels-separate"}  # final.csv
    html = built["html"]
    start = html.index('id="tab-all-runs"')
    figure = html[start : html.index("</figure>", start)]
    assert figure.count("<tr") == 1 + 5 and figure.count('<tr class="marked">') == 2
    assert "showing 5 of 5 runs" in figure and '<select data-column="1">' in figure
    # one inline script, nothing fetched from the network
    assert html.count("<script") == 1 and "<script>" in html
    sources = re.findall(r"<(?:script|link|img)\b[^>]*\b(?:src|href)=\"([^\"]*)\"", html)
    assert all(source.startswith("data:") for source in sources)
    script = html[html.index("<script>") : html.index("</script>")]
    assert "http" not in script and "fetch(" not in script


def test_what_the_training_cost_in_the_text_the_figure_and_the_all_runs_table(built: dict) -> None:
    html = built["html"]
    # fake benchmarks: 2 + 1 + 1.5 + 0.5 + 0.5 wall-clock hours, twice that on the CPU
    assert re.search(
        r"The sweep&#39;s 5 training runs used 11 CPU-hours \(5\.5 wall-clock hours\) in all; "
        r"the best configuration, default, took 2 wall-clock hours \(<a class=\"ref\" "
        r'href="#fig-cost">Figure \d+\.\d+</a>\)\.',
        html,
    )
    start = html.index('id="fig-cost"')
    caption = html[start : html.index("</figure>", start)]
    assert "training cost (wall-clock hours)" in caption
    assert "step line: labels-separate_loss-cross-entropy, labels-separate, default." in caption
    start = html.index('id="tab-all-runs"')
    runs = html[start : html.index("</figure>", start)]
    for heading in ["Wall (min)", "CPU (min)", "Peak RAM (GB)"]:
        assert f">{heading}<" in runs
    assert "GPU (min)" not in runs and "Peak GPU mem" not in runs  # every run on the CPU
    assert '<td class="num">120.00</td><td class="num">240.00</td><td class="num">0.50</td>' in runs


def halving_args(results: Path) -> list[str]:
    return [*cli_args(results)[:3], json.dumps(HALVING), *cli_args(results)[4:]]


@pytest.fixture(scope="module")
def halved(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The fake tree trained by successive halving (`halve`), through the analysis, figures,
    budget and report stages."""
    root = tmp_path_factory.mktemp("halving")
    results = halve(write_fake_results(root))
    stages.analysis([*halving_args(results), *analysis_args(results)[-2:]])
    stages.figures(halving_args(results))
    budget_summary.main(
        [
            *halving_args(results),
            "--out-rungs",
            str(results / "budget" / "rungs.csv"),
            "--out-configurations",
            str(results / "budget" / "configurations.csv"),
            "--out-figure",
            str(results / "figures" / "budget.png"),
        ]
    )
    html, pdf = root / "out" / "thesis.html", root / "out" / "thesis.pdf"
    stages.report([*halving_args(results), "--out-html", str(html), "--out-pdf", str(pdf)])
    return {"results": results, "html": html.read_text(encoding="utf-8")}


def test_under_halving_the_sweep_compares_at_the_first_rung(halved: dict) -> None:
    runs = pd.read_csv(halved["results"] / "summary" / "runs.csv").set_index("run_id")
    assert runs.loc["default", "epochs_trained"] == 6 and pd.isna(runs.loc["default", "pruned_at"])
    assert runs.loc["lr-0.0001", "epochs_trained"] == 2 and runs.loc["lr-0.0001", "pruned_at"] == 1
    html = halved["html"]
    assert "per level of “loss”, all 5 configurations at rung 1, 2 epochs." in html
    assert "The table mixes budgets" in html  # the all-runs table and the budget's
    assert "among the configurations that reached the last rung, at the full budget" in html


def test_the_training_budget_section_and_the_summary_sentence(halved: dict) -> None:
    html = halved["html"]
    assert "Training budget" in html and "η = 3, min_epochs = 2" in html
    rungs = pd.read_csv(halved["results"] / "budget" / "rungs.csv")
    total = rungs.iloc[-1]
    assert total["epochs_trained"] == 2 * 6 + 3 * 2  # one epoch a second in the fake logs
    assert total["full_epochs"] == 30 and total["saving_epochs"] == pytest.approx(30 / 18)
    assert re.search(
        r"Successive halving trained 18 of the 30 epochs a full grid would have, 0.005 h instead "
        r"of an estimated 0.00833 h \(1.67× less; <a",
        html,
    )


def test_without_halving_there_is_no_budget(built: dict) -> None:
    html = built["html"]
    assert "Training budget" not in html and "Successive halving" not in html
    assert "at rung 1" not in html and "mixes budgets" not in html


def test_the_quality_control_section_from_the_final_models_qc_tables(
    built: dict, tmp_path: Path
) -> None:
    """The report run by hand finds every final model's qc.csv beside its test tables and sets
    the QC against the test Dice (2 fake test patients: every ρ undefined, n = 2 < 3); without
    a qc.csv there is no section."""
    import shutil

    assert "Quality control of predictions" not in built["html"]  # the fakes have no qc.csv
    results = tmp_path / "results"
    shutil.copytree(built["results"], results)
    for run, (first, second) in {"default": (0.9, 0.6), "labels-separate": (0.8, 0.8)}.items():
        pd.DataFrame(
            {
                "case": ["t1", "t2"],
                "volume_ml_foreground": [12.5, 14.0],
                "agreement": [first, second],
                "uncertainty": [0.1, 0.3],
                "intensity_distance": [0.2, 2.3],
                "flag": [False, True],
                "reason": ["", "intensity_distance 2.3 > 0.6"],
            }
        ).to_csv(results / "final" / run / "qc.csv", index=False)
    document = document_of(results)
    rho, flags = document.find("qc-rho"), document.find("qc-flags")
    assert rho is not None and flags is not None
    assert "processed space" in rho.caption  # the fakes' test tables are processed only
    assert [row[:4] for row in rho.rows[:2]] == [
        ["default", "Agreement", "2", "–"],
        ["default", "Uncertainty", "2", "–"],
    ]
    assert {row[-1] for row in rho.rows} == {"undefined: n = 2 < 3"}
    # the fake test Dice: 0.80 ∓ 0.05 (default), 0.70 ∓ 0.05 (labels-separate)
    assert flags.rows == [
        ["default", "2", "1", "0.850", "1", "0.750"],
        ["labels-separate", "2", "1", "0.750", "1", "0.650"],
    ]
    html = render_html(document)
    assert "Quality control of predictions" in html
    assert (
        "For default, agreement&#39;s ρ is undefined (n = 2 &lt; 3), so these test patients "
        "cannot say whether agreement predicts Dice" in html
    )
    assert "The predictor flagged 1 of the 2 test patients of default, median Dice 0.850" in html
