"""Diagnostic metrics of the classification task, their patient-bootstrap intervals and the
tables of the results chapter (Kaliyugarsan 2019, Table 5.1 and Figs 5.5, 5.7).

Conventions:
- Classes are indexed by their position in `classes`; the LAST class is the positive one.
  Binary metrics of K > 2 classes are those of the positive class against the rest (sensitivity,
  specificity, precision, F1, AUC); accuracy and Cohen's kappa are over all K classes.
- A prediction table (per_study.csv or per_image.csv, `segsweep.evaluate.predictions`) holds
  `patient_id`, `true` and `predicted` (class names) and `p_<class>` per class; the score of the
  AUC and of the ROC curve is `p_<positive>`.
- Every metric is one formula over (weighted) confusion counts, so the point estimate (every
  row weighted 1) and a bootstrap resample (a row weighted by how often its patient was drawn)
  are the same computation. AUC is the Mann–Whitney statistic, ties counted one half (equal to
  scikit-learn's roc_auc_score); kappa is Cohen's unweighted kappa.
- Undefined results are NaN, never an exception: a zero denominator (no positives: sensitivity;
  no predicted positives: precision; one class present: AUC; chance agreement 1: kappa), and
  every metric of an empty table.
- Intervals are percentile-bootstrap 95 % intervals that resample PATIENTS with replacement (a
  drawn patient brings all of its studies), seeded; resamples where the statistic is undefined
  are dropped, and with fewer than two defined resamples the interval is NaN.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd

from segsweep.errors import ConfigError

METRIC_ROWS = ("accuracy", "sensitivity", "specificity", "precision", "f1", "auc", "kappa")
COUNTS = ("tp", "fp", "tn", "fn")
METRICS_COLUMNS = ["metric", "value", "low", "high", "n_studies", "n_patients", "threshold"]
STUDY_TYPE_METRICS = ("accuracy", "sensitivity", "specificity", "kappa", "auc")
STUDY_TYPE_COLUMNS = [
    "study_type",
    "n_studies",
    "n_patients",
    "n_positive",
    *(f"{m}{s}" for m in STUDY_TYPE_METRICS for s in ("", "_low", "_high")),
]
ALL = "all"  # the study-type table's row of every study
CONFUSION_COLUMNS = ["true", "predicted", "count"]
ROC_COLUMNS = ["fpr", "tpr", "tpr_low", "tpr_high", "auc"]
UNDEFINED_THRESHOLD = 0.5  # the threshold where Youden's index is undefined (one class present)
CHUNK = 2_000_000  # resamples × rows held in memory at once


def confusion(true: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """Counts int [k, k]: rows true class, columns predicted class (indices 0 … k−1)."""
    true, predicted = np.asarray(true, dtype=int), np.asarray(predicted, dtype=int)
    if true.size and (
        min(true.min(), predicted.min()) < 0 or max(true.max(), predicted.max()) >= k
    ):
        raise ValueError(f"class indices must lie in 0 … {k - 1}")
    return np.bincount(true * k + predicted, minlength=k * k).reshape(k, k)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b, NaN where b is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)


def _binned(weights: np.ndarray, bins: np.ndarray, size: int) -> np.ndarray:
    """Sums [B, size] of `weights` [B, S] over the rows of each bin (`bins` [S] in 0 … size−1)."""
    b = weights.shape[0]
    index = (np.arange(b)[:, None] * size + bins[None, :]).ravel()
    summed = np.bincount(index, weights=weights.ravel(), minlength=b * size)
    return summed.reshape(b, size)


def _from_confusion(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric but AUC, [B], from (weighted) confusion counts [B, K, K]."""
    k = counts.shape[1]
    n = counts.sum(axis=(1, 2))
    agree = np.trace(counts, axis1=1, axis2=2)
    rows, columns = counts.sum(axis=2), counts.sum(axis=1)
    tp = counts[:, k - 1, k - 1]
    fn = rows[:, k - 1] - tp
    fp = columns[:, k - 1] - tp
    tn = n - tp - fn - fp
    observed, chance = _ratio(agree, n), _ratio((rows * columns).sum(axis=1), n * n)
    return {
        "accuracy": observed,
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "precision": _ratio(tp, tp + fp),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "kappa": _ratio(observed - chance, 1 - chance),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def _positive_bins(
    weights: np.ndarray, positive: np.ndarray, score: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct scores (ascending) and the weighted positives and negatives [B, U] at each."""
    distinct, bins = np.unique(score, return_inverse=True)
    positives = _binned(weights * positive, bins, distinct.size)
    negatives = _binned(weights * ~positive, bins, distinct.size)
    return distinct, positives, negatives


def _auc(weights: np.ndarray, positive: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Mann–Whitney AUC [B]: the weighted share of (positive, negative) pairs ranked right, ties
    one half; NaN where a resample holds one class."""
    _, positives, negatives = _positive_bins(weights, positive, score)
    below = np.cumsum(negatives, axis=1) - negatives
    right = (positives * (below + 0.5 * negatives)).sum(axis=1)
    return _ratio(right, positives.sum(axis=1) * negatives.sum(axis=1))


def _roc(
    weights: np.ndarray, positive: np.ndarray, score: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """fpr, tpr [B, T+1] and thresholds [T+1] (inf, then the distinct scores descending)."""
    distinct, positives, negatives = _positive_bins(weights, positive, score)
    zero = np.zeros((weights.shape[0], 1))
    tps = np.hstack([zero, np.cumsum(positives[:, ::-1], axis=1)])
    fps = np.hstack([zero, np.cumsum(negatives[:, ::-1], axis=1)])
    thresholds = np.concatenate([[np.inf], distinct[::-1]])
    return _ratio(fps, fps[:, -1:]), _ratio(tps, tps[:, -1:]), thresholds


def _weighted(
    weights: np.ndarray, true: np.ndarray, predicted: np.ndarray, score: np.ndarray, k: int
) -> dict[str, np.ndarray]:
    """Every metric [B] of rows weighted by `weights` [B, S]."""
    counts = _binned(weights, true * k + predicted, k * k).reshape(-1, k, k)
    return {**_from_confusion(counts), "auc": _auc(weights, true == k - 1, score)}


def multiclass_metrics(
    true: np.ndarray, predicted: np.ndarray, score: np.ndarray, k: int
) -> dict[str, float]:
    """accuracy and kappa over all `k` classes; sensitivity, specificity, precision, f1, auc and
    the counts tp, fp, tn, fn of the positive class (index k−1) against the rest. `true`,
    `predicted`: class indices [N]; `score`: the probability of the positive class [N]."""
    true, predicted = np.asarray(true, dtype=int), np.asarray(predicted, dtype=int)
    score = np.asarray(score, dtype=float)
    confusion(true, predicted, k)  # checks the indices
    values = _weighted(np.ones((1, true.size)), true, predicted, score, k)
    return {
        name: int(value[0]) if name in COUNTS else float(value[0]) for name, value in values.items()
    }


def roc_curve_points(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) at every distinct score, highest first, after the point (0, 0) at
    threshold inf: scikit-learn's roc_curve with drop_intermediate=False. A rate is NaN where its
    class is absent."""
    y, score = np.asarray(y, dtype=bool), np.asarray(score, dtype=float)
    fpr, tpr, thresholds = _roc(np.ones((1, y.size)), y, score)
    return fpr[0], tpr[0], thresholds


def choose_threshold(y: np.ndarray, score: np.ndarray, rule: str | float) -> float:
    """The decision threshold (positive iff score >= threshold): a number is returned as is;
    "youden" is the distinct score that maximises sensitivity + specificity − 1 (Youden's J),
    ties to the highest such threshold (the fewest positive predictions); with one class present
    (or none) it is 0.5."""
    if isinstance(rule, int | float) and not isinstance(rule, bool):
        return float(rule)
    if rule != "youden":
        raise ConfigError("classification.threshold", rule, "youden or a number")
    y, score = np.asarray(y, dtype=bool), np.asarray(score, dtype=float)
    n_positive, n_negative = int(y.sum()), int((~y).sum())
    if not n_positive or not n_negative:
        return UNDEFINED_THRESHOLD
    fpr, tpr, thresholds = roc_curve_points(y, score)
    # J · P · N in whole counts, so that equal indices compare equal
    scaled = np.rint(tpr * n_positive) * n_negative - np.rint(fpr * n_negative) * n_positive
    return float(thresholds[1 + int(np.argmax(scaled[1:]))])


def encode(table: pd.DataFrame, classes: list[str]) -> dict[str, np.ndarray]:
    """A prediction table's columns as arrays: true and predicted class indices [N] and the
    positive class's probability [N]. Unknown class names raise ValueError."""
    index = {name: i for i, name in enumerate(classes)}
    arrays = {}
    for column in ("true", "predicted"):
        names = table[column].astype(str)
        unknown = sorted(set(names) - set(index))
        if unknown:
            raise ValueError(f"column {column}: unknown classes {unknown}; classes are {classes}")
        arrays[column] = names.map(index).to_numpy(int)
    arrays["score"] = table[f"p_{classes[-1]}"].to_numpy(float)
    return arrays


def _patient_weights(patients: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Row weights [n, S]: how often each row's patient is drawn in each of n resamples of the
    patients with replacement."""
    codes, distinct = pd.factorize(pd.Series(patients, dtype=object))
    draws = rng.integers(0, len(distinct), size=(n, len(distinct)))
    offset = (np.arange(n)[:, None] * len(distinct) + draws).ravel()
    counts = np.bincount(offset, minlength=n * len(distinct)).reshape(n, len(distinct))
    return counts[:, codes].astype(float)


def bootstrap_values(
    per_study: pd.DataFrame,
    statistic: Callable[[np.ndarray], np.ndarray],
    n: int,
    seed: int,
) -> np.ndarray:
    """The statistic of n cluster-bootstrap resamples, [n, ...]: each resample draws the table's
    patients (`patient_id`) with replacement and weights every row by its patient's count, so a
    patient's studies move together; `statistic` maps row weights [B, S] (rows in table order)
    to values [B] or [B, m]. Seeded: the same table, n and seed give the same values."""
    rng = np.random.default_rng(seed)
    patients = per_study["patient_id"].to_numpy()
    step = max(1, CHUNK // max(1, len(per_study)))
    chunks = [
        statistic(_patient_weights(patients, min(step, n - start), rng))
        for start in range(0, n, step)
    ]
    return np.concatenate(chunks) if chunks else np.zeros(0)


def _interval(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2.5th and 97.5th percentiles over the first axis, undefined resamples dropped (NaN with
    fewer than two defined)."""
    values = np.asarray(values, dtype=float)
    shape = values.shape[1:]
    defined = (~np.isnan(values)).sum(axis=0)
    if not values.size or not np.any(defined >= 2):
        return np.full(shape, np.nan), np.full(shape, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # grid points no resample defines
        low, high = np.nanpercentile(values, [2.5, 97.5], axis=0)
    return np.where(defined >= 2, low, np.nan), np.where(defined >= 2, high, np.nan)


def bootstrap(
    per_study: pd.DataFrame,
    statistic: Callable[[np.ndarray], np.ndarray],
    n: int,
    seed: int,
) -> tuple[float, float]:
    """Percentile 95 % interval (low, high) of `statistic` (row weights [B, S] → values [B])
    over n patient-bootstrap resamples of the table (`bootstrap_values`); NaN for an empty
    table, n = 0 or fewer than two defined resamples."""
    if per_study.empty or n <= 0:
        return math.nan, math.nan
    low, high = _interval(bootstrap_values(per_study, statistic, n, seed))
    return float(low), float(high)


def metric_statistic(
    table: pd.DataFrame, classes: list[str], metric: str
) -> Callable[[np.ndarray], np.ndarray]:
    """The bootstrap statistic of one metric (`METRIC_ROWS`) of a prediction table."""
    if metric not in METRIC_ROWS:
        raise ConfigError("selection.metric", metric, ", ".join(METRIC_ROWS))
    arrays, k = encode(table, classes), len(classes)
    return lambda w: _weighted(w, arrays["true"], arrays["predicted"], arrays["score"], k)[metric]


def _all_metrics(
    table: pd.DataFrame, classes: list[str], metrics: tuple[str, ...], n_boot: int, seed: int
) -> dict[str, tuple[float, float, float]]:
    """metric → (value, low, high) of `table`, every interval from the same resamples."""
    arrays, k = encode(table, classes), len(classes)
    values = multiclass_metrics(arrays["true"], arrays["predicted"], arrays["score"], k)

    def statistic(w: np.ndarray) -> np.ndarray:
        every = _weighted(w, arrays["true"], arrays["predicted"], arrays["score"], k)
        return np.stack([every[m] for m in metrics], axis=1)

    low = high = np.full(len(metrics), np.nan)
    if len(table) and n_boot > 0:
        low, high = _interval(bootstrap_values(table, statistic, n_boot, seed))
    return {m: (values[m], float(low[i]), float(high[i])) for i, m in enumerate(metrics)}


def _threshold(table: pd.DataFrame) -> float:
    """The table's decision threshold: its `threshold` when every row shares it, else NaN
    (pooled folds that each chose their own, K > 2 classes, or no such column)."""
    if "threshold" not in table:
        return math.nan
    thresholds = pd.to_numeric(table["threshold"], errors="coerce").dropna().unique()
    return float(thresholds[0]) if len(thresholds) == 1 else math.nan


def metrics_table(
    per_study: pd.DataFrame, classes: list[str], n_boot: int, seed: int
) -> pd.DataFrame:
    """One row per metric of `METRIC_ROWS`: value with its patient-bootstrap 95 % interval (low,
    high), the studies and patients it rests on and the threshold the `predicted` column
    applied."""
    values = _all_metrics(per_study, classes, METRIC_ROWS, n_boot, seed)
    n_studies, n_patients = len(per_study), int(per_study["patient_id"].nunique())
    rows = [
        [metric, *values[metric], n_studies, n_patients, _threshold(per_study)]
        for metric in METRIC_ROWS
    ]
    return pd.DataFrame(rows, columns=METRICS_COLUMNS)


def study_type_table(
    per_study: pd.DataFrame, classes: list[str], n_boot: int, seed: int
) -> pd.DataFrame:
    """Kaliyugarsan's Table 5.1, extended: per study type (sorted; studies without a type count
    in `all` only) and a last row `all`, the studies, patients and positive studies, and
    accuracy, sensitivity, specificity, kappa and AUC each with its patient-bootstrap 95 %
    interval (`<metric>_low`, `<metric>_high`)."""
    types = per_study["study_type"] if "study_type" in per_study else pd.Series(dtype=object)
    types = types.fillna("").astype(str)
    groups = [(name, per_study[types == name]) for name in sorted(set(types) - {""})]
    rows = []
    for name, table in [*groups, (ALL, per_study)]:
        values = _all_metrics(table, classes, STUDY_TYPE_METRICS, n_boot, seed)
        row = [
            name,
            len(table),
            int(table["patient_id"].nunique()),
            int((table["true"].astype(str) == classes[-1]).sum()),
        ]
        rows.append(row + [v for m in STUDY_TYPE_METRICS for v in values[m]])
    return pd.DataFrame(rows, columns=STUDY_TYPE_COLUMNS)


def confusion_table(per_study: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Counts of every (true, predicted) pair of class names in class order, zeros kept."""
    arrays = encode(per_study, classes)
    counts = confusion(arrays["true"], arrays["predicted"], len(classes))
    rows = [[t, p, int(counts[i, j])] for i, t in enumerate(classes) for j, p in enumerate(classes)]
    return pd.DataFrame(rows, columns=CONFUSION_COLUMNS)


def _tpr_at(fpr: np.ndarray, tpr: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The ROC step function [B, G] at each fpr of `grid`: the largest tpr of the points with
    fpr <= it (within 1e-12); NaN where a curve is undefined (a class absent)."""
    values = np.full((fpr.shape[0], grid.size), np.nan)
    for b in range(fpr.shape[0]):
        if not np.isnan(fpr[b, -1]) and not np.isnan(tpr[b, -1]):
            index = np.searchsorted(fpr[b], grid + 1e-12, side="right") - 1
            values[b] = tpr[b, index]
    return values


def roc_table(
    per_study: pd.DataFrame, classes: list[str], n_boot: int, seed: int, points: int = 101
) -> pd.DataFrame:
    """The ROC curve of the positive class on `points` false-positive rates i/(points−1), 0 … 1:
    tpr of the step function (the largest true-positive rate reached at that fpr), its
    patient-bootstrap 95 % band (tpr_low, tpr_high) and the AUC (constant column)."""
    arrays = encode(per_study, classes)
    positive, score = arrays["true"] == len(classes) - 1, arrays["score"]
    grid = np.arange(points) / (points - 1)
    fpr, tpr, _ = _roc(np.ones((1, len(per_study))), positive, score)
    low = high = np.full(points, np.nan)
    if len(per_study) and n_boot > 0:

        def statistic(w: np.ndarray) -> np.ndarray:
            return _tpr_at(*_roc(w, positive, score)[:2], grid)

        low, high = _interval(bootstrap_values(per_study, statistic, n_boot, seed))
    auc = float(_auc(np.ones((1, len(per_study))), positive, score)[0])
    table = {"fpr": grid, "tpr": _tpr_at(fpr, tpr, grid)[0], "tpr_low": low, "tpr_high": high}
    return pd.DataFrame({**table, "auc": auc}, columns=ROC_COLUMNS)
