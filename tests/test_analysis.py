"""Sweep tables against hand-computed numbers, on a fake results tree of five runs.

`write_fake_results` is shared with test_figures and test_report: it writes every file the
analysis, figures and report stages read, with scores chosen so the tables can be checked by hand,
and beside results/ the training jobs' Snakemake benchmarks (`analysis_args` points the analysis
at them).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from segsweep import layout
from segsweep.sweep.analysis import (
    best_runs_table,
    class_summary,
    configured_pairs,
    final_per_patient,
    final_tables,
    hue_partner,
    hyperparameter_table,
    hyperparameter_tables,
    pair_grid,
    pair_table,
    runs_table,
)
from segsweep.sweep.grammar import expand_sweep
from segsweep.tasks import stages
from segsweep.vocabulary import format_level, level_order

TRAIN = {
    "model": "unet2d",
    "depth": 3,
    "labels": "merged",
    "loss": "dice",
    "lr": 0.001,
    "epochs": 6,
    "checkpoint_every": 1,
    "seed": 0,
}
SWEEP = {
    "fixed": {"epochs": 6},
    "grids": {
        "loss_vs_labels": {"loss": ["cross_entropy", "dice"], "labels": ["merged", "separate"]},
        "learning_rate": {"lr": [0.001, 0.0001]},
    },
    "repeats": 1,
}
CONFIG = {
    "data": {
        "source": "synthetic",
        "labels": {"femur": 1, "tibia": 2, "fibula": 3},
        "synthetic": {"seed": 42},
    },
    "preprocess": {
        "n4": {
            "enabled": True,
            "shrink": 4,
            "iterations": [50, 50, 30],
            "convergence": 0.001,
        },
        "crop": {"window_mm": 90.0, "size": 64, "slices": 24},
        "normalise": "zscore",
    },
    "split": {
        "fractions": {"train": 0.6, "val": 0.2, "test": 0.2},
        "stratify": "source",
        "seed": 0,
    },
    "train": TRAIN,
    "selection": {
        "metric": "dice",
        "aggregate": "mean",
        "level": "patient",
        "class": "foreground",
        "higher_is_better": True,
    },
    "final": {"n_best": 1, "group_by": ["labels"], "model": "ensemble"},
    "report": {
        "title": "Fake sweep",
        "author": "Tester",
        "pairs": [["loss", "labels"], ["lr", "labels"]],
    },
}
# selected validation score of each run (loss, labels, lr in the comments)
SCORES = {
    "default": 0.80,  # dice, merged, 0.001
    "labels-separate": 0.70,  # dice, separate, 0.001
    "loss-cross-entropy": 0.60,  # cross_entropy, merged, 0.001
    "labels-separate_loss-cross-entropy": 0.50,  # cross_entropy, separate, 0.001
    "lr-0.0001": 0.40,  # dice, merged, 0.0001
}
# wall-clock seconds of each run's training job (its CPU seconds twice that): the Pareto front of
# score against cost is labels-separate_loss-cross-entropy, labels-separate, default
WALL_S = {
    "default": 7200.0,
    "labels-separate": 3600.0,
    "loss-cross-entropy": 5400.0,
    "labels-separate_loss-cross-entropy": 1800.0,
    "lr-0.0001": 1800.0,
}
BENCHMARK_COLUMNS = ["s", "h:m:s", "max_rss", "max_vms", "max_uss", "max_pss", "io_in", "io_out"]
BENCHMARK_COLUMNS += ["mean_load", "cpu_time"]
FINAL = {"default": "overall; labels=merged", "labels-separate": "labels=separate"}
VAL_PATIENTS = ["p1", "p2", "p3"]
TEST_PATIENTS = ["t1", "t2"]
METRIC_COLUMNS = [
    "tp",
    "fp",
    "fn",
    "tn",
    "iou",
    "sensitivity",
    "specificity",
    "precision",
    "accuracy",
]


def _metric_rows(run_id: str, split: str, keys: list[dict], dice: list[float], cls: str) -> list:
    return [
        {
            "run_id": run_id,
            "split": split,
            "space": "processed",
            **key,
            "class": cls,
            **dict.fromkeys(METRIC_COLUMNS, 0),
            "dice": d,
        }
        for key, d in zip(keys, dice, strict=True)
    ]


def slice_dice(score: float, patient: int, slice_id: int) -> float:
    """Per-slice Dice of the fakes: varies with patient and slice, NaN for the last slice."""
    if slice_id == 4:
        return math.nan  # reference and prediction both empty
    return round(min(1.0, max(0.0, score - 0.1 * patient + 0.05 * slice_id)), 6)


def write_per_slice(path: Path, run_id: str, split: str, patients: list[str], score: float):
    keys, dice = [], []
    for p, patient in enumerate(patients):
        for k in range(5):
            keys.append({"patient_id": patient, "slice_id": k})
            dice.append(slice_dice(score, p, k))
    rows = _metric_rows(run_id, split, keys, dice, "foreground")
    rows += _metric_rows(run_id, split, keys, [0.0] * len(keys), "femur")  # must be ignored
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = [
        "run_id",
        "split",
        "space",
        "patient_id",
        "slice_id",
        "class",
        "tp",
        "fp",
        "fn",
        "tn",
        "dice",
        *METRIC_COLUMNS[4:],
    ]
    pd.DataFrame(rows)[columns].to_csv(path, index=False)


def write_benchmark(path: Path, rows: list[tuple[float, float, float]]) -> None:
    """A Snakemake benchmark TSV with one row (wall s, CPU s, max_rss MB) per execution."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(
        [[s, "0:00:00", rss, rss, rss, rss, 0.0, 0.0, 50.0, cpu] for s, cpu, rss in rows],
        columns=BENCHMARK_COLUMNS,
    )
    table.to_csv(path, sep="\t", index=False)


