"""A classification sweep trained by successive halving, on a fake results tree in the workflow's
layout: the analysis compares every configuration at the first rung (2 epochs) while the final
models keep their full budget (4 epochs), the runs table says where each run stopped, and the
thesis says at which rung its sweep tables compare and has the section Training budget; the same
tree without halving has none of it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk
from test_classification_report import CONFIG as REPORT_CONFIG

from segsweep import layout
from segsweep.evaluate.predictions import prediction_tables
from segsweep.report.chapters import classification as chapters
from segsweep.report.document import Document, Figure, Paragraph, Table, walk
from segsweep.report.thesis import build_document
from segsweep.sweep import budget_summary
from segsweep.sweep.grammar import sweep_runs
from segsweep.tasks import stages

CLASSES = ["normal", "abnormal"]
CONFIG = {
    **REPORT_CONFIG,
    "train": {**REPORT_CONFIG["train"], "epochs": 4},
    "classification": {**REPORT_CONFIG["classification"], "bootstrap": 50},
}
SWEEP = {"grids": {"g": {"model": ["resnet18", "densenet121"], "lr": [0.001, 0.0001]}}}
HALVING = {**SWEEP, "budget": {"method": "halving", "min_epochs": 2, "eta": 2, "prune": "rank"}}
SEPARATION = {  # how far the positive studies' scores sit above the negative ones' (full budget)
    "default": 0.35,
    "lr-0.0001": 0.15,
    "model-densenet121": 0.25,
    "lr-0.0001_model-densenet121": 0.1,
}
FINALS = {"default": "overall", "model-densenet121": "model=densenet121"}  # the survivors
VAL = [f"v{i}" for i in range(16)]  # two studies per patient: 8 validation patients
TEST = [f"t{i}" for i in range(12)]


def predictions(studies: list[str], separation: float, seed: int):
    """(per_image, per_study) of `studies`: two images each, every other patient abnormal."""
    rng = np.random.default_rng(seed)
    study = np.repeat(studies, 2)
    positive = np.array([int(s[1:]) // 2 % 2 == 0 for s in study], int)
    p = np.clip((separation * positive + (1 - separation) * rng.random(study.size)) * 0.7, 0, 1)
    ids = {
        "image_id": [f"{s}-{i % 2}" for i, s in enumerate(study)],
        "study_id": study,
        "patient_id": [f"{s[0]}p{int(s[1:]) // 2}" for s in study],
        "study_type": ["XR_WRIST"] * study.size,
        "path": [f"{s}.png" for s in study],
    }
    return prediction_tables(ids, positive, np.stack([1 - p, p], axis=1), CLASSES)


def write_run(folder: Path, separation: float, seed: int, epochs: int) -> float:
    """A run's (or a rung's) selection.json and validation tables; returns its AUC."""
    per_image, per_study = predictions(VAL, separation, seed)
    (folder / "val").mkdir(parents=True)
    per_image.to_csv(folder / "val" / "per_image.csv", index=False)
    per_study.to_csv(folder / "val" / "per_study.csv", index=False)
    auc = sk.roc_auc_score(per_study["true"] == "abnormal", per_study["p_abnormal"])
    scores = [{"epoch": e, "score": auc * e / epochs} for e in range(1, epochs + 1)]
    selected = {"status": "ok", "selected": {"score": auc, "epoch": epochs}, "scores": scores}
    (folder / "selection.json").write_text(json.dumps(selected))
    return auc


def under(results: Path, pattern: str, **wildcards: str) -> Path:
    path = layout.under(results, pattern, **wildcards)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def benchmark(results: Path, job: str, seconds: float) -> None:
    """A training job's Snakemake benchmark (the benchmarks folder beside `results`)."""
    path = layout.under(results.parent / "benchmarks", job, base=layout.BENCHMARKS)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"s\tcpu_time\tmax_rss\n{seconds}\t{seconds}\t100\n")


