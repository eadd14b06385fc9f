"""Successive halving: the rungs, how many a rung keeps, and its decisions by rank or by the
paired Wilcoxon test against the rung's best."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from segsweep.sweep.budget import (
    COLUMNS,
    KEPT_FURTHER,
    decide,
    kept,
    rung_scores,
    rungs,
    write_decision,
)
from segsweep.sweep.grammar import expand_sweep

RANK = {"eta": 3, "prune": "rank"}
WILCOXON = {"eta": 3, "prune": "wilcoxon", "alpha": 0.05}
NO_PATIENTS = pd.DataFrame(columns=["configuration", "patient_id", "value"])


def _scores(scores: dict[str, float], status: dict[str, str] | None = None) -> pd.DataFrame:
    """A rung's scores table: configuration → score, every configuration ok unless `status`."""
    status = status or {}
    return pd.DataFrame(
        {
            "configuration": list(scores),
            "status": [status.get(c, "ok") for c in scores],
            "score": list(scores.values()),
            "ci_low": math.nan,
            "ci_high": math.nan,
            "patients": 10,
        }
    )


def _by_configuration(decision: pd.DataFrame) -> pd.DataFrame:
    return decision.set_index("configuration")


def test_rungs_grow_by_eta_and_end_at_the_epochs() -> None:
    assert rungs(20, 4, 3) == [4, 12, 20]
    assert rungs(4, 1, 2) == [1, 2, 4]
    assert rungs(12, 4, 3) == [4, 12]  # a rung at the epochs is the last one, not repeated
    assert rungs(13, 4, 3) == [4, 12, 13]
    assert rungs(4, 4, 3) == [4]
    assert rungs(3, 8, 2) == [3]


def test_kept_is_a_share_of_eta_and_at_least_one() -> None:
    assert [kept(n, 3) for n in (0, 1, 2, 3, 8, 9, 10)] == [0, 1, 1, 1, 2, 3, 3]
    assert kept(9, 2) == 4


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_rank_keeps_exactly_the_best_third(higher_is_better: bool) -> None:
    values = [0.5, 0.9, 0.1, 0.7, 0.3, 0.8, 0.2, 0.6, 0.4]
    scores = _scores({f"c{i}": v for i, v in enumerate(values)})
    decision = decide(scores, NO_PATIENTS, RANK, higher_is_better)
    best = ["c1", "c5", "c3"] if higher_is_better else ["c2", "c6", "c4"]
    assert list(decision.columns) == COLUMNS
    assert decision["configuration"].head(3).tolist() == best
    assert decision["rank"].tolist() == list(range(1, 10))
    assert decision.loc[decision["decision"] == "promoted", "configuration"].tolist() == best
    assert (decision["promoted_by_rank"] == 3).all()
    assert decision["reason"].iloc[1] == "rank 2 of 9: within the best 3"
    assert decision["reason"].iloc[4] == "rank 5 of 9: below the best 3"
    assert decision[["p_value", "p_holm"]].isna().all().all()


def test_failed_incomplete_and_unscored_configurations_are_pruned_unranked() -> None:
    scores = _scores(
        {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.95, "e": math.nan, "f": math.nan},
        status={"d": "incomplete", "e": "failed"},
    )
    rows = _by_configuration(decide(scores, NO_PATIENTS, RANK, True))
    assert rows.loc[["d", "e", "f"], "decision"].tolist() == ["pruned"] * 3
    assert rows.loc[["d", "e", "f"], "reason"].tolist() == [
        "incomplete",
        "failed",
        "no defined score",
    ]
    assert rows.loc[["d", "e", "f"], "rank"].isna().all()
    assert rows.loc["a", "reason"] == "rank 1 of 3: within the best 1"
    assert rows.index[-3:].tolist() == ["d", "e", "f"]  # unranked last, by id


def test_ties_go_to_the_smaller_id() -> None:
    scores = _scores({"b": 0.8, "a": 0.8, "c": 0.5})
    decision = decide(scores, NO_PATIENTS, RANK, True)
    assert decision["configuration"].tolist() == ["a", "b", "c"]
    assert decision["decision"].tolist() == ["promoted", "pruned", "pruned"]


def test_an_empty_rung_gives_an_empty_table() -> None:
    decision = decide(_scores({}), NO_PATIENTS, RANK, True)
    assert decision.empty and list(decision.columns) == COLUMNS