def write_fake_results(root: Path) -> Path:
    """A results tree with everything analysis, figures and report read, and the training
    jobs' benchmarks beside it; returns results/."""
    results = root / "results"
    for run_id, wall in WALL_S.items():
        benchmark = root / layout.path(layout.benchmark("train/{run}"), run=run_id)
        write_benchmark(benchmark, [(wall, 2 * wall, 512.0)])
    for run in expand_sweep(SWEEP, TRAIN):
        folder = results / "runs" / run.run_id
        (folder / "val").mkdir(parents=True)
        score = SCORES[run.run_id]
        (folder / "params.yaml").write_text(yaml.safe_dump({**run.params, "run_id": run.run_id}))
        checkpoints = [
            {
                "file": f"epoch-000{e}.pt",
                "epoch": e,
                "step": 10 * e,
                "score": score - 0.1 * (e != 3),
            }
            for e in (1, 2, 3)
        ]
        selection = {**CONFIG["selection"], "scores": checkpoints, "selected": checkpoints[2]}
        (folder / "selection.json").write_text(json.dumps(selection))
        used = {"train": ["epi-000", "jopp-001"], "val": ["epi-001"]}
        (folder / "subjects.json").write_text(json.dumps(used))
        epochs = range(1, 7)
        pd.DataFrame(
            {
                "epoch": epochs,
                "step": [10 * e for e in epochs],
                "lr": 0.001,
                "train_loss": [1.0 / e + 0.02 * (e % 2) for e in epochs],
                "val_loss": [1.1 / e for e in epochs],
                "val_dice": [score * e / 6 for e in epochs],
                "time_s": 1.0,
            }
        ).to_csv(folder / "train_log.csv", index=False)
        per_patient = _metric_rows(
            run.run_id,
            "val",
            [{"patient_id": p} for p in VAL_PATIENTS],
            [score - 0.1, score, score + 0.1],
            "foreground",
        )
        per_patient += _metric_rows(run.run_id, "val", [{"patient_id": "p1"}], [0.0], "femur")
        pd.DataFrame(per_patient).to_csv(folder / "val" / "per_patient.csv", index=False)
        write_per_slice(folder / "val" / "per_slice.csv", run.run_id, "val", VAL_PATIENTS, score)
    for run_id in FINAL:
        test = results / "final" / run_id / "test"
        write_per_slice(test / "per_slice.csv", run_id, "test", TEST_PATIENTS, SCORES[run_id])
        rows = _metric_rows(
            run_id,
            "test",
            [{"patient_id": p} for p in TEST_PATIENTS],
            [SCORES[run_id] - 0.05, SCORES[run_id] + 0.05],
            "foreground",
        )
        pd.DataFrame(rows).to_csv(test / "per_patient.csv", index=False)
    (results / "summary").mkdir(parents=True)
    pd.DataFrame(
        {"run_id": list(FINAL), "group": list(FINAL.values()), "score": [0.8, 0.7]}
    ).to_csv(results / "summary" / "final.csv", index=False)
    subjects = [
        ("epi-000", "epi", "coronal", True, "train"),
        ("epi-001", "epi", "coronal", True, "val"),
        ("epi-002", "epi", "coronal", False, "unlabelled"),
        ("jopp-000", "jopp", "coronal", True, "test"),
        ("jopp-001", "jopp", "coronal", True, "train"),
        ("maas-000", "maas", "sagittal", False, "unlabelled"),
    ]
    (results / "data").mkdir(parents=True)
    (results / "splits").mkdir(parents=True)
    pd.DataFrame(
        [
            {
                "subject_id": s,
                "source": src,
                "perspective": view,
                "image": f"{s}/image.mhd",
                "mask": f"{s}/mask.mhd" if lab else "",
                "roi": "",
                "labelled": lab,
                "valid": True,
                "problem": "",
            }
            for s, src, view, lab, _ in subjects
        ]
    ).to_csv(results / "data" / "manifest.csv", index=False)
    pd.DataFrame(
        [
            {"subject_id": s, "split": split, "stratum": src, "source": src}
            for s, src, _, _, split in subjects
        ]
    ).to_csv(results / "splits" / "splits.csv", index=False)
    pd.DataFrame(
        [
            {"check": "subject in one split", "passed": True, "detail": "ok"},
            {"check": "patient in one split", "passed": True, "detail": "ok"},
        ]
    ).to_csv(results / "splits" / "splits_checks.csv", index=False)
    for s, src, _, _, _ in subjects[:-1]:  # maas-000 without a record: no resolution
        size, spacing = (
            ([100, 100, 41], [1.6, 1.6, 3.0]) if src == "epi" else ([64, 64, 24], [2.5, 2.5, 4.0])
        )
        (results / "data" / s).mkdir()
        record = {"subject_id": s, "original": {"size": size, "spacing": spacing}}
        (results / "data" / s / "ingest.json").write_text(json.dumps(record))
    (results / "crop").mkdir(parents=True)
    pd.DataFrame(
        {
            "subject_id": ["epi-000", "epi-001", "jopp-000", "jopp-001"],
            "method": ["joint"] * 4,
            "error_mm": [2.0, 4.5, None, 6.1],  # jopp-000: no reference centre
            "dx_mm": [1.0, -3.0, None, 5.0],
            "dy_mm": [1.5, 3.0, None, 3.0],
            "dz_mm": [0.5, 1.5, None, -2.0],
        }
    ).to_csv(results / "crop" / "centre_error.csv", index=False)
    pd.DataFrame(
        {
            "subject_id": ["epi-000", "epi-001", "jopp-000", "jopp-001"],
            "femur": [1.0, 0.95, 0.9, 0.85],
            "fibula": [None, 0.5, 0.75, None],
        }
    ).to_csv(results / "crop" / "kept_fraction.csv", index=False)
    return results


