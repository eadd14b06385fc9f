"""The real Snakefile with `task: classification` on a tiny synthetic radiograph cohort, in a tmp
dir, all the way to the thesis: a 2 × 2 sweep of ResNet-18s on two folds.

One workflow run is shared by the tests of this module; they check the per-image and per-study
tables against each other and the study-level metrics against scikit-learn, and the report's
tables and figures against the CSVs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from runs import planned_jobs, snakemake
from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix, roc_auc_score
from test_workflow import PDFTOTEXT, detailed_summary, find_test_data_leaks
from tiny import TINY_CLASSIFICATION

from segsweep import layout

pytestmark = pytest.mark.workflow

CLASSES = ["normal", "abnormal"]


@pytest.fixture(scope="module")
def workdir(classification_run: Path) -> Path:
    """The session's tiny classification run (tests/conftest.py)."""
    return classification_run


def final_model(workdir: Path) -> str:
    (model,) = pd.read_csv(workdir / layout.FINAL)["run_id"]
    return model


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"study_id": str, "patient_id": str, "image_id": str})


def test_every_run_is_selected_at_study_level_and_only_the_final_model_sees_the_test_set(
    workdir: Path,
) -> None:
    runs = sorted(p.name for p in (workdir / "results/runs").iterdir())
    assert len(runs) == 8  # 4 configurations × 2 folds
    splits = pd.read_csv(workdir / layout.SPLITS, dtype=str)
    test_studies = set(splits.loc[splits["split"] == "test", "subject_id"])
    for run in runs:
        selection = json.loads((workdir / layout.path(layout.SELECTION, run=run)).read_text())
        assert selection["metric"] == "auc" and selection["level"] == "study"
        assert selection["selected"]["file"] in {s["file"] for s in selection["scores"]}
        per_study = read(workdir / layout.path(layout.VAL_PER_STUDY, run=run))
        assert not set(per_study["study_id"]) & test_studies
        subjects = json.loads((workdir / layout.path(layout.RUN_SUBJECTS, run=run)).read_text())
        assert set(per_study["study_id"]) == set(subjects["val"])
    summary = detailed_summary(workdir)
    final_inputs = ",".join(summary.loc[summary["rule"] == "final_test", "inputs"])
    assert "results/datasets/test.h5" in final_inputs  # the guard looks at real inputs
    assert find_test_data_leaks(summary, test_studies) == []


def test_study_probability_is_the_mean_of_its_images_and_the_threshold_came_from_validation(
    workdir: Path,
) -> None:
    model = final_model(workdir)
    per_image = read(workdir / layout.path(layout.TEST_PER_IMAGE, run=model))
    per_study = read(workdir / layout.path(layout.TEST_PER_STUDY, run=model))
    assert {"image_id", "study_id", "patient_id", "study_type", "true", "predicted"} <= set(
        per_image
    )
    assert np.allclose(per_image[["p_normal", "p_abnormal"]].sum(axis=1), 1.0)
    mean = per_image.groupby("study_id")["p_abnormal"].mean()
    assert np.allclose(per_study.set_index("study_id")["p_abnormal"], mean[per_study["study_id"]])
    models = json.loads((workdir / layout.path(layout.FINAL_THRESHOLD, run=model)).read_text())
    assert len(models["runs"]) == 2 and models["combined"] == "ensemble"
    threshold = models["threshold"]
    assert (per_study["threshold"] == threshold).all()
    predicted = np.where(per_study["p_abnormal"] >= threshold, "abnormal", "normal")
    assert (per_study["predicted"] == predicted).all()


def test_study_level_metrics_agree_with_scikit_learn(workdir: Path) -> None:
    model = final_model(workdir)
    per_study = read(workdir / layout.path(layout.TEST_PER_STUDY, run=model))
    metrics = pd.read_csv(workdir / layout.path(layout.TABLE, name="classification_metrics"))
    test = metrics[(metrics["model"] == model) & (metrics["split"] == "test")]
    value = test.set_index("metric")["value"]
    y, predicted = per_study["true"] == "abnormal", per_study["predicted"] == "abnormal"
    assert value["auc"] == pytest.approx(roc_auc_score(y, per_study["p_abnormal"]), abs=1e-9)
    assert value["accuracy"] == pytest.approx(accuracy_score(y, predicted), abs=1e-9)
    assert value["kappa"] == pytest.approx(cohen_kappa_score(y, predicted), abs=1e-9)
    assert (test["n_studies"] == len(per_study)).all()
    assert (test["n_patients"] == per_study["patient_id"].nunique()).all()
    defined = test.dropna(subset=["low", "high"])
    assert (defined["low"] <= defined["value"] + 1e-12).all()
    assert (defined["value"] <= defined["high"] + 1e-12).all()
    confusion = pd.read_csv(workdir / layout.path(layout.TABLE, name="confusion"))
    confusion = confusion[(confusion["model"] == model) & (confusion["split"] == "test")]
    counts = confusion.pivot(index="true", columns="predicted", values="count")
    counts = counts.loc[CLASSES, CLASSES]
    expected = confusion_matrix(per_study["true"], per_study["predicted"], labels=CLASSES)
    assert (counts.to_numpy() == expected).all()
    types = pd.read_csv(workdir / layout.path(layout.TABLE, name="study_types"))
    types = types[(types["model"] == model) & (types["split"] == "test")]
    assert set(types["study_type"]) == {"XR_ELBOW", "XR_WRIST", "all"}
    wrist = per_study[per_study["study_type"] == "XR_WRIST"]
    row = types.set_index("study_type").loc["XR_WRIST"]
    assert row["n_studies"] == len(wrist)
    assert row["accuracy"] == pytest.approx(
        accuracy_score(wrist["true"], wrist["predicted"]), abs=1e-9
    )


