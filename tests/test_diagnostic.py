"""The classification metrics against scikit-learn (to 1e-9, on random data with ties), their
undefined cases, Youden's threshold, the patient bootstrap and the results tables."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk

from segsweep.errors import ConfigError
from segsweep.evaluate.diagnostic import (
    METRICS_COLUMNS,
    ROC_COLUMNS,
    STUDY_TYPE_COLUMNS,
    bootstrap,
    bootstrap_values,
    choose_threshold,
    confusion,
    confusion_table,
    metric_statistic,
    metrics_table,
    multiclass_metrics,
    roc_curve_points,
    roc_table,
    study_type_table,
)

TOL = 1e-9
CLASSES = ["normal", "abnormal"]


def _binary(seed: int, n: int = 120) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Truth, predictions and scores rounded to 0.05, so that scores tie."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.35
    score = np.round(np.clip(0.3 * y + 0.8 * rng.random(n), 0, 1) * 20) / 20
    return y, score >= 0.5, score


def _binary_metrics(y: np.ndarray, predicted: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """`multiclass_metrics` of boolean truth and predictions (True = positive)."""
    return multiclass_metrics(np.asarray(y, int), np.asarray(predicted, int), score, 2)


def _table(y: np.ndarray, score: np.ndarray, patients: list[str], threshold: float = 0.5):
    """A binary per_study table."""
    return pd.DataFrame(
        {
            "study_id": [f"s{i}" for i in range(len(y))],
            "patient_id": patients,
            "true": np.where(y, "abnormal", "normal"),
            "p_normal": 1 - score,
            "p_abnormal": score,
            "predicted": np.where(score >= threshold, "abnormal", "normal"),
            "threshold": threshold,
        }
    )


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_binary_metrics_equal_scikit_learn(seed: int) -> None:
    y, predicted, score = _binary(seed)
    m = _binary_metrics(y, predicted, score)
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(y, predicted), abs=TOL)
    assert m["sensitivity"] == pytest.approx(sk.recall_score(y, predicted), abs=TOL)
    assert m["specificity"] == pytest.approx(sk.recall_score(y, predicted, pos_label=0), abs=TOL)
    assert m["precision"] == pytest.approx(sk.precision_score(y, predicted), abs=TOL)
    assert m["f1"] == pytest.approx(sk.f1_score(y, predicted), abs=TOL)
    assert m["auc"] == pytest.approx(sk.roc_auc_score(y, score), abs=TOL)
    assert m["kappa"] == pytest.approx(sk.cohen_kappa_score(y, predicted), abs=TOL)
    (tn, fp), (fn, tp) = sk.confusion_matrix(y, predicted)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (tp, fp, tn, fn)
    assert np.array_equal(confusion(y.astype(int), predicted.astype(int), 2), [[tn, fp], [fn, tp]])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_three_class_metrics_equal_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 3, 150)
    predicted = np.where(rng.random(150) < 0.6, true, rng.integers(0, 3, 150))
    score = np.round(rng.random(150) * 10) / 10 + 0.2 * (true == 2)
    assert np.array_equal(confusion(true, predicted, 3), sk.confusion_matrix(true, predicted))
    m = multiclass_metrics(true, predicted, score, 3)
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(true, predicted), abs=TOL)
    assert m["kappa"] == pytest.approx(sk.cohen_kappa_score(true, predicted), abs=TOL)
    positive = dict(labels=[2], average="macro")  # the last class against the rest
    assert m["sensitivity"] == pytest.approx(sk.recall_score(true, predicted, **positive), abs=TOL)
    assert m["precision"] == pytest.approx(sk.precision_score(true, predicted, **positive), abs=TOL)
    assert m["f1"] == pytest.approx(sk.f1_score(true, predicted, **positive), abs=TOL)
    assert m["specificity"] == pytest.approx(
        sk.recall_score(true == 2, predicted == 2, pos_label=False), abs=TOL
    )
    assert m["auc"] == pytest.approx(sk.roc_auc_score(true == 2, score), abs=TOL)


@pytest.mark.parametrize("seed", [0, 5])
def test_roc_points_equal_scikit_learn_without_dropping(seed: int) -> None:
    y, _, score = _binary(seed)
    fpr, tpr, thresholds = roc_curve_points(y, score)
    fpr_sk, tpr_sk, thresholds_sk = sk.roc_curve(y, score, drop_intermediate=False)
    np.testing.assert_allclose(fpr, fpr_sk, atol=TOL)
    np.testing.assert_allclose(tpr, tpr_sk, atol=TOL)
    np.testing.assert_array_equal(thresholds, thresholds_sk)


def test_undefined_metrics_are_nan_never_an_error() -> None:
    one_class = _binary_metrics(np.zeros(4, bool), np.array([0, 1, 0, 0], bool), np.arange(4.0))
    assert math.isnan(one_class["auc"]) and math.isnan(one_class["sensitivity"])
    assert one_class["specificity"] == 0.75
    agree = _binary_metrics(np.zeros(3, bool), np.zeros(3, bool), np.zeros(3))
    assert math.isnan(agree["kappa"]) and math.isnan(agree["precision"])
    assert agree["accuracy"] == 1.0
    empty = _binary_metrics(np.zeros(0, bool), np.zeros(0, bool), np.zeros(0))
    assert all(math.isnan(empty[m]) for m in ("accuracy", "auc", "kappa", "f1"))
    assert empty["tp"] == 0
    fpr, tpr, _ = roc_curve_points(np.zeros(3, bool), np.arange(3.0))
    assert np.isnan(tpr).all() and fpr[-1] == 1.0


def test_youden_threshold_on_a_hand_example() -> None:
    y = np.array([0, 0, 0, 1, 0, 1, 1, 1], bool)
    score = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    # threshold 0.4: tpr 1, fpr 1/4 → J 0.75; 0.7: tpr 3/4, fpr 0 → J 0.75; 0.6 → 0.5
    assert choose_threshold(y, score, "youden") == 0.7  # ties: the highest threshold
    assert choose_threshold(y[[0, 1, 2, 6]], score[[0, 1, 2, 6]], "youden") == 0.8
    assert choose_threshold(np.ones(3, bool), np.arange(3.0), "youden") == 0.5
    assert choose_threshold(y, score, 0.25) == 0.25
    with pytest.raises(ConfigError, match="classification.threshold"):
        choose_threshold(y, score, "otsu")


def test_the_bootstrap_draws_patients_whose_studies_move_together() -> None:
    # p1 has three correctly predicted studies, p2 one wrong one: a resample of the two patients
    # can only score 1 (p1 twice), 0.75 (both) or 0 (p2 twice), never what resampling studies
    # as if independent gives (0.25, 0.5)
    y = np.array([1, 0, 1, 1], bool)
    score = np.array([0.9, 0.1, 0.8, 0.2])
    table = _table(y, score, ["p1", "p1", "p1", "p2"])
    statistic = metric_statistic(table, CLASSES, "accuracy")
    values = bootstrap_values(table, statistic, 400, seed=3)
    assert set(np.round(values, 6)) == {0.0, 0.75, 1.0}

    def same_weight(weights: np.ndarray) -> np.ndarray:
        assert (weights[:, 0] == weights[:, 1]).all() and (weights[:, 1] == weights[:, 2]).all()
        assert (weights[:, :3].sum(axis=1) / 3 + weights[:, 3] == 2).all()  # two draws
        return weights[:, 3]

    bootstrap_values(table, same_weight, 100, seed=0)


def test_the_bootstrap_is_seeded_and_drops_undefined_resamples() -> None:
    y, _, score = _binary(0, n=40)
    table = _table(y, score, [f"p{i // 2}" for i in range(40)])
    statistic = metric_statistic(table, CLASSES, "auc")
    assert bootstrap(table, statistic, 300, 7) == bootstrap(table, statistic, 300, 7)
    assert bootstrap(table, statistic, 300, 7) != bootstrap(table, statistic, 300, 8)
    low, high = bootstrap(table, statistic, 300, 7)
    assert low < sk.roc_auc_score(y, score) < high
    # two patients, one positive: every resample of one patient twice has no AUC
    small = _table(np.array([1, 0], bool), np.array([0.9, 0.2]), ["p1", "p2"])
    values = bootstrap_values(small, metric_statistic(small, CLASSES, "auc"), 200, 0)
    assert np.isnan(values).any() and (values[~np.isnan(values)] == 1.0).all()
    assert bootstrap(small, metric_statistic(small, CLASSES, "auc"), 200, 0) == (1.0, 1.0)
    assert all(math.isnan(v) for v in bootstrap(small.iloc[:0], statistic, 200, 0))


def test_a_thousand_auc_resamples_of_a_hundred_studies_take_well_under_a_second() -> None:
    y, _, score = _binary(1, n=100)
    table = _table(y, score, [f"p{i // 2}" for i in range(100)])
    start = time.perf_counter()
    bootstrap(table, metric_statistic(table, CLASSES, "auc"), 1000, 0)
    assert time.perf_counter() - start < 0.5


def test_the_metrics_table_states_values_intervals_and_threshold() -> None:
    y, _, score = _binary(2, n=60)
    table = _table(y, score, [f"p{i // 3}" for i in range(60)], threshold=0.45)
    result = metrics_table(table, CLASSES, 200, 0).set_index("metric")
    assert list(result.reset_index().columns) == METRICS_COLUMNS
    assert list(result.index) == [
        "accuracy",
        "sensitivity",
        "specificity",
        "precision",
        "f1",
        "auc",
        "kappa",
    ]
    expected = _binary_metrics(y, score >= 0.45, score)
    for metric, row in result.iterrows():
        assert row["value"] == pytest.approx(expected[metric], abs=TOL)
        assert row["low"] <= row["value"] <= row["high"]
    assert (result["n_studies"] == 60).all() and (result["n_patients"] == 20).all()
    assert (result["threshold"] == 0.45).all()
    pooled = table.assign(threshold=np.where(np.arange(60) < 30, 0.45, 0.5))
    assert metrics_table(pooled, CLASSES, 0, 0)["threshold"].isna().all()  # folds' own


def test_the_study_type_table_has_one_row_per_type_and_all() -> None:
    y, _, score = _binary(3, n=80)
    table = _table(y, score, [f"p{i // 2}" for i in range(80)])
    table["study_type"] = np.where(np.arange(80) % 4 == 0, "XR_WRIST", "XR_HAND")
    table.loc[5, "study_type"] = ""  # counted in all only
    result = study_type_table(table, CLASSES, 100, 0)
    assert list(result.columns) == STUDY_TYPE_COLUMNS
    assert list(result["study_type"]) == ["XR_HAND", "XR_WRIST", "all"]
    assert list(result["n_studies"]) == [59, 20, 80]
    wrist = table["study_type"] == "XR_WRIST"
    row = result.iloc[1]
    assert row["n_positive"] == y[wrist].sum()
    assert row["n_patients"] == table.loc[wrist, "patient_id"].nunique()
    assert row["kappa"] == pytest.approx(
        sk.cohen_kappa_score(y[wrist], score[wrist] >= 0.5), abs=TOL
    )
    assert row["auc"] == pytest.approx(sk.roc_auc_score(y[wrist], score[wrist]), abs=TOL)
    assert result.iloc[2]["accuracy"] == pytest.approx(sk.accuracy_score(y, score >= 0.5))
    assert row["accuracy_low"] <= row["accuracy"] <= row["accuracy_high"]


def test_the_confusion_table_keeps_every_pair_in_class_order() -> None:
    table = _table(np.array([0, 0, 1], bool), np.array([0.1, 0.2, 0.9]), ["a", "b", "c"])
    result = confusion_table(table, CLASSES)
    assert result.values.tolist() == [
        ["normal", "normal", 2],
        ["normal", "abnormal", 0],
        ["abnormal", "normal", 0],
        ["abnormal", "abnormal", 1],
    ]
    with pytest.raises(ValueError, match="unknown classes"):
        confusion_table(table.assign(true="other"), CLASSES)


def test_the_roc_table_samples_the_step_function_with_a_band() -> None:
    y, _, score = _binary(4, n=90)
    table = _table(y, score, [f"p{i // 3}" for i in range(90)])
    result = roc_table(table, CLASSES, 200, 0, points=11)
    assert list(result.columns) == ROC_COLUMNS
    np.testing.assert_allclose(result["fpr"], np.linspace(0, 1, 11))
    fpr, tpr, _ = sk.roc_curve(y, score, drop_intermediate=False)
    expected = [tpr[fpr <= x + 1e-12].max() for x in result["fpr"]]
    np.testing.assert_allclose(result["tpr"], expected, atol=TOL)
    assert (np.diff(result["tpr"]) >= 0).all() and result["tpr"].iloc[-1] == 1.0
    assert (result["tpr_low"] <= result["tpr"] + TOL).all()
    assert (result["tpr"] <= result["tpr_high"] + TOL).all()
    np.testing.assert_allclose(result["auc"], sk.roc_auc_score(y, score), atol=TOL)
    one_class = roc_table(table.assign(true="normal"), CLASSES, 50, 0, points=5)
    assert one_class[["tpr", "tpr_low", "tpr_high", "auc"]].isna().all().all()
