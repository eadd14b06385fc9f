"""Calibration of the classification task's study probabilities: the expected calibration error
(ECE) with its patient-bootstrap interval, and the bins of the reliability diagram.

Conventions:
- Statistics are over studies (the rows of per_study.csv), never images. A study's score and
  outcome: with two classes its probability of the positive class (the last one, p_<positive>)
  and whether it is positive; with K > 2 classes the top-label calibration: its highest class
  probability (the confidence) and whether that class (the first in class order on ties) is its
  true one.
- Bins: `bin_count(n)` equal-width bins on [0, 1] for a table of n studies: n // 10 (about ten
  studies a bin on average), at least 2 and at most 10 (10 from 100 studies on). Of B bins, bin b
  holds the scores in [b/B, (b+1)/B), the last one also 1: numpy.histogram's bins
  (scikit-learn's calibration_curve with strategy="uniform" differs only in putting a score on
  an inner edge into the bin below). The bootstrap keeps the table's bins.
- ECE = Σ_b (n_b/N) |ȳ_b − p̄_b| over the non-empty bins, ȳ_b being the share of positive outcomes
  and p̄_b the mean score of bin b's n_b studies, N the studies: the mean distance between the
  predicted probability and the observed frequency, 0 when every bin's frequency equals its mean
  probability. It ignores the decision threshold; NaN for an empty table.
- Interval: the percentile bootstrap 95 % interval of `segsweep.evaluate.diagnostic`, resampling
  patients with replacement (each bringing all its studies; with one study a patient, the
  studies), n resamples seeded (the analysis: classification.bootstrap, split.seed). ECE is
  biased upwards on few studies a bin, its resamples too: for well-calibrated probabilities the
  interval can lie above the estimate.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from segsweep.evaluate.diagnostic import bootstrap, encode
from segsweep.evaluate.predictions import positive_column, probability_columns

MAX_BINS, MIN_BINS, STUDIES_PER_BIN = 10, 2, 10
TOP_LABEL = "top_label"  # the calibration table's `probability` with K > 2 classes
CALIBRATION_COLUMNS = [
    "n_studies",
    "n_patients",
    "bins",
    "probability",
    "ece",
    "ece_low",
    "ece_high",
]
RELIABILITY_COLUMNS = ["bin", "bin_low", "bin_high", "n_studies", "mean_probability", "observed"]


def bin_count(n: int) -> int:
    """The number of equal-width bins for n studies: n // 10, within 2 … 10."""
    return min(MAX_BINS, max(MIN_BINS, n // STUDIES_PER_BIN))


def bin_index(score: np.ndarray, bins: int) -> np.ndarray:
    """Each score's bin, 0 … bins−1 (see the module); a score outside [0, 1] or NaN raises
    ValueError."""
    score = np.asarray(score, dtype=float)
    if np.isnan(score).any() or (score < 0).any() or (score > 1).any():
        raise ValueError("study probabilities must lie in [0, 1]")
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.searchsorted(edges[1:-1], score, side="right")


def calibration_arrays(
    per_study: pd.DataFrame, classes: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(score [N], outcome [N] as 0/1) of a prediction table: the positive class's probability
    and membership with two classes, the top-label confidence and correctness with more."""
    true = encode(per_study, classes)["true"]
    if len(classes) == 2:
        score = per_study[positive_column(classes)].to_numpy(float)
        return score, (true == 1).astype(float)
    probabilities = per_study[probability_columns(classes)].to_numpy(float)
    top = probabilities.argmax(axis=1)
    return probabilities[np.arange(len(top)), top], (true == top).astype(float)


def _ece(
    weights: np.ndarray, score: np.ndarray, outcome: np.ndarray, index: np.ndarray, bins: int
) -> np.ndarray:
    """ECE [R] of the rows weighted by `weights` [R, S]: Σ_b |Σ_{i∈b} w_i (y_i − p_i)| / Σ_i w_i,
    the module's formula with n_b ȳ_b and n_b p̄_b as weighted sums."""
    members = np.zeros((score.size, bins))
    members[np.arange(score.size), index] = 1.0
    gaps = (weights * (outcome - score)) @ members
    return np.abs(gaps).sum(axis=1) / weights.sum(axis=1)


def expected_calibration_error(score: np.ndarray, outcome: np.ndarray, bins: int) -> float:
    """ECE of scores [N] in [0, 1] against outcomes [N] (0/1) over `bins` equal-width bins; NaN
    without studies."""
    score, outcome = np.asarray(score, dtype=float), np.asarray(outcome, dtype=float)
    if not score.size:
        return math.nan
    index = bin_index(score, bins)
    return float(_ece(np.ones((1, score.size)), score, outcome, index, bins)[0])


def calibration_table(
    per_study: pd.DataFrame, classes: list[str], n_boot: int, seed: int
) -> pd.DataFrame:
    """One row: the studies and patients, the bins (`bin_count`), what is calibrated
    (p_<positive>, or `TOP_LABEL` with K > 2 classes) and the ECE with its patient-bootstrap
    95 % interval (ece_low, ece_high)."""
    score, outcome = calibration_arrays(per_study, classes)
    bins = bin_count(len(per_study))
    index = bin_index(score, bins)
    low, high = bootstrap(per_study, lambda w: _ece(w, score, outcome, index, bins), n_boot, seed)
    probability = positive_column(classes) if len(classes) == 2 else TOP_LABEL
    row = [
        len(per_study),
        int(per_study["patient_id"].nunique()),
        bins,
        probability,
        expected_calibration_error(score, outcome, bins),
        low,
        high,
    ]
    return pd.DataFrame([row], columns=CALIBRATION_COLUMNS)


def reliability_table(per_study: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """The reliability diagram of a prediction table: one row per bin (`bin_count` of them,
    empty ones kept), its bounds, studies, mean score (mean_probability) and share of positive
    outcomes (observed), both NaN for an empty bin."""
    score, outcome = calibration_arrays(per_study, classes)
    bins = bin_count(len(per_study))
    index = bin_index(score, bins)
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.bincount(index, weights=score, minlength=bins) / counts
        observed = np.bincount(index, weights=outcome, minlength=bins) / counts
    columns = [np.arange(bins), edges[:-1], edges[1:], counts, mean, observed]
    return pd.DataFrame(dict(zip(RELIABILITY_COLUMNS, columns, strict=True)))
