"""Every stage by hand, both tasks: `python -m segsweep analysis | figures | report` run the
config's task's stage (through `segsweep.tasks`) on the files of a finished classification run,
here a fake one laid out as the workflow lays it out."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.figure import Figure
from test_classification_analysis import CONFIG as ANALYSIS_CONFIG
from test_classification_analysis import SWEEP, write_fake_results
from test_classification_report import CONFIG as REPORT_CONFIG

from segsweep import layout
from segsweep.__main__ import main as segsweep
from segsweep.plotting import save
from segsweep.sweep.grammar import sweep_runs
from segsweep.train.classify import LOG_COLUMNS

CONFIG = {
    **REPORT_CONFIG,
    "classification": {**REPORT_CONFIG["classification"], "bootstrap": 50},
    "report": {"pairs": [["model", "lr"]], "title": "Radiographs by hand"},
}
PACKAGE = Path(__file__).resolve().parents[1] / "scripts"


def _figure(path: Path) -> None:
    """A small figure where a stage before the analysis draws one."""
    fig = Figure(figsize=(2, 1.5))
    fig.subplots().plot([0, 1], [0, 1])
    save(fig, path)


def finished_run(results: Path) -> None:
    """The files a finished classification run leaves in `results` before its analysis:
    every run's selection (with its checkpoints' scores), training log and validation
    predictions, the data stage's tables and examples figure, the splits, final.csv and the
    final models' test predictions and galleries."""
    write_fake_results(results, ANALYSIS_CONFIG)
    splits = layout.under(results, layout.SPLITS)
    final = layout.under(results, layout.FINAL)
    for made, path in ((results / "splits.csv", splits), (results / "final.csv", final)):
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(made, path)
    chosen = pd.read_csv(final, dtype=str)
    chosen.assign(score=[0.8, 0.7]).to_csv(final, index=False)  # as segsweep.sweep.final writes
    for run in sweep_runs(CONFIG, SWEEP):
        selection_json = layout.under(results, layout.SELECTION, run=run.run_id)
        selection = json.loads(selection_json.read_text())
        if selection["status"] == "ok":
            score = selection["selected"]["score"]
            selection["scores"] = [{"epoch": 1, "score": score / 2}, {"epoch": 2, "score": score}]
        selection_json.write_text(json.dumps(selection))
        log = pd.DataFrame([[e, e, 0.001, 0.7, 0.6, 0.7, 0.6, 1.0] for e in (1, 2)])
        log.columns = LOG_COLUMNS
        log.to_csv(layout.under(results, layout.RUN_LOG, run=run.run_id), index=False)
    studies = pd.read_csv(splits, dtype=str)
    abnormal = studies["subject_id"].str[1:].astype(int) // 2 % 2 == 0
    labels = abnormal.map({True: "abnormal", False: "normal"})
    patients = (
        studies["subject_id"].str[0]
        + "p"
        + (studies["subject_id"].str[1:].astype(int) // 2).astype(str)
    )
    manifest = pd.DataFrame(
        {
            "subject_id": studies["subject_id"],
            "patient_id": patients,
            "study_type": "XR_WRIST",
            "label": labels,
            "n_images": 1,
            "valid": True,
        }
    )
    layout.under(results, layout.DATA_DIR).mkdir(parents=True)
    manifest.to_csv(layout.under(results, layout.DATA_MANIFEST), index=False)
    images = manifest.assign(
        image=manifest["subject_id"] + "/0.png", study_id=manifest["subject_id"]
    )
    images[["image", "label", "study_id", "patient_id", "study_type"]].to_csv(
        layout.under(results, layout.IMAGES_TABLE), index=False
    )
    pd.DataFrame(columns=["subject", "file", "problem"]).to_csv(
        layout.under(results, layout.DROPPED), index=False
    )
    checks = {"check": ["no patient in two sets"], "passed": [True], "detail": [""]}
    pd.DataFrame(checks).to_csv(layout.under(results, layout.SPLITS_CHECKS), index=False)
    _figure(layout.under(results, layout.EXAMPLES_FIGURE))
    for model in pd.read_csv(final, dtype=str)["run_id"]:
        _figure(layout.under(results, layout.GALLERY, run=model))


def by_hand(stage: str, results: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m segsweep <stage>` on the run whose results folder is `results`."""
    command = [
        sys.executable, "-m", "segsweep", stage,
        "--config-json", json.dumps(CONFIG), "--sweep-json", json.dumps(SWEEP),
        "--results", str(results), *args,
    ]  # fmt: skip
    env = {"PYTHONPATH": str(PACKAGE), "PATH": str(Path(sys.executable).parent)}
    return subprocess.run(command, capture_output=True, text=True, env=env, check=False)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished classification run, its analysis and figures made by hand."""
    root = tmp_path_factory.mktemp("classification") / "results"
    finished_run(root)
    argv = ["--config-json", json.dumps(CONFIG), "--sweep-json", json.dumps(SWEEP)]
    segsweep(["analysis", *argv, "--results", str(root), "--benchmarks", str(root / "none")])
    segsweep(["figures", *argv, "--results", str(root)])
    return root


def test_the_classification_analysis_by_hand_writes_its_study_level_tables(results: Path) -> None:
    for name in layout.CLASSIFICATION_TABLES:
        assert layout.under(results, layout.TABLE, name=name).is_file(), name
    runs = pd.read_csv(layout.under(results, layout.RUNS_TABLE))
    assert {"auc", "accuracy", "kappa"} <= set(runs.columns)  # per study, not per patient
    assert len(runs) == len(sweep_runs(CONFIG, SWEEP))


def test_the_classification_analysis_scores_configurations_from_the_tasks_table(
    tmp_path: Path,
) -> None:
    """At `selection.level: image` the configurations are scored from the per-image tables
    (the task's, as final.csv's): without them the analysis by hand cannot run."""
    root = tmp_path / "results"
    finished_run(root)
    image = {**CONFIG, "selection": {**CONFIG["selection"], "level": "image"}}
    for run in sweep_runs(CONFIG, SWEEP):
        layout.under(root, layout.VAL_PER_IMAGE, run=run.run_id).unlink()
    argv = ["--config-json", json.dumps(image), "--sweep-json", json.dumps(SWEEP)]
    with pytest.raises(FileNotFoundError, match="per_image.csv"):
        segsweep(["analysis", *argv, "--results", str(root)])


def test_the_classification_figures_by_hand(results: Path) -> None:
    figures = [layout.ROC_FIGURE, layout.CONFUSION_FIGURE, layout.PROBABILITY_FIGURE]
    figures.append(layout.CALIBRATION_FIGURE)
    figures += [layout.TRAINING_CURVES, layout.CHECKPOINT_SCORES, layout.COST_FIGURE]
    for pattern in figures:
        assert layout.under(results, pattern).is_file(), pattern


def test_the_classification_report_by_hand(results: Path, tmp_path: Path) -> None:
    html, pdf, latex = tmp_path / "thesis.html", tmp_path / "thesis.pdf", tmp_path / "latex"
    done = by_hand(
        "report", results, "--benchmarks", str(tmp_path / "none"),
        "--out-html", str(html), "--out-pdf", str(pdf), "--out-latex", str(latex),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = html.read_text()
    assert "Radiographs by hand" in text
    assert "ROC" in text and "study" in text
    assert "Dice" not in text
    assert pdf.stat().st_size > 0


def test_help_without_a_config_is_the_default_tasks() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "segsweep", "analysis", "--help"],
        capture_output=True, text=True, env={"PYTHONPATH": str(PACKAGE)}, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and "segsweep analysis" in done.stdout