FAILURE = "RuntimeError: Output size is too small"


def fail_run(results: Path, run_id: str) -> None:
    """Turn a fake run into one whose training failed, as train, select and evaluate record it:
    selection.json with status "failed", header-only validation tables and training log."""
    folder = results / "runs" / run_id
    selection = {**CONFIG["selection"], "status": "failed", "error": FAILURE}
    (folder / "selection.json").write_text(
        json.dumps({**selection, "scores": [], "selected": None})
    )
    for name in ("val/per_patient.csv", "val/per_slice.csv", "train_log.csv"):
        header = pd.read_csv(folder / name, nrows=0)
        header.to_csv(folder / name, index=False)


def by_run(results: Path, pattern: str, runs: list[str]) -> dict[str, Path]:
    """{run: its file of `pattern`} in the results folder `results`."""
    return {run: layout.under(results, pattern, run=run) for run in runs}


def final_files(results: Path, final: pd.DataFrame, name: str) -> dict:
    """(run, split) → the final models' per_slice or per_patient.csv (`name`)."""
    runs = final["run_id"].tolist()
    val, test = (getattr(layout, f"{split}_{name.upper()}") for split in ("VAL", "TEST"))
    models = {run: [run] for run in runs}
    return final_tables(models, by_run(results, val, runs), by_run(results, test, runs))


