"""The classification sweep's tables on a fake results tree: runs, configurations (pooled
out-of-fold studies with folds), the per-hyperparameter tables, and the final models'
study-level metrics, study types, confusion matrices and ROC curves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk

from segsweep import layout
from segsweep.errors import InputError
from segsweep.evaluate.diagnostic import METRICS_COLUMNS
from segsweep.evaluate.predictions import pooled_scorer, prediction_tables
from segsweep.sweep.classification_analysis import (
    OUTPUTS,
    RUN_METRICS,
    ClassificationInputs,
    write_classification_tables,
)
from segsweep.sweep.configurations import COLUMNS, configuration_table, fold_table
from segsweep.sweep.cost import COST_COLUMNS
from segsweep.sweep.grammar import configurations, sweep_runs

CLASSES = ["normal", "abnormal"]
SWEEP = {"grids": {"g": {"model": ["resnet18", "densenet121"], "lr": [0.001, 0.0001]}}}
CONFIG = {
    "task": "classification",
    "train": {"model": "resnet18", "lr": 0.001, "seed": 0, "epochs": 2},
    "split": {"seed": 0, "folds": 0},
    "selection": {"metric": "auc", "level": "study", "higher_is_better": True},
    "classification": {"bootstrap": 50},
    "report": {"pairs": [["model", "lr"]]},
}
SEPARATION = {  # how far the positive studies' scores sit above the negative ones'
    "default": 0.35,
    "lr-0.0001": 0.15,
    "model-densenet121": 0.25,
    "lr-0.0001_model-densenet121": 0.1,
}
FAILED = "lr-0.0001_model-densenet121"
TYPES = ["XR_HAND", "XR_WRIST", "XR_ELBOW"]


def _predictions(studies: list[str], separation: float, seed: int, shift: float = 0.0):
    """(per_image, per_study): two images per study, two studies per patient, every other
    patient abnormal, scores shifted by `shift` (a fold model's own calibration), the
    threshold chosen by Youden on these studies."""
    rng = np.random.default_rng(seed)
    study = np.repeat(studies, 2)
    positive = np.array([int(s[1:]) // 2 % 2 == 0 for s in study], int)
    p = separation * positive + (1 - separation) * rng.random(study.size)
    p = np.clip(p * 0.7 + shift, 0, 1)
    ids = {
        "image_id": [f"{s}-{i % 2}" for i, s in enumerate(study)],
        "study_id": study,
        "patient_id": [f"{s[0]}p{int(s[1:]) // 2}" for s in study],
        "study_type": [TYPES[int(s[1:]) % 3] for s in study],
        "path": [f"{s}.png" for s in study],
    }
    return prediction_tables(ids, positive, np.stack([1 - p, p], axis=1), CLASSES)


def _write(folder: Path, tables) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    per_image, per_study = tables
    per_image.to_csv(folder / "per_image.csv", index=False)
    per_study.to_csv(folder / "per_study.csv", index=False)
    return folder / "per_image.csv", folder / "per_study.csv"


def write_fake_results(root: Path, config: dict) -> tuple[ClassificationInputs, dict]:
    """Selections and validation tables of every run (FAILED failed: empty tables), splits,
    final.csv with two final models and their test tables; returns the inputs and outputs."""
    runs = sweep_runs(config, SWEEP)
    folds = int(config["split"]["folds"])
    val = [f"v{i}" for i in range(24)]
    selections, per_study, per_image = {}, {}, {}
    for run in runs:
        folder = root / "runs" / run.run_id
        fold = run.fold or 0
        studies = [s for s in val if int(s[1:]) // 2 % folds == fold] if folds else val
        if run.configuration == FAILED:
            selection = {"status": "failed", "error": "CUDA out of memory", "selected": None}
            tables = _predictions([], 0.0, 0)
        else:
            tables = _predictions(studies, SEPARATION[run.configuration], fold, 0.15 * fold)
            auc = sk.roc_auc_score(tables[1]["true"] == "abnormal", tables[1]["p_abnormal"])
            selection = {"status": "ok", "selected": {"score": auc, "epoch": 2}}
        per_image[run.run_id], per_study[run.run_id] = _write(folder / "val", tables)
        selections[run.run_id] = folder / "selection.json"
        selections[run.run_id].write_text(json.dumps(selection))
    test = [f"t{i}" for i in range(30)]
    splits = pd.DataFrame(
        {"subject_id": [*val, *test, "x0"], "split": ["val"] * 24 + ["test"] * 30 + ["train"]}
    )
    splits.to_csv(root / "splits.csv", index=False)
    finals = ["default", "model-densenet121"]
    pd.DataFrame({"run_id": finals, "group": ["overall", "model=densenet121"]}).to_csv(
        root / "final.csv", index=False
    )
    test_image, test_study = {}, {}
    for model in finals:
        tables = _predictions(test, SEPARATION[model], seed=9)
        test_image[model], test_study[model] = _write(root / "final" / model / "test", tables)
    given = ClassificationInputs(
        selections, per_study, per_study, root / "splits.csv", root / "final.csv",
        test_study, test_image,
    )  # fmt: skip
    outputs = {name: root / "tables" / f"{name}.csv" for name in OUTPUTS}
    return given, outputs


def _read(outputs: dict, name: str) -> pd.DataFrame:
    return pd.read_csv(outputs[name], keep_default_na=True)


def test_the_sweep_tables_of_a_classification_sweep(tmp_path: Path) -> None:
    given, outputs = write_fake_results(tmp_path, CONFIG)
    write_classification_tables(CONFIG, SWEEP, given, outputs)
    runs = _read(outputs, "runs").set_index("run_id")
    assert list(runs.reset_index().columns) == [
        "run_id", "lr", "model", "status", *RUN_METRICS, *COST_COLUMNS, "error"
    ]  # fmt: skip
    assert runs.loc[FAILED, "status"] == "failed" and runs.loc[FAILED, "error"].startswith("CUDA")
    assert np.isnan(runs.loc[FAILED, ["score", "auc", "accuracy", "kappa"]].astype(float)).all()
    studies = pd.read_csv(given.val_per_study["default"])
    predicted = studies["predicted"] == "abnormal"
    assert runs.loc["default", "auc"] == pytest.approx(runs.loc["default", "score"], abs=1e-9)
    assert runs.loc["default", "kappa"] == pytest.approx(
        sk.cohen_kappa_score(studies["true"] == "abnormal", predicted), abs=1e-9
    )
    found = _read(outputs, "configurations").set_index("configuration")
    assert list(found.columns[-len(COLUMNS) - 1 :]) == [*COLUMNS, "error"]
    assert found.loc["default", "score"] == runs.loc["default", "score"]
    assert found.loc["default", "patients"] == 12  # two studies per patient
    assert found.loc["default", "ci_low"] < found.loc["default", "score"]
    assert found.loc[FAILED, "status"] == "failed"
    hyperparameters = _read(outputs, "hyperparameters")
    assert list(hyperparameters["hyperparameter"]) == ["lr", "lr", "model", "model"]
    assert hyperparameters["No. experiments"].sum() == 6  # the failed run left out
    pairs = _read(outputs, "pairs")
    assert len(pairs) == 4 and pairs["count"].sum() == 3
    best = _read(outputs, "best_runs")
    assert list(best["run_id"]) == ["default", "model-densenet121", "lr-0.0001"]
    assert list(_read(outputs, "kruskal")["hyperparameter"]) == ["lr", "model"]
    assert _read(outputs, "folds").empty


def test_the_final_models_study_level_tables(tmp_path: Path) -> None:
    given, outputs = write_fake_results(tmp_path, CONFIG)
    write_classification_tables(CONFIG, SWEEP, given, outputs)
    metrics = _read(outputs, "classification_metrics")
    assert list(metrics.columns) == ["model", "split", *METRICS_COLUMNS]
    assert len(metrics) == 2 * 2 * 7
    test = pd.read_csv(given.test_per_study["default"])
    row = metrics.query("model == 'default' and split == 'test'").set_index("metric")
    y = test["true"] == "abnormal"
    assert row.loc["auc", "value"] == pytest.approx(sk.roc_auc_score(y, test["p_abnormal"]))
    assert row.loc["accuracy", "n_studies"] == 30 and row.loc["accuracy", "n_patients"] == 15
    assert row.loc["auc", "threshold"] == test["threshold"].iloc[0]
    types = _read(outputs, "study_types")
    assert list(types.columns[:3]) == ["model", "split", "study_type"]
    first = types.query("model == 'default' and split == 'val'")
    assert list(first["study_type"]) == ["XR_ELBOW", "XR_HAND", "XR_WRIST", "all"]
    assert list(first["n_studies"]) == [8, 8, 8, 24]
    confusion = _read(outputs, "confusion")
    assert len(confusion) == 2 * 2 * 4
    assert confusion.groupby(["model", "split"])["count"].sum().tolist() == [30, 24, 30, 24]
    roc = _read(outputs, "roc")
    assert list(roc.columns) == ["model", "split", "fpr", "tpr", "tpr_low", "tpr_high", "auc"]
    assert len(roc) == 2 * 2 * 101


def test_a_test_table_with_a_development_study_is_an_input_error(tmp_path: Path) -> None:
    given, outputs = write_fake_results(tmp_path, CONFIG)
    leaked = pd.read_csv(given.test_per_study["default"])
    leaked.loc[0, "study_id"] = "v3"
    leaked.to_csv(given.test_per_study["default"], index=False)
    with pytest.raises(InputError, match="v3.*test split"):
        write_classification_tables(CONFIG, SWEEP, given, outputs)


def test_with_folds_a_configuration_scores_its_pooled_out_of_fold_studies(tmp_path: Path) -> None:
    config = {**CONFIG, "split": {"seed": 0, "folds": 3}}
    given, outputs = write_fake_results(tmp_path, config)
    runs = sweep_runs(config, SWEEP)
    scorer = pooled_scorer(CLASSES, "auc", 50, 0)
    table = configuration_table(
        runs, given.selections, given.val_per_study, config["selection"], scorer
    ).set_index("configuration")
    members = [r.run_id for r in configurations(runs)["default"]]
    pooled = pd.concat([pd.read_csv(given.val_per_study[run]) for run in members])
    assert len(pooled) == 24 and pooled["study_id"].is_unique  # each study once
    expected = sk.roc_auc_score(pooled["true"] == "abnormal", pooled["p_abnormal"])
    assert table.loc["default", "score"] == pytest.approx(expected, abs=1e-9)
    folds = fold_table(runs, given.selections).set_index("run_id")
    fold_mean = folds.loc[members, "score"].mean()
    assert table.loc["default", "fold_mean"] == pytest.approx(fold_mean)
    assert table.loc["default", "score"] != pytest.approx(fold_mean)  # pooled, not averaged
    assert table.loc["default", "patients"] == 12 and table.loc["default", "folds"] == 3
    assert table.loc["default", "ci_low"] < expected < table.loc["default", "ci_high"]
    assert np.isnan(table.loc[FAILED, "score"]) and table.loc[FAILED, "patients"] == 0
    write_classification_tables(config, SWEEP, given, outputs)
    runs_df = _read(outputs, "runs")
    assert list(runs_df.columns[:3]) == ["run_id", "configuration", "fold"]
    assert len(_read(outputs, "folds")) == 12
    metrics = _read(outputs, "classification_metrics")
    val = metrics.query("model == 'default' and split == 'val'")
    assert (val["n_studies"] == 24).all()
    assert val.set_index("metric").loc["auc", "value"] == pytest.approx(expected, abs=1e-9)


def test_inputs_under_a_results_folder_follow_the_layout(tmp_path: Path) -> None:
    given = ClassificationInputs.under(tmp_path, ["default"], ["default"])
    assert given.val_per_study["default"] == layout.under(
        tmp_path, layout.VAL_PER_STUDY, run="default"
    )
    assert given.test_per_image["default"].name == "per_image.csv"