def test_the_sweep_tables_cover_both_hyperparameters(workdir: Path) -> None:
    table = pd.read_csv(workdir / layout.path(layout.TABLE, name="hyperparameters"))
    assert set(table["hyperparameter"]) == {"input_size", "dropout"}
    assert (table["No. experiments"] == 2).all()
    runs = pd.read_csv(workdir / layout.RUNS_TABLE)
    assert runs["score"].between(0, 1).all() and len(runs) == 8


def test_the_thesis_shows_the_classification_results(workdir: Path) -> None:
    html = (workdir / layout.THESIS_HTML).read_text()
    for words in ("study type", "ROC", "confusion", "threshold", "false positive"):
        assert re.search(words, html, re.IGNORECASE), words
    latex = workdir / layout.THESIS_LATEX / "tables"
    assert (latex / "cls-study-types.tex").is_file() and (latex / "cls-metrics.tex").is_file()
    assert (workdir / layout.path(layout.GALLERY, run=final_model(workdir))).is_file()
    if PDFTOTEXT:
        import subprocess

        text = subprocess.run(
            [PDFTOTEXT, str(workdir / layout.THESIS_PDF), "-"], capture_output=True, text=True
        ).stdout
        assert "XR_WRIST" in text and "Kruskal" in text


def test_a_second_dry_run_has_nothing_to_do(workdir: Path) -> None:
    result = snakemake(workdir, "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert planned_jobs(result) == {}, result.stdout[-3000:]


def test_a_transfer_study_starts_from_another_workflows_run_and_freezes_its_first_blocks(
    workdir: Path, tmp_path: Path
) -> None:
    """The transfer of config/classification_transfer.yaml in small: chest radiographs, trained
    from a run of the musculoskeletal workflow above (its selection.json), with 0 or 2 blocks
    frozen, through the whole workflow to the thesis."""
    source = sorted((workdir / "results/runs").iterdir())[0]
    selection = json.loads((source / "selection.json").read_text())
    start = torch.load(source / "checkpoints" / selection["selected"]["file"], weights_only=True)[
        "model"
    ]
    config = {
        **TINY_CLASSIFICATION,
        "data": {
            **TINY_CLASSIFICATION["data"],
            "radiographs": {
                "seed": 5,
                "patients": 10,
                "size": 32,
                "views": [1, 2],
                "study_types": ["XR_CHEST"],
            },  # fmt: skip
        },
        "split": {**TINY_CLASSIFICATION["split"], "folds": 0},
        "train": {
            **TINY_CLASSIFICATION["train"],
            "epochs": 1,
            "init_from": str(source / "selection.json"),
        },  # fmt: skip
        "report": {"title": "Tiny transfer", "pairs": []},
    }
    (tmp_path / "config").mkdir()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    sweep = {"grids": {"transfer": {"freeze_blocks": [0, 2]}}}
    (tmp_path / "config" / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    result = snakemake(tmp_path)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert (tmp_path / layout.THESIS_PDF).is_file()
    for run, frozen in (("default", False), ("freeze_blocks-2", True)):
        log = (tmp_path / "logs/train" / f"{run}.log").read_text()
        assert f"from {source / 'checkpoints' / selection['selected']['file']}" in log
        index = json.loads((tmp_path / layout.path(layout.RUN_INDEX, run=run)).read_text())
        last = index["checkpoints"][-1]["file"]
        trained = torch.load(
            tmp_path / layout.path(layout.RUN_DIR, run=run) / "checkpoints" / last,
            weights_only=True,
        )["model"]
        # blocks 1 and 2: the stem and layer1; layer4 always trains
        for name in ("conv1.weight", "layer1.0.conv1.weight", "layer1.1.bn2.running_mean"):
            assert torch.equal(trained[name], start[name]) == frozen, (run, name)
        assert not torch.equal(trained["layer4.1.conv2.weight"], start["layer4.1.conv2.weight"])