def cli_args(results: Path) -> list[str]:
    return [
        "--config-json",
        json.dumps(CONFIG),
        "--sweep-json",
        json.dumps(SWEEP),
        "--results",
        str(results),
    ]


def analysis_args(results: Path) -> list[str]:
    """The analysis's arguments, with the fake tree's benchmarks."""
    return [*cli_args(results), "--benchmarks", str(results.parent / layout.BENCHMARKS)]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_results(tmp_path_factory.mktemp("analysis"))


@pytest.fixture(scope="module")
def runs_df(results: Path) -> pd.DataFrame:
    runs = [run.run_id for run in expand_sweep(SWEEP, TRAIN)]
    return runs_table(
        expand_sweep(SWEEP, TRAIN),
        by_run(results, layout.SELECTION, runs),
        by_run(results, layout.VAL_PER_PATIENT, runs),
    )


def test_runs_table_reads_selection_and_foreground_validation_dice(runs_df: pd.DataFrame) -> None:
    assert runs_df.columns.tolist() == [
        "run_id",
        "labels",
        "loss",
        "lr",
        "status",
        "score",
        "selected_epoch",
        "dice_mean",
        "dice_median",
        "dice_std",
        "wall_s",
        "cpu_s",
        "max_rss_mb",
        "device_s",
        "device_peak_mb",
        "error",
    ]
    assert set(runs_df["status"]) == {"ok"} and set(runs_df["error"]) == {""}
    table = runs_df.set_index("run_id")
    assert table["score"].to_dict() == pytest.approx(SCORES)
    assert set(table["selected_epoch"]) == {3}
    row = table.loc["labels-separate"]
    assert (row["labels"], row["loss"], row["lr"]) == ("separate", "dice", 0.001)
    # per-patient foreground Dice [s - 0.1, s, s + 0.1]; the femur row (0.0) is ignored
    assert row["dice_mean"] == pytest.approx(0.70)
    assert row["dice_median"] == pytest.approx(0.70)
    assert row["dice_std"] == pytest.approx(0.1)


def test_hyperparameter_table_matches_hand_computed_values(runs_df: pd.DataFrame) -> None:
    loss = hyperparameter_table(runs_df, "loss").set_index("level")
    assert loss.columns.tolist() == ["Min", "Max", "STD", "Mean", "Median", "No. experiments"]
    assert loss.index.tolist() == ["cross_entropy", "dice"]
    assert loss.loc["cross_entropy"].tolist() == pytest.approx(
        [0.50, 0.60, math.sqrt(0.005), 0.55, 0.55, 2]
    )
    # dice: 0.8, 0.7, 0.4 → mean 0.6333, median 0.7, sample variance 0.0866667 / 2
    assert loss.loc["dice"].tolist() == pytest.approx(
        [0.40, 0.80, math.sqrt(0.0866667 / 2), 0.633333, 0.70, 3], abs=1e-6
    )
    lr = hyperparameter_table(runs_df, "lr").set_index("level")
    assert lr.index.tolist() == [0.0001, 0.001]
    assert math.isnan(lr.loc[0.0001, "STD"])  # one experiment: no sample STD
    assert lr.loc[0.0001, "No. experiments"] == 1
    assert lr.loc[0.001, "STD"] == pytest.approx(math.sqrt(0.05 / 3))


