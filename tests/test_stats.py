"""Kruskal–Wallis per hyperparameter, paired tests of final models, Holm, bootstrap CIs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from segsweep.sweep.stats import bootstrap_median_difference, holm, kruskal_table, paired_tests


def _runs() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for loss, shift in [("ce", 0.0), ("dice", 0.1), ("f2", 0.05)]:
        for seed in range(5):
            rows.append(
                {
                    "loss": loss,
                    "lr": [0.1, 0.01][seed % 2],
                    "score": 0.7 + shift + 0.01 * rng.random(),
                }
            )
    return pd.DataFrame(rows)


def test_kruskal_matches_scipy_and_names_best_and_worst_levels():
    runs = _runs()
    table = kruskal_table(runs, ["loss", "lr"]).set_index("hyperparameter")
    expected = scipy_stats.kruskal(*(g["score"] for _, g in runs.groupby("loss")))
    assert table.loc["loss", "H"] == pytest.approx(expected.statistic)
    assert table.loc["loss", "p"] == pytest.approx(expected.pvalue)
    assert (table.loc["loss", "best"], table.loc["loss", "worst"]) == ("dice", "ce")
    diff = runs[runs.loss == "dice"].score.median() - runs[runs.loss == "ce"].score.median()
    assert table.loc["loss", "median_difference"] == pytest.approx(diff)
    assert table.loc["loss", "ci_low"] <= diff <= table.loc["loss", "ci_high"]
    assert table.loc["loss", "n"] == 15 and table.loc["loss", "levels"] == 3


def test_kruskal_with_a_single_level_is_nan_not_an_error():
    runs = pd.DataFrame({"loss": ["ce", "ce"], "score": [0.5, 0.6]})
    row = kruskal_table(runs, ["loss"]).iloc[0]
    assert math.isnan(row["H"]) and math.isnan(row["median_difference"])


def test_holm_adjustment():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = holm([0.02, math.nan])
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1])


def _scores(models: int, patients: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(2)
    return pd.DataFrame(
        [
            {
                "patient_id": f"p{p}",
                "run_id": f"m{m}",
                "value": 0.8 + 0.02 * m + 0.05 * rng.random(),
            }
            for m in range(models)
            for p in range(patients)
        ]
    )


def test_two_models_wilcoxon_on_paired_patients():
    scores = _scores(2)
    table = paired_tests(scores, "test")
    wide = scores.pivot(index="patient_id", columns="run_id", values="value")
    expected = scipy_stats.wilcoxon(wide["m0"], wide["m1"])
    assert table["test"].tolist() == ["Wilcoxon"]
    assert table.loc[0, "p"] == pytest.approx(expected.pvalue) == table.loc[0, "p_holm"]
    assert table.loc[0, "median_difference"] == pytest.approx(np.median(wide["m0"] - wide["m1"]))


def test_more_models_friedman_and_holm_corrected_pairs():
    table = paired_tests(_scores(3), "val")
    assert table["test"].tolist() == ["Friedman", "Wilcoxon", "Wilcoxon", "Wilcoxon"]
    pairs = table[table["test"] == "Wilcoxon"]
    np.testing.assert_allclose(pairs["p_holm"], holm(pairs["p"].tolist()))
    assert (pairs["p_holm"] >= pairs["p"]).all()


def test_one_model_has_no_tests_and_bootstrap_is_seeded():
    assert paired_tests(_scores(1), "test").empty
    a = np.arange(10.0)
    assert bootstrap_median_difference(a) == bootstrap_median_difference(a)
    estimate, low, high = bootstrap_median_difference(np.array([1.0]))
    assert estimate == 1.0 and math.isnan(low) and math.isnan(high)
