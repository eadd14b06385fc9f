"""The seed-noise floor: seed spread, comparisons against it, winner stability and the
seed-averaged choice, from fabricated scores and per-patient values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from segsweep.sweep.final import choose_final
from segsweep.sweep.grammar import expand_sweep
from segsweep.sweep.seeds import (
    seed_averaged_choice,
    seed_comparisons,
    seed_scores,
    seed_spread,
    top_settings,
    winner_share,
    winner_stability,
    write_seed_tables,
)

PATIENTS = [f"p{i:02d}" for i in range(12)]


def scores_of(settings: dict[str, list[float]]) -> pd.DataFrame:
    """Per setting its seeds' scores (seed 0, 1, …; NaN: that seed failed)."""
    rows = []
    for setting, values in settings.items():
        for seed, score in enumerate(values):
            rows.append(
                {
                    "setting": setting,
                    "configuration": setting if seed == 0 else f"{setting}_seed-{seed}",
                    "seed": seed,
                    "status": "failed" if math.isnan(score) else "ok",
                    "score": score,
                    "patients": 12,
                }
            )
    return pd.DataFrame(rows)


def test_spread_per_repeated_setting_by_hand() -> None:
    scores = scores_of({"a": [0.80, 0.82, 0.84], "b": [0.70, 0.90, math.nan], "c": [0.5]})
    spread = seed_spread(scores).set_index("setting")
    assert spread.index.tolist() == ["a", "b"]  # c has one seed; b's failed seed is left out
    assert spread.loc["a", "seeds"] == 3 and spread.loc["b", "seeds"] == 2
    assert spread.loc["a", "mean"] == pytest.approx(0.82)
    assert spread.loc["a", "sd"] == pytest.approx(0.02)  # ddof = 1
    assert spread.loc["b", "sd"] == pytest.approx(math.sqrt(0.02))
    assert spread.loc["a", ["min", "max", "range"]].tolist() == pytest.approx([0.80, 0.84, 0.04])
    assert seed_spread(scores_of({"c": [0.5]})).empty


def test_top_settings_average_the_trained_seeds_and_break_ties_by_id() -> None:
    scores = scores_of({"b": [0.6, 0.8], "a": [0.7], "c": [0.9, math.nan], "d": [math.nan]})
    assert top_settings(scores, 3, higher_is_better=True) == ["c", "a", "b"]
    assert top_settings(scores, 2, higher_is_better=False) == ["a", "b"]
    assert "d" not in top_settings(scores, 10, True)


def per_patient_of(settings: dict[str, list[np.ndarray]]) -> pd.DataFrame:
    """Per setting, per seed its values on PATIENTS."""
    rows = [
        {
            "setting": setting,
            "configuration": setting if seed == 0 else f"{setting}_seed-{seed}",
            "seed": seed,
            "patient_id": patient,
            "value": value,
        }
        for setting, seeds in settings.items()
        for seed, values in enumerate(seeds)
        for patient, value in zip(PATIENTS, values, strict=True)
    ]
    return pd.DataFrame(rows)


BASE = np.linspace(0.6, 0.9, 12)
JITTER = np.array([1, -1] * 6) * 0.01
WIDE = 10 * JITTER * (1 + 0.01 * np.arange(12))  # ± 0.1, alternating


def comparison_case() -> tuple[pd.DataFrame, pd.DataFrame]:
    """`good` against: `close` (a consistent per-patient gap far below the seed SD), `far` (a
    large consistent gap) and `noisy` (a large gap in the mean, inconsistent per patient)."""
    scores = scores_of(
        {
            "good": [0.80, 0.84],
            "close": [0.81, 0.82],
            "far": [0.60, 0.62],
            "noisy": [0.60, 0.66],
        }
    )
    small = 0.005 + 0.0001 * np.arange(12)
    per_patient = per_patient_of(
        {
            "good": [BASE, BASE + 0.02],
            "close": [BASE - small, BASE + 0.02 - small],
            "far": [BASE - 0.2, BASE - 0.2 + JITTER],
            "noisy": [BASE + 0.01 + WIDE, BASE + 0.01 + WIDE],
        }
    )
    return scores, per_patient