def test_undefined_scores_count_as_experiments_but_not_in_statistics() -> None:
    runs = pd.DataFrame({"run_id": list("abc"), "loss": "dice", "score": [0.5, math.nan, 0.7]})
    row = hyperparameter_table(runs, "loss").iloc[0]
    assert (row["Min"], row["Mean"], row["No. experiments"]) == (0.5, pytest.approx(0.6), 3)


def test_long_hyperparameter_table_has_text_levels(runs_df: pd.DataFrame) -> None:
    long = hyperparameter_tables(runs_df, ["labels", "loss", "lr"])
    assert long.columns[:2].tolist() == ["hyperparameter", "level"]
    assert long[long["hyperparameter"] == "lr"]["level"].tolist() == ["0.0001", "0.001"]
    assert len(long) == 6


def test_pair_table_and_grid_cells(runs_df: pd.DataFrame) -> None:
    table = pair_table(runs_df, "loss", "labels")
    cell = table[(table["a_level"] == "dice") & (table["b_level"] == "merged")].iloc[0]
    assert cell[["mean", "median"]].tolist() == pytest.approx([0.6, 0.6])
    assert cell["count"] == 2
    grid = pair_grid(table, digits=2)
    assert grid.index.tolist() == ["cross_entropy", "dice"]
    assert grid.columns.tolist() == ["merged", "separate"]
    assert grid.loc["dice", "merged"] == "0.60/0.60 (2)"
    assert grid.loc["cross_entropy", "separate"] == "0.50/0.50 (1)"
    assert pair_grid(table).loc["dice", "separate"] == "0.700/0.700 (1)"
    empty = pair_grid(pair_table(runs_df, "lr", "labels"))
    assert empty.loc["0.0001", "separate"] == "-/- (0)"
    assert empty.loc["0.001", "merged"] == "0.700/0.700 (2)"


def test_configured_pairs_and_jitter_colour() -> None:
    swept = ["labels", "loss", "lr"]
    assert configured_pairs(CONFIG, swept) == [("loss", "labels"), ("lr", "labels")]
    only_unswept = {"report": {"pairs": [["loss", "dropout"]]}}
    assert configured_pairs(only_unswept, swept) == [("labels", "loss")]
    assert configured_pairs({"report": {"pairs": []}}, ["lr"]) == []
    pairs = configured_pairs(CONFIG, swept)
    assert hue_partner("labels", swept, pairs) == "loss"
    assert hue_partner("lr", swept, pairs) == "labels"
    assert hue_partner("seed", ["seed", "lr"], []) == "lr"
    assert hue_partner("lr", ["seed", "lr"], []) == "seed"
    assert hue_partner("lr", ["lr"], []) is None


def test_best_runs_order_follows_the_metric_direction(runs_df: pd.DataFrame) -> None:
    best = best_runs_table(runs_df, n=2)
    assert best.columns.tolist() == ["rank", "run_id", "labels", "loss", "lr", "score"]
    assert best["run_id"].tolist() == ["default", "labels-separate"]
    assert best["rank"].tolist() == [1, 2]
    worst = best_runs_table(
        runs_df.assign(score=runs_df["score"].where(runs_df["run_id"] != "lr-0.0001")),
        n=5,
        higher_is_better=False,
    )
    assert worst["run_id"].tolist()[:2] == [
        "labels-separate_loss-cross-entropy",
        "loss-cross-entropy",
    ]
    assert worst["run_id"].iloc[-1] == "lr-0.0001"  # undefined score last


def test_final_per_patient_mean_and_median_over_slices(results: Path) -> None:
    final = pd.read_csv(results / "summary" / "final.csv")
    table = final_per_patient(final, final_files(results, final, "per_slice"))
    assert table.columns.tolist() == ["patient_id", "run_id", "split", "mean", "median"]
    assert len(table) == 2 * (3 + 2)
    row = table[(table.run_id == "default") & (table.split == "test") & (table.patient_id == "t2")]
    # patient index 1: 0.8 - 0.1 + 0.05 k for k = 0..3 (slice 4 NaN) → 0.70, 0.75, 0.80, 0.85
    assert row["mean"].item() == pytest.approx(0.775)
    assert row["median"].item() == pytest.approx(0.775)