def test_a_configuration_trained_further_is_kept_and_the_rank_quota_unchanged() -> None:
    scores = _scores({f"c{i}": 1 - i / 10 for i in range(9)})
    decision = decide(scores, NO_PATIENTS, RANK, True, trained_further={"c7", "c1"})
    rows = _by_configuration(decision)
    assert rows.loc["c7", "decision"] == "promoted" and rows.loc["c7", "rank"] == 8
    assert rows.loc["c7", "reason"] == KEPT_FURTHER
    assert rows.loc["c1", "reason"] == "rank 2 of 9: within the best 3"
    promoted = decision.loc[decision["decision"] == "promoted", "configuration"].tolist()
    assert promoted == ["c0", "c1", "c2", "c7"]


def _patients(values: dict[str, list[float]]) -> pd.DataFrame:
    """Long per-patient table: configuration → values of patients p00, p01, … in order."""
    return pd.DataFrame(
        [
            {"configuration": c, "patient_id": f"p{i:02d}", "value": v}
            for c, column in values.items()
            for i, v in enumerate(column)
        ]
    )


@pytest.mark.parametrize("sign", [1, -1])  # -1: lower is better, the same data mirrored
def test_wilcoxon_prunes_only_the_significantly_worse(sign: int) -> None:
    rng = np.random.default_rng(0)
    best = rng.uniform(0.7, 0.9, 15)
    close = best[:8] + np.array([0.02, -0.03, 0.01, -0.02, 0.015, -0.01, 0.005, -0.025])
    bad = best - rng.uniform(0.2, 0.3, 15)
    values = {"best": best, "close": close, "bad": bad, "lonely": best[:1] - 0.1}
    values["same"] = best.copy()
    per_patient = _patients({c: list(sign * v) for c, v in values.items()})
    scores = _scores({"best": 0.8, "same": 0.8, "close": 0.79, "bad": 0.55, "lonely": 0.7})
    scores["score"] *= sign
    decision = decide(scores, per_patient, WILCOXON, higher_is_better=sign == 1)
    rows = _by_configuration(decision)
    assert rows["rank"].to_dict() == {"best": 1, "same": 2, "close": 3, "lonely": 4, "bad": 5}
    assert rows["decision"].to_dict() == {
        "best": "promoted",
        "same": "promoted",
        "close": "promoted",
        "lonely": "promoted",
        "bad": "pruned",
    }
    # independently: one-sided tests that each is worse than the best, Holm over the two tested
    p_close = stats.wilcoxon(best[:8], close, alternative="greater").pvalue
    p_bad = stats.wilcoxon(best, bad, alternative="greater").pvalue
    assert p_bad < p_close
    holm_bad, holm_close = min(1.0, 2 * p_bad), max(min(1.0, 2 * p_bad), p_close)
    assert holm_bad < 0.05 <= holm_close
    assert rows.loc["close", "p_value"] == pytest.approx(p_close)
    assert rows.loc["bad", "p_value"] == pytest.approx(p_bad)
    assert rows.loc["close", "p_holm"] == pytest.approx(holm_close)
    assert rows.loc["bad", "p_holm"] == pytest.approx(holm_bad)
    assert rows.loc["bad", "reason"].startswith(
        "significantly worse than best (one-sided Wilcoxon, n=15 patients, Holm p="
    )
    assert rows.loc["close", "reason"].startswith("worse than best but not significantly (")
    assert "n=8 patients" in rows.loc["close", "reason"]
    assert rows.loc["lonely", "reason"].endswith("only 1 paired patient, too few for the test")
    assert rows.loc["same", "reason"].endswith("all 15 paired differences are zero")
    assert rows.loc[["best", "same", "lonely"], "p_value"].isna().all()


def _write_runs(root: Path, slices: dict[str, dict[str, list[float]]], failed=()) -> tuple:
    """Fold runs' selection.json and val/per_slice.csv: run id → patient → its slices' Dice."""
    selections, tables = {}, {}
    for run, patients in slices.items():
        folder = root / run
        folder.mkdir(parents=True)
        status = "failed" if run in failed else "ok"
        selection = {"status": status, "selected": None if run in failed else {"score": 0.5}}
        (folder / "selection.json").write_text(json.dumps(selection))
        rows = [
            {"patient_id": p, "slice_id": s, "class": c, "space": "processed", "dice": v}
            for p, values in patients.items()
            for s, v in enumerate(values)
            for c in ("foreground", "bone")
        ]
        pd.DataFrame(rows).to_csv(folder / "per_slice.csv", index=False)
        selections[run], tables[run] = folder / "selection.json", folder / "per_slice.csv"
    return selections, tables


