"""The budget of successive halving against hand computation: three configurations, rungs at
1, 3 and 9 epochs (min_epochs 1, eta 3); two pruned at rung 1, one trained to 9 epochs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from segsweep.sweep.budget_summary import BudgetInputs, device_name, write_budget
from segsweep.sweep.grammar import sweep_runs
from segsweep.sweep.pruning import budget_columns, read_decisions, rung_epochs

SELECTION = {
    "metric": "dice",
    "aggregate": "mean",
    "level": "patient",
    "class": "foreground",
    "higher_is_better": True,
}
CONFIG = {"train": {"epochs": 9, "lr": 0.1, "seed": 0}, "split": {"folds": 0}}
CONFIG["selection"] = SELECTION
SWEEP = {
    "grids": {"g": {"lr": [0.1, 0.01, 0.001]}},
    "budget": {"method": "halving", "min_epochs": 1, "eta": 3},
}
SECONDS = {"default": 10.0, "lr-0.01": 20.0, "lr-0.001": 30.0}  # per epoch
TRAINED = {"default": 9, "lr-0.01": 1, "lr-0.001": 1}
DECISION = ["rung", "epochs", "next_epochs", "configuration", "status", "score", "decision"]


def fabricate(root: Path) -> BudgetInputs:
    """Decisions, logs, provenance, selections and validation tables of the three runs."""
    rung1 = [
        [1, 1, 3, "default", "ok", 0.6, "promoted"],
        [1, 1, 3, "lr-0.01", "ok", 0.5, "pruned"],
        [1, 1, 3, "lr-0.001", "ok", 0.4, "pruned"],
    ]
    rung2 = [[2, 3, 9, "default", "ok", 0.7, "promoted"]]
    decisions = []
    for epochs, rows in ((1, rung1), (3, rung2)):
        path = root / f"rung-{epochs}.csv"
        pd.DataFrame(rows, columns=DECISION).assign(reason="why").to_csv(path, index=False)
        decisions.append(path)
    files: dict[str, dict[str, Path]] = {k: {} for k in ("logs", "prov", "sel", "val")}
    for run, n in TRAINED.items():
        folder = root / run
        folder.mkdir()
        epochs = range(1, n + 1)
        log = pd.DataFrame(
            {"epoch": epochs, "time_s": SECONDS[run], "val_dice": [0.1 * e for e in epochs]}
        )
        log.to_csv(folder / "train_log.csv", index=False)
        (folder / "provenance.json").write_text(json.dumps({"device": "cuda:0"}))
        selected = {"epoch": n, "score": 0.8}
        (folder / "selection.json").write_text(json.dumps({"selected": selected}))
        pd.DataFrame(
            {"patient_id": ["p1", "p2"], "class": "foreground", "dice": [0.7, 0.9]}
        ).to_csv(folder / "per_patient.csv", index=False)
        for key, name in (("logs", "train_log.csv"), ("prov", "provenance.json")):
            files[key][run] = folder / name
        files["sel"][run] = folder / "selection.json"
        files["val"][run] = folder / "per_patient.csv"
    return BudgetInputs(decisions, files["logs"], files["prov"], files["sel"], files["val"])


def test_budget_tables_and_figure(tmp_path: Path) -> None:
    given = fabricate(tmp_path)
    outputs = {n: tmp_path / f"{n}.csv" for n in ("rungs", "configurations")}
    outputs["figure"] = tmp_path / "budget.png"
    write_budget(CONFIG, SWEEP, given, outputs, ("val_dice", "Dice"))
    rungs = pd.read_csv(outputs["rungs"], dtype={"rung": str})
    assert rungs["rung"].tolist() == ["1", "2", "3", "total"]
    assert rungs["entering"].tolist() == [3, 1, 1, 3]
    assert rungs["pruned"].tolist()[:2] == [2, 0] and rungs["pruned"].iloc[3] == 2
    # rung 1: one epoch of each run; rung 2: epochs 2-3 of the survivor; rung 3: epochs 4-9
    assert rungs["epochs_trained"].tolist() == [3, 2, 6, 11]
    assert rungs["hours"].tolist() == pytest.approx([60 / 3600, 20 / 3600, 60 / 3600, 140 / 3600])
    assert rungs["device"].tolist() == ["GPU"] * 4
    total = rungs.iloc[-1]
    assert total["full_epochs"] == 27  # three runs to 9 epochs
    assert total["full_hours"] == pytest.approx(9 * (10 + 20 + 30) / 3600)
    assert total["saving_epochs"] == pytest.approx(27 / 11)
    assert total["saving_hours"] == pytest.approx(540 / 140)
    assert rungs["full_hours"].iloc[:3].isna().all()  # only the total row estimates
    table = pd.read_csv(outputs["configurations"]).set_index("configuration")
    assert table.loc["default", "outcome"] == "full budget"
    assert table.loc["lr-0.01", "outcome"] == "pruned at rung 1 (1 epoch)"
    assert table["epochs_trained"].to_dict() == TRAINED
    assert table.loc["default", ["score_at_1", "score_at_3", "score_at_9"]].tolist() == [
        pytest.approx(0.6),
        pytest.approx(0.7),
        pytest.approx(0.8),  # its selection at the full budget
    ]
    assert pd.isna(table.loc["lr-0.001", "score_at_3"])
    assert table.loc["lr-0.001", "hours"] == pytest.approx(30 / 3600)
    assert outputs["figure"].is_file() and outputs["figure"].with_suffix(".svg").is_file()


def test_runs_table_gains_the_budget(tmp_path: Path) -> None:
    given = fabricate(tmp_path)
    runs = sweep_runs(CONFIG, SWEEP)
    runs_df = pd.DataFrame({"run_id": [r.run_id for r in runs], "wall_s": 1.0})
    out = budget_columns(runs_df, runs, read_decisions(given.decisions))
    assert list(out.columns) == ["run_id", "epochs_trained", "pruned_at", "wall_s"]
    assert dict(zip(out["run_id"], out["epochs_trained"], strict=True)) == TRAINED
    assert out.set_index("run_id")["pruned_at"].isna().to_dict() == {
        "default": True,
        "lr-0.01": False,
        "lr-0.001": False,
    }


def test_rungs_and_devices() -> None:
    assert rung_epochs(CONFIG, SWEEP) == [1, 3, 9]
    assert rung_epochs(CONFIG, {}) == [9]  # without halving one rung
    assert device_name([{"device": "cpu"}, {"device": "cuda:0"}]) == "GPU and CPU"
    assert device_name([]) == ""