def test_a_gap_below_the_seed_spread_is_not_distinguishable_a_large_consistent_one_is() -> None:
    scores, per_patient = comparison_case()
    table = seed_comparisons(scores, per_patient, higher_is_better=True).set_index("other")
    assert table.index.tolist() == ["close", "noisy", "far"]  # the runner-up first
    assert set(table["winner"]) == {"good"} and set(table["n"]) == {12}
    assert set(table["test"]) == {"Wilcoxon signed-rank (two-sided)"}
    close, far, noisy = table.loc["close"], table.loc["far"], table.loc["noisy"]
    assert close["difference"] == pytest.approx(0.005)
    assert close["winner_sd"] == pytest.approx(math.sqrt(0.0008))
    assert close["other_sd"] == pytest.approx(math.sqrt(0.00005))
    assert close["pooled_sd"] == pytest.approx(math.sqrt((0.0008 + 0.00005) / 2))
    assert close["standardised"] == pytest.approx(0.005 / close["pooled_sd"])
    assert close["p_holm"] < 0.05 and not close["distinguishable"]  # tested, but within noise
    assert far["difference"] == pytest.approx(0.21) and far["distinguishable"]
    assert noisy["p_holm"] >= 0.05 and not noisy["distinguishable"]


def test_p_values_are_scipys_wilcoxon_on_seed_averaged_patients_with_holm() -> None:
    scores, per_patient = comparison_case()
    table = seed_comparisons(scores, per_patient, higher_is_better=True).set_index("other")
    averaged = per_patient.pivot_table(index="patient_id", columns="setting", values="value")
    expected = {
        other: stats.wilcoxon(averaged["good"], averaged[other]).pvalue
        for other in ["close", "noisy", "far"]
    }
    for other, p in expected.items():
        assert table.loc[other, "p"] == pytest.approx(p)
    ordered = sorted(expected, key=expected.get)
    running = 0.0
    for rank, other in enumerate(ordered):
        running = max(running, min(1.0, (3 - rank) * expected[other]))
        assert table.loc[other, "p_holm"] == pytest.approx(running)


def test_comparisons_need_two_repeated_settings_and_per_patient_values() -> None:
    scores, per_patient = comparison_case()
    alone = scores[scores["setting"].isin(["good", "far"]) | (scores["seed"] == 0)]
    assert seed_comparisons(alone[alone["setting"] != "far"], per_patient, True).empty
    untested = seed_comparisons(scores, per_patient.iloc[0:0], True)
    assert untested["p"].isna().all() and not untested["distinguishable"].any()
    assert set(untested["n"]) == {0}


def test_winner_stability_pairs_the_same_seeds() -> None:
    scores = scores_of(
        {"a": [0.80, 0.85, 0.83], "b": [0.82, 0.81, 0.80], "c": [0.70, 0.90], "d": [0.99]}
    )
    table = winner_stability(scores, higher_is_better=True)
    assert table["seed"].tolist() == [0, 1, 2]
    assert table["settings"].tolist() == [3, 3, 2]  # d has one seed; c no third
    assert table["first"].tolist() == ["b", "c", "a"]
    assert set(table["winner"]) == {"a"}
    assert table["winner_first"].tolist() == [False, False, True]
    assert winner_share(table) == pytest.approx(1 / 3)
    assert winner_stability(scores_of({"a": [0.8, 0.9]}), True).empty
    assert math.isnan(winner_share(winner_stability(scores_of({"a": [0.8, 0.9]}), True)))


def test_seed_averaged_choice_ignores_a_single_lucky_seed() -> None:
    scores = scores_of({"loss-dice": [0.80, 0.81, 0.82], "loss-ce": [0.60, 0.95, 0.62]})
    per_configuration = scores.rename(columns={"configuration": "run_id"})
    assert choose_final(per_configuration, 1, [], True)["run_id"].tolist() == ["loss-ce_seed-1"]
    chosen = seed_averaged_choice(scores, 1, higher_is_better=True)
    assert chosen.columns.tolist() == ["run_id", "group", "score"]
    assert chosen["run_id"].tolist() == ["loss-dice"] and chosen["group"].tolist() == ["overall"]
    assert chosen["score"].iloc[0] == pytest.approx(0.81)
    both = seed_averaged_choice(scores, 2, higher_is_better=False)
    assert both["run_id"].tolist() == ["loss-ce", "loss-dice"]


def test_seed_averaged_choice_takes_the_first_seed_that_trained() -> None:
    scores = scores_of({"a": [math.nan, 0.8, 0.9]})
    assert seed_averaged_choice(scores, 1, True)["run_id"].tolist() == ["a_seed-1"]
    with pytest.raises(ValueError, match="no setting"):
        seed_averaged_choice(scores_of({"a": [math.nan]}), 1, True)


SELECTION = {
    "metric": "dice",
    "aggregate": "mean",
    "level": "slice",
    "class": "foreground",
    "higher_is_better": True,
}