SWEEP = {"grids": {"g": {"loss": ["dice", "cross_entropy", "focal"]}}}
DEFAULTS = {"loss": "dice", "lr": 0.001, "seed": 0}
SELECTION = {
    "metric": "dice",
    "aggregate": "median",
    "level": "slice",
    "class": "foreground",
    "higher_is_better": True,
}
SLICES = {
    "default_fold-0": {"p1": [0.9, 0.7, 0.8], "p2": [0.6, 0.2, float("nan"), 0.4]},
    "default_fold-1": {"p3": [0.5]},
    "loss-cross-entropy_fold-0": {"p1": [0.1, 0.3, 0.2], "p2": [0.3]},
    "loss-cross-entropy_fold-1": {"p3": [0.2, 0.4]},
    "loss-focal_fold-0": {"p1": [0.5]},
    "loss-focal_fold-1": {},
}


def test_rung_scores_give_one_value_per_patient_out_of_fold(tmp_path: Path) -> None:
    runs = expand_sweep(SWEEP, DEFAULTS, folds=2)
    selections, tables = _write_runs(tmp_path, SLICES, failed=("loss-focal_fold-1",))
    scores, per_patient = rung_scores(runs, selections, tables, SELECTION, None)
    assert scores.set_index("configuration")["status"].to_dict() == {
        "default": "ok",
        "loss-cross-entropy": "ok",
        "loss-focal": "incomplete",
    }
    values = per_patient.set_index(["configuration", "patient_id"])["value"]
    assert values.to_dict() == pytest.approx(
        {
            ("default", "p1"): 0.8,  # the median of its slices
            ("default", "p2"): 0.4,  # the undefined slice left out
            ("default", "p3"): 0.5,
            ("loss-cross-entropy", "p1"): 0.2,
            ("loss-cross-entropy", "p2"): 0.3,
            ("loss-cross-entropy", "p3"): 0.3,
        }
    )
    _, none = rung_scores(runs, selections, tables, SELECTION, lambda paths: (0.5, 0.4, 0.6, 3))
    assert none.empty and list(none.columns) == ["configuration", "patient_id", "value"]


def test_write_decision_writes_the_rung_before_the_decision(tmp_path: Path) -> None:
    runs = expand_sweep(SWEEP, DEFAULTS, folds=2)
    selections, tables = _write_runs(tmp_path, SLICES, failed=("loss-focal_fold-1",))
    out = tmp_path / "decision.csv"
    write_decision(runs, selections, tables, SELECTION, RANK, 1, 4, 12, out)
    written = pd.read_csv(out)
    assert list(written.columns) == ["rung", "epochs", "next_epochs", *COLUMNS]
    assert written["configuration"].tolist() == ["default", "loss-cross-entropy", "loss-focal"]
    assert written["decision"].tolist() == ["promoted", "pruned", "pruned"]
    assert (written[["rung", "epochs", "next_epochs"]].iloc[0] == [1, 4, 12]).all()


def test_the_budget_takes_the_schema_defaults_and_the_rungs_the_runs_epochs():
    from segsweep.sweep.budget import budget_of, sweep_rungs

    assert budget_of({}) == {
        "method": "none",
        "eta": 3,
        "min_epochs": 4,
        "prune": "rank",
        "alpha": 0.05,
    }
    runs = expand_sweep({"fixed": {"epochs": 20}}, {**DEFAULTS, "epochs": 9})
    assert sweep_rungs({}, runs) == [20]
    halving = {"budget": {"method": "halving"}}
    assert sweep_rungs(halving, runs) == [4, 12, 20]  # the runs' epochs, not the config's


def test_halving_refuses_swept_epochs_and_a_paired_test_without_patients():
    from segsweep.errors import ConfigError
    from segsweep.sweep.budget import sweep_rungs

    swept = expand_sweep({"grids": {"g": {"epochs": [10, 20]}}}, {**DEFAULTS, "epochs": 9})
    with pytest.raises(ConfigError, match=r"budget.method.*one train.epochs for every run"):
        sweep_rungs({"budget": {"method": "halving"}}, swept)
    runs = expand_sweep({}, {**DEFAULTS, "epochs": 9})
    wilcoxon = {"budget": {"method": "halving", "prune": "wilcoxon"}}
    assert sweep_rungs(wilcoxon, runs) == [4, 9]
    with pytest.raises(ConfigError, match="rank under task: classification"):
        sweep_rungs(wilcoxon, runs, "classification")
