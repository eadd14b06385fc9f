"""Results by site (segsweep.sweep.sites) and the nested estimate (segsweep.sweep.nested)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from segsweep.errors import InputError
from segsweep.sweep.nested import POOLED, estimate, held_out_table
from segsweep.sweep.sites import (
    foreground_scores,
    labelled_sites,
    site_of,
    site_table,
    site_test,
    unlabelled_sites,
)
from segsweep.sweep.stats import bootstrap_ci

SPLITS = pd.DataFrame(
    {
        "subject_id": ["a1", "a2", "a3", "b1", "b2", "c1", "c2"],
        "split": ["train", "val", "test", "train", "test", "unlabelled", "unlabelled"],
        "source": ["epi", "epi", "epi", "jopp", "jopp", "maas", "maas"],
    }
)


def _per_patient(scores: dict[str, float], run: str = "m", outer: int | None = None):
    rows = []
    for patient, dice in scores.items():
        for space in ("processed", "native"):
            for name in ("foreground", "femur"):
                rows.append(
                    {
                        "run_id": run,
                        "patient_id": patient,
                        "space": space,
                        "class": name,
                        "dice": dice if (space, name) == ("processed", "foreground") else -1.0,
                    }
                )
    return pd.DataFrame(rows)


def test_sites_of_the_splits_and_those_left_out() -> None:
    assert site_of(SPLITS)["b2"] == "jopp"
    assert labelled_sites(SPLITS) == ["epi", "jopp"]
    assert unlabelled_sites(SPLITS) == ["maas"]
    assert site_of(SPLITS.drop(columns="source")) == {}


def test_a_site_table_counts_its_patients_with_the_bootstrap_interval() -> None:
    scores = foreground_scores([_per_patient({"a1": 0.9, "a2": 0.7, "a3": 0.8, "b1": 0.5})])
    assert len(scores) == 4  # one row per patient: processed foreground only
    table = site_table(scores, site_of(SPLITS))
    epi = table.set_index("site").loc["epi"]
    assert epi["patients"] == 3 and epi["mean"] == pytest.approx(0.8)
    assert epi["median"] == pytest.approx(0.8)
    assert (epi["ci_low"], epi["ci_high"]) == bootstrap_ci(np.array([0.9, 0.7, 0.8]), "mean")
    jopp = table.set_index("site").loc["jopp"]
    assert jopp["patients"] == 1 and np.isnan(jopp["ci_low"])  # one patient: no interval
    assert site_table(foreground_scores([]), site_of(SPLITS)).empty


def test_the_sites_test_is_scipys_kruskal_with_n_per_site() -> None:
    values = {"a1": 0.9, "a2": 0.7, "a3": 0.8, "b1": 0.5, "b2": 0.4}
    found = site_test(foreground_scores([_per_patient(values)]), site_of(SPLITS))
    h, p = stats.kruskal([0.9, 0.7, 0.8], [0.5, 0.4])
    assert found == {"sites": 2, "patients": "epi 3, jopp 2", "h": h, "p": p}
    equal = site_test(
        foreground_scores([_per_patient(dict.fromkeys(values, 0.5))]), site_of(SPLITS)
    )
    assert np.isnan(equal["h"]) and np.isnan(equal["p"])
    one = site_test(foreground_scores([_per_patient({"a1": 0.9, "a2": 0.1})]), site_of(SPLITS))
    assert one["sites"] == 1 and np.isnan(one["p"])


SELECTION = {"metric": "dice", "class": "foreground", "aggregate": "mean"}


def test_the_nested_estimate_pools_each_outer_folds_chosen_model(tmp_path) -> None:
    configurations = pd.DataFrame({"configuration": ["a", "b"], "score": [0.6, 0.7]})
    held = []
    for fold, (chosen, scores) in enumerate(
        [("b", {"p1": 0.9, "p2": 0.5}), ("a", {"p3": 0.7, "p4": 0.3, "p5": 0.6})]
    ):
        path = tmp_path / f"{fold}.csv"
        _per_patient(scores, chosen).to_csv(path, index=False)
        final = pd.DataFrame({"run_id": [chosen, "other"]})
        held.append(held_out_table(final, configurations, {chosen: path, "other": "-"}, fold))
    assert set(held[0]["configuration"]) == {"b"} and set(held[0]["inner_score"]) == {0.7}
    patients, summary, choices = estimate(held, SELECTION)
    assert len(patients) == 5 * 4  # every row of both outer folds
    pooled = summary.set_index("outer_fold").loc[POOLED]
    values = np.array([0.9, 0.5, 0.7, 0.3, 0.6])
    assert pooled["score"] == pytest.approx(values.mean()) and pooled["patients"] == 5
    assert (pooled["ci_low"], pooled["ci_high"]) == bootstrap_ci(values, "mean")
    per_fold = summary.set_index("outer_fold")
    assert per_fold.loc["0", "score"] == pytest.approx(0.7)
    assert per_fold.loc["1", "configuration"] == "a"
    assert choices.set_index("configuration")["chosen"].to_dict() == {"a": 1, "b": 1}
    median = estimate(held, {**SELECTION, "aggregate": "median"})[1]
    assert median.set_index("outer_fold").loc[POOLED, "score"] == pytest.approx(0.6)


def test_a_patient_held_out_twice_or_a_missing_table_is_an_error(tmp_path) -> None:
    path = tmp_path / "t.csv"
    _per_patient({"p1": 0.9}).to_csv(path, index=False)
    configurations = pd.DataFrame({"configuration": ["m"], "score": [0.5]})
    one = held_out_table(pd.DataFrame({"run_id": ["m"]}), configurations, {"m": path}, 0)
    with pytest.raises(InputError, match="held out by two outer folds"):
        estimate([one, one.assign(outer_fold=1)], SELECTION)
    with pytest.raises(InputError, match="no test per_patient.csv"):
        held_out_table(pd.DataFrame({"run_id": ["x"]}), configurations, {"m": path}, 0)
    with pytest.raises(InputError, match="chose no final model"):
        held_out_table(pd.DataFrame({"run_id": []}), configurations, {}, 0)