def fake_runs(tmp_path: Path, runs, slices: dict[str, dict[str, list[float]]]):
    """Each run's selection.json (score: the mean of its slices) and val/per_slice.csv."""
    selections, tables = {}, {}
    for run in runs:
        folder = tmp_path / "runs" / run.run_id
        (folder / "val").mkdir(parents=True)
        values = slices[run.run_id]
        score = float(np.mean([v for vs in values.values() for v in vs]))
        (folder / "selection.json").write_text(json.dumps({"selected": {"score": score}}))
        rows = [
            {"patient_id": p, "slice_id": i, "class": c, "space": "processed", "dice": v}
            for p, vs in values.items()
            for i, v in enumerate(vs)
            for c in ["foreground", "background"]
        ]
        pd.DataFrame(rows).to_csv(folder / "val" / "per_slice.csv", index=False)
        selections[run.run_id] = folder / "selection.json"
        tables[run.run_id] = folder / "val" / "per_slice.csv"
    return selections, tables


def test_seed_scores_read_selections_and_aggregate_slices_per_patient(tmp_path: Path) -> None:
    sweep = {"grids": {"g": {"loss": ["dice", "ce"]}}, "repeats": 2}
    runs = expand_sweep(sweep, {"loss": "dice", "seed": 0})
    slices = {
        "default": {"001": [0.8, 0.6], "002": [0.9]},
        "seed-1": {"001": [0.7, 0.7], "002": [0.5]},
        "loss-ce": {"001": [0.2, 0.4], "002": [0.3]},
        "loss-ce_seed-1": {"001": [0.1, 0.1], "002": [0.4]},
    }
    selections, tables = fake_runs(tmp_path, runs, slices)
    scores, per_patient = seed_scores(runs, selections, tables, SELECTION)
    assert scores.columns.tolist() == [
        "setting",
        "configuration",
        "seed",
        "status",
        "score",
        "patients",
    ]
    rows = scores.set_index("configuration")
    assert rows["setting"].to_dict() == {
        "default": "default",
        "loss-ce": "loss-ce",
        "loss-ce_seed-1": "loss-ce",
        "seed-1": "default",
    }
    assert rows.loc["seed-1", "seed"] == 1 and rows.loc["seed-1", "patients"] == 2
    assert rows.loc["default", "score"] == pytest.approx(0.7667, abs=1e-4)
    assert per_patient.columns.tolist() == [
        "setting",
        "configuration",
        "seed",
        "patient_id",
        "value",
    ]
    values = per_patient.set_index(["configuration", "patient_id"])["value"]
    assert values[("default", "001")] == pytest.approx(0.7)  # the patient's mean slice
    assert values[("loss-ce_seed-1", "002")] == pytest.approx(0.4)
    assert len(per_patient) == 8  # one value per patient and configuration

    out = {name: tmp_path / "budget" / f"{name}.csv" for name in ["spread", "tests", "winners"]}
    write_seed_tables(
        runs, selections, tables, SELECTION, out["spread"], out["tests"], out["winners"]
    )
    spread = pd.read_csv(out["spread"])
    assert spread["setting"].tolist() == ["default", "loss-ce"]
    assert spread["seeds"].tolist() == [2, 2]
    comparisons = pd.read_csv(out["tests"])
    assert comparisons[["winner", "other", "n"]].values.tolist() == [["default", "loss-ce", 2]]
    assert pd.read_csv(out["winners"])["first"].tolist() == ["default", "default"]


def test_winner_stability_pairs_seeds_by_value_not_position() -> None:
    """A setting confirmed after the sweep has only the later seeds."""
    scores = scores_of({"a": [0.80, 0.85, 0.83]})
    late = scores_of({"b": [math.nan, 0.90, 0.70]})
    table = winner_stability(pd.concat([scores, late[late["seed"] > 0]]), True)
    assert table["seed"].tolist() == [1, 2]
    assert table["first"].tolist() == ["b", "a"]


def test_top_settings_rank_those_trained_further_first() -> None:
    scores = scores_of({"a": [0.80], "b": [0.95], "c": [0.70]})
    assert top_settings(scores, 2, True) == ["b", "a"]
    reached = {"a": 20, "b": 4, "c": 20}
    assert top_settings(scores, 2, True, reached) == ["a", "c"]


def test_the_seed_averaged_choice_is_made_among_the_candidates() -> None:
    """Under halving a setting confirmed after its own seed was pruned is compared, not chosen:
    its model would be the pruned configuration."""
    scores = scores_of({"a": [0.80, 0.82], "b": [0.70, 0.95, 0.93]})
    assert seed_averaged_choice(scores, 1, True)["run_id"].tolist() == ["b"]
    chosen = seed_averaged_choice(scores, 2, True, candidates=["a", "b_seed-1"])
    assert chosen["run_id"].tolist() == ["b_seed-1", "a"]
    assert seed_averaged_choice(scores, 1, True, candidates=["a"])["run_id"].tolist() == ["a"]