def write_tree(results: Path, halved: bool) -> dict[str, float]:
    """The fake results: every run at its full budget (the survivors') or, `halved`, pruned at
    rung 1 with its rung-1 files (half the separation) and the rung's decision; the data, the
    split, the final models and their test tables; the training jobs' benchmarks (a run's own
    job 10 s, 1 s for a pruned run's; its rung job 10 s). Returns each run's AUC as the analysis
    compares it (at rung 1 when `halved`)."""
    compared, rows = {}, []
    for run in sweep_runs(CONFIG, SWEEP):
        own = layout.benchmark(f"train/{run.run_id}")
        benchmark(results, own, 10.0 if run.run_id in FINALS or not halved else 1.0)
        if halved:
            rung_job = layout.path(layout.RUNG_TRAIN_JOB, run=run.run_id, epochs="2")
            benchmark(results, layout.benchmark(rung_job), 10.0)
        folder = under(results, layout.RUN_DIR, run=run.run_id)
        full = write_run(folder, SEPARATION[run.run_id], 0, 4)
        survives = run.run_id in FINALS or not halved
        epochs = range(1, 5 if survives else 3)
        log = {"epoch": list(epochs), "time_s": 1.0, "val_auc": [full * e / 4 for e in epochs]}
        log |= {"train_loss": [1 / e for e in epochs], "val_loss": [1.1 / e for e in epochs]}
        pd.DataFrame(log).to_csv(folder / "train_log.csv", index=False)
        compared[run.run_id] = full
        if halved:
            rung = layout.path(layout.RUNG_DIR, run=run.run_id, epochs="2")
            compared[run.run_id] = write_run(
                layout.under(results, rung), SEPARATION[run.run_id] / 2, 1, 2
            )
            decision = "promoted" if run.run_id in FINALS else "pruned"
            rows.append([1, 2, 4, run.run_id, "ok", compared[run.run_id], decision, "rank"])
    if halved:
        columns = ["rung", "epochs", "next_epochs", "configuration", "status", "score"]
        table = pd.DataFrame(rows, columns=[*columns, "decision", "reason"])
        table.to_csv(under(results, layout.RUNG_DECISION, epochs="2"), index=False)
    studies = [(s, "val") for s in VAL] + [(s, "test") for s in TEST] + [("x0", "train")]
    split = pd.DataFrame(studies, columns=["subject_id", "split"])
    split.to_csv(under(results, layout.SPLITS), index=False)
    patient = [f"{s[0]}p{int(s[1:]) // 2}" for s, _ in studies]
    label = ["abnormal" if int(s[1:]) // 2 % 2 == 0 else "normal" for s, _ in studies]
    manifest = pd.DataFrame({"subject_id": split["subject_id"], "patient_id": patient})
    manifest = manifest.assign(study_type="XR_WRIST", label=label, n_images=2, valid=True)
    manifest.to_csv(under(results, layout.DATA_MANIFEST), index=False)
    images = manifest.rename(columns={"subject_id": "study_id"}).loc[manifest.index.repeat(2)]
    images.to_csv(under(results, layout.IMAGES_TABLE), index=False)
    final = {"run_id": list(FINALS), "group": list(FINALS.values()), "score": [0.9, 0.8]}
    pd.DataFrame(final).to_csv(under(results, layout.FINAL), index=False)
    for model in FINALS:
        per_image, per_study = predictions(TEST, SEPARATION[model], 9)
        per_image.to_csv(under(results, layout.TEST_PER_IMAGE, run=model), index=False)
        per_study.to_csv(under(results, layout.TEST_PER_STUDY, run=model), index=False)
    return compared


def analysed(results: Path, sweep: dict) -> list[str]:
    """The stages' arguments; the analysis (and under halving the budget) run on `results`."""
    args = ["--config-json", json.dumps(CONFIG), "--sweep-json", json.dumps(sweep)]
    args += ["--results", str(results)]
    stages.analysis([*args, "--benchmarks", str(results.parent / "benchmarks")])
    if "budget" in sweep:
        budget_summary.main(
            [
                *args,
                "--out-rungs", str(layout.under(results, layout.BUDGET_RUNGS)),
                "--out-configurations", str(layout.under(results, layout.BUDGET_CONFIGURATIONS)),
                "--out-figure", str(layout.under(results, layout.BUDGET_FIGURE)),
            ]
        )  # fmt: skip
    return args


@pytest.fixture(scope="module")
def halved(tmp_path_factory: pytest.TempPathFactory) -> dict:
    results = tmp_path_factory.mktemp("halving") / "results"
    compared = write_tree(results, halved=True)
    args = analysed(results, HALVING)
    inputs = chapters.report_inputs(results, CONFIG, HALVING, [])
    document = build_document(inputs)
    return {"results": results, "args": args, "compared": compared, "document": document}


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> dict:
    results = tmp_path_factory.mktemp("plain") / "results"
    write_tree(results, halved=False)
    analysed(results, SWEEP)
    inputs = chapters.report_inputs(results, CONFIG, SWEEP, [])
    return {"results": results, "document": build_document(inputs)}


def blocks(document: Document) -> dict[str, Table | Figure]:
    return {b.key: b for c in document.chapters for b in walk(c.blocks) if hasattr(b, "caption")}


def said(document: Document) -> str:
    """Every paragraph's text, the summary's included (references left out)."""
    paragraphs = [b for c in document.chapters for b in walk(c.blocks)] + document.summary
    return "\n".join(
        "".join(str(p) for p in b.parts if isinstance(p, str))
        for b in paragraphs
        if isinstance(b, Paragraph)
    )


def test_under_halving_the_sweep_is_analysed_at_the_first_rung(halved: dict) -> None:
    results, compared = halved["results"], halved["compared"]
    runs = pd.read_csv(layout.under(results, layout.RUNS_TABLE)).set_index("run_id")
    columns = list(runs.columns)
    assert columns[columns.index("wall_s") - 2 : columns.index("wall_s")] == [
        "epochs_trained",
        "pruned_at",
    ]
    assert runs["epochs_trained"].to_dict() == {r: 4 if r in FINALS else 2 for r in SEPARATION}
    assert runs["pruned_at"].isna().to_dict() == {r: r in FINALS for r in SEPARATION}
    assert runs["score"].to_dict() == pytest.approx(compared)  # rung 1's, 8 patients each
    assert runs["wall_s"].to_dict() == {r: 20 if r in FINALS else 11 for r in SEPARATION}
    assert runs["auc"].to_dict() == pytest.approx(compared)
    configurations = layout.under(results, layout.CONFIGURATIONS_TABLE)
    scores = pd.read_csv(configurations).set_index("configuration")["score"]
    assert scores.to_dict() == pytest.approx(compared)
    # the final models' validation metrics stay at their full budget (16 studies, 8 patients)
    metrics = pd.read_csv(layout.under(results, layout.TABLE, name="classification_metrics"))
    auc = metrics.query("model == 'default' and split == 'val' and metric == 'auc'")
    full = pd.read_csv(layout.under(results, layout.VAL_PER_STUDY, run="default"))
    expected = sk.roc_auc_score(full["true"] == "abnormal", full["p_abnormal"])
    assert auc["value"].iloc[0] == pytest.approx(expected)
    assert expected != pytest.approx(compared["default"])
    assert auc["n_patients"].iloc[0] == 8


def test_the_thesis_compares_at_the_first_rung_and_marks_pruned_runs(halved: dict) -> None:
    found = blocks(halved["document"])
    at = "all 4 configurations at rung 1, 2 epochs"
    for key in ("hp-lr", "hp-model", "jitter-lr", "kruskal", "best-runs"):
        assert at in found[key].caption, key
    assert "among the configurations that reached the last rung" in found["final-models"].caption
    runs = found["all-runs"]
    assert "The table mixes budgets" in runs.caption
    pruned = runs.columns.index("Pruned at rung")
    trained = runs.columns.index("Epochs trained")
    by_run = {row[0]: (row[trained], row[pruned]) for row in runs.rows}
    assert by_run["default"] == ("4", "–") and by_run["lr-0.0001"] == ("2", "1")
    methods = "chosen among the configurations that reached the last rung, at the full budget"
    assert f"{methods} of 4 epochs" in said(halved["document"])


def test_the_figures_say_the_rung_and_mark_pruned_configurations(halved: dict) -> None:
    stages.figures(halved["args"])
    results = halved["results"]
    jitter = layout.under(results, layout.JITTER, name="lr").with_suffix(".svg").read_text()
    assert "All 4 configurations at rung 1, 2 epochs" in jitter
    cost = layout.under(results, layout.COST_FIGURE).with_suffix(".svg").read_text()
    assert "pruned at a rung" in cost


def test_the_thesis_has_the_training_budget_under_halving(halved: dict) -> None:
    document = halved["document"]
    assert "budget-rungs" in blocks(document) and "budget-estimate" in blocks(document)
    results = [c for c in document.chapters if c.key == "results"][0]
    assert results.blocks[0].key == "training-budget"  # before the sweep's tables
    text = said(document)
    assert "Successive halving trained 12 of the 16 epochs a full grid would have" in text
    assert "Validation image-level AUC of every configuration" in blocks(document)["budget"].caption


def test_without_halving_there_is_no_budget_nor_rung(plain: dict) -> None:
    document = plain["document"]
    found = blocks(document)
    assert not {"budget-rungs", "budget-estimate", "budget"} & set(found)
    assert not any("at rung 1" in b.caption for b in found.values())
    assert "Pruned at rung" not in found["all-runs"].columns
    assert "mixes budgets" not in found["all-runs"].caption
    text = said(document)
    assert "halving" not in text and "rung" not in text
    runs = pd.read_csv(layout.under(plain["results"], layout.RUNS_TABLE))
    assert "pruned_at" not in runs and "epochs_trained" not in runs