def test_format_level() -> None:
    assert [format_level(v) for v in (1e-5, 0.001, True, 3, "dice", ["ct", "pet"], None)] == [
        "0.00001",
        "0.001",
        "true",
        "3",
        "dice",
        "ct+pet",
        "none",
    ]


def test_main_writes_every_table(tmp_path: Path) -> None:
    results = write_fake_results(tmp_path)
    stages.analysis(analysis_args(results))
    runs = pd.read_csv(results / "summary" / "runs.csv")
    assert sorted(runs["run_id"]) == sorted(SCORES)
    costs = runs.set_index("run_id")
    assert costs["wall_s"].to_dict() == WALL_S and (costs["cpu_s"] == 2 * costs["wall_s"]).all()
    assert set(costs["max_rss_mb"]) == {512.0} and costs["device_s"].isna().all()
    hyper = pd.read_csv(results / "tables" / "hyperparameters.csv", dtype={"level": str})
    assert sorted(set(hyper["hyperparameter"])) == ["labels", "loss", "lr"]
    pairs = pd.read_csv(results / "tables" / "pairs.csv")
    assert pairs.columns.tolist() == ["a", "b", "a_level", "b_level", "mean", "median", "count"]
    assert pairs.groupby(["a", "b"]).size().to_dict() == {
        ("loss", "labels"): 4,
        ("lr", "labels"): 4,
        ("lr", "loss"): 4,  # the two largest effects: lr 0.25, loss 0.083, labels 0
    }
    distribution = pd.read_csv(results / "tables" / "slice_distribution.csv")
    row = distribution[(distribution.run_id == "default") & (distribution.split == "val")].iloc[0]
    dice = [slice_dice(0.8, p, k) for p in range(3) for k in range(4)]  # slice 4 is undefined
    assert (row["slices"], row["undefined"]) == (15, 3)
    assert row["mean"] == pytest.approx(np.mean(dice))
    assert row["q25"] == pytest.approx(np.quantile(dice, 0.25))
    summary = pd.read_csv(results / "tables" / "metrics_summary.csv")
    dice_row = summary[
        (summary.run_id == "labels-separate")
        & (summary.split == "test")
        & (summary.metric == "dice")
    ].iloc[0]
    assert dice_row["mean"] == pytest.approx(0.7)
    assert dice_row["std"] == pytest.approx(0.1 / 2**0.5)
    kruskal = pd.read_csv(results / "tables" / "kruskal.csv", dtype={"best": str})
    kruskal = kruskal.set_index("hyperparameter")
    assert kruskal.loc["lr", "best"] == "0.001" and kruskal.loc["lr", "n"] == 5
    tests = pd.read_csv(results / "tables" / "final_tests.csv")
    assert tests["test"].tolist() == ["Wilcoxon", "Wilcoxon"] and tests["n"].tolist() == [3, 2]
    best = pd.read_csv(results / "tables" / "best_runs.csv")
    assert best["run_id"].iloc[0] == "default" and len(best) == 5
    final = pd.read_csv(results / "tables" / "final_per_patient.csv")
    assert set(final["split"]) == {"val", "test"}
    classes = pd.read_csv(results / "tables" / "class_summary.csv")
    femur = classes[(classes["class"] == "femur") & (classes.metric == "dice")]
    assert femur[["run_id", "split", "patients", "mean"]].values.tolist() == [
        ["default", "val", 1, 0.0],  # the fakes' femur row of p1; the fakes have no HD95
        ["labels-separate", "val", 1, 0.0],
    ]


def test_a_failed_run_is_listed_with_its_error_but_left_out_of_the_statistics(
    tmp_path: Path,
) -> None:
    results = write_fake_results(tmp_path)
    fail_run(results, "lr-0.0001")
    stages.analysis(analysis_args(results))
    runs = pd.read_csv(results / "summary" / "runs.csv", keep_default_na=False).set_index("run_id")
    assert runs.loc["lr-0.0001", ["status", "error", "score", "wall_s"]].tolist() == [
        "failed",
        FAILURE,
        "",
        WALL_S["lr-0.0001"],  # what it cost until it failed
    ]
    assert set(runs.drop(index="lr-0.0001")["status"]) == {"ok"}
    hyper = pd.read_csv(results / "tables" / "hyperparameters.csv", dtype={"level": str})
    lr = hyper[hyper["hyperparameter"] == "lr"].set_index("level")
    assert lr.index.tolist() == ["0.001"]  # its only 0.0001 run failed
    loss = hyper[hyper["hyperparameter"] == "loss"].set_index("level")
    assert loss.loc["dice", "No. experiments"] == 2  # default and labels-separate
    assert loss.loc["dice", "Mean"] == pytest.approx(0.75)
    best = pd.read_csv(results / "tables" / "best_runs.csv")
    assert "lr-0.0001" not in set(best["run_id"]) and len(best) == 4
    kruskal = pd.read_csv(results / "tables" / "kruskal.csv").set_index("hyperparameter")
    assert kruskal.loc["loss", "n"] == 4


def test_class_summary_per_class_split_and_space_against_hand_computed_values(
    tmp_path: Path,
) -> None:
    nan = math.nan
    columns = ["patient_id", "space", "class", "dice", "iou", "hd95", "nsd"]
    val = pd.DataFrame(
        [
            ["p1", "processed", "femur", 0.8, 0.7, 2.0, 0.9],
            ["p1", "processed", "tibia", 0.5, 0.4, 3.0, 0.6],
            ["p1", "processed", "foreground", 0.7, 0.6, 2.5, 0.8],
            ["p2", "processed", "femur", 0.6, 0.5, 4.0, 0.7],
            ["p2", "processed", "tibia", 0.5, 0.4, 3.0, 0.6],
            ["p2", "processed", "foreground", 0.6, 0.5, 3.5, 0.7],
            ["p3", "processed", "femur", nan, nan, nan, nan],  # femur absent from both
            ["p3", "processed", "tibia", 0.8, 0.7, 9.0, 0.3],
            ["p3", "processed", "foreground", 0.8, 0.7, 9.0, 0.4],
        ],
        columns=columns,
    )
    test = pd.DataFrame(
        [
            ["t1", "processed", "foreground", 0.9, 0.8, 1.0, 0.95],
            ["t1", "native", "foreground", 0.85, 0.75, 1.5, 0.9],
        ],
        columns=columns,
    )
    results = tmp_path / "results"
    for folder, table in [(results / "runs/m/val", val), (results / "final/m/test", test)]:
        folder.mkdir(parents=True)
        table.to_csv(folder / "per_patient.csv", index=False)
    final = pd.DataFrame({"run_id": ["m"]})
    summary = class_summary(final, final_files(results, final, "per_patient"))
    rows = summary.set_index(["split", "space", "class", "metric"])
    assert list(dict.fromkeys(summary["class"])) == ["femur", "tibia", "foreground"]
    assert len(summary) == 3 * 4 + 2 * 4  # val: 3 classes x 4 metrics; test: 2 spaces x 4
    stats = ["patients", "undefined", "mean", "median", "std"]
    femur = rows.loc[("val", "processed", "femur", "dice"), stats].tolist()
    assert femur == [3, 1, pytest.approx(0.7), pytest.approx(0.7), pytest.approx(0.02**0.5)]
    tibia = rows.loc[("val", "processed", "tibia", "dice"), stats].tolist()
    assert tibia == [3, 0, pytest.approx(0.6), pytest.approx(0.5), pytest.approx(0.03**0.5)]
    hd95 = rows.loc[("val", "processed", "femur", "hd95"), stats].tolist()
    assert hd95 == [3, 1, pytest.approx(3.0), pytest.approx(3.0), pytest.approx(2**0.5)]
    nsd = rows.loc[("val", "processed", "femur", "nsd"), stats].tolist()
    assert nsd == [3, 1, pytest.approx(0.8), pytest.approx(0.8), pytest.approx(0.02**0.5)]
    iou = rows.loc[("val", "processed", "tibia", "iou"), ["mean", "median"]].tolist()
    assert iou == [pytest.approx(0.5), pytest.approx(0.4)]
    native = rows.loc[("test", "native", "foreground", "dice"), stats].tolist()
    assert native[:4] == [1, 0, pytest.approx(0.85), pytest.approx(0.85)]
    assert math.isnan(native[4])  # one patient: no STD


def test_levels_of_a_list_valued_hyperparameter_are_distinct_and_sorted():
    values = pd.Series([["ct", "pet"], ["pet"], ["ct", "pet"], ["ct[0,200]"]])
    assert level_order(values) == [["ct", "pet"], ["ct[0,200]"], ["pet"]]
    assert level_order(pd.Series([0.01, 0.001, 0.01])) == [0.001, 0.01]


HALVING = {**SWEEP, "budget": {"method": "halving", "min_epochs": 2, "eta": 3}}  # rungs 2, 6
SURVIVORS = ("default", "labels-separate")  # the final models


def halve(results: Path) -> Path:
    """The fake tree as successive halving leaves it: every run's selection and validation
    table at rung 1 (2 epochs; scores 0.1 below the full budget's), the rung's decision (all but
    the final models pruned) and the pruned runs' logs cut at 2 epochs."""
    rows = []
    for folder in sorted((results / "runs").iterdir()):
        rung = folder / "rungs" / "2"
        (rung / "val").mkdir(parents=True)
        selection = json.loads((folder / "selection.json").read_text())
        selection["selected"] = {**selection["selected"], "score": SCORES[folder.name] - 0.1}
        (rung / "selection.json").write_text(json.dumps(selection))
        table = pd.read_csv(folder / "val" / "per_patient.csv")
        table["dice"] -= 0.1
        table.to_csv(rung / "val" / "per_patient.csv", index=False)
        kept = folder.name in SURVIVORS
        if not kept:
            log = pd.read_csv(folder / "train_log.csv")
            log[log["epoch"] <= 2].to_csv(folder / "train_log.csv", index=False)
        rows.append([1, 2, 6, folder.name, "ok", 0.5, "promoted" if kept else "pruned", "r"])
    columns = ["rung", "epochs", "next_epochs", "configuration", "status", "score", "decision"]
    (results / "budget").mkdir()
    decision = pd.DataFrame(rows, columns=[*columns, "reason"])
    decision.to_csv(results / "budget" / "rung-2.csv", index=False)
    return results


def test_under_halving_the_sweep_is_compared_at_the_first_rung(tmp_path: Path) -> None:
    results = halve(write_fake_results(tmp_path))
    args = cli_args(results)
    stages.analysis([*args[:3], json.dumps(HALVING), *args[4:], *analysis_args(results)[-2:]])
    runs = pd.read_csv(results / "summary" / "runs.csv").set_index("run_id")
    assert runs.columns[list(runs.columns).index("wall_s") - 2 :][:2].tolist() == [
        "epochs_trained",
        "pruned_at",
    ]
    assert runs["epochs_trained"].to_dict() == {r: 6 if r in SURVIVORS else 2 for r in SCORES}
    assert runs["pruned_at"].isna().to_dict() == {r: r in SURVIVORS for r in SCORES}
    assert runs["score"].to_dict() == pytest.approx({r: s - 0.1 for r, s in SCORES.items()})
    hp = pd.read_csv(results / "tables" / "hyperparameters.csv", dtype={"level": str})
    lr = hp[(hp["hyperparameter"] == "lr")].set_index("level")
    assert lr.loc["0.0001", "Mean"] == pytest.approx(0.30)  # its rung-1 score
    # the final models' validation numbers stay at the full budget
    metrics = pd.read_csv(results / "tables" / "metrics_summary.csv")
    full = pd.read_csv(results / "runs" / "default" / "val" / "per_patient.csv")
    dice = metrics[
        (metrics.run_id == "default") & (metrics.split == "val") & (metrics.metric == "dice")
    ]
    foreground = full[
        (full["class"] == "foreground") & (full.get("space", "processed") == "processed")
    ]
    assert dice["mean"].iloc[0] == pytest.approx(foreground["dice"].mean())
