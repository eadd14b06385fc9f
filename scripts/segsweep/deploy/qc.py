"""Which predicted case to distrust: per-case quality measures, thresholds calibrated on the
out-of-fold validation patients when a model is packaged, and the flag they raise.

Measures (one row per case, the columns of `columns`):

- `volume_ml_<class>` and `volume_ml_foreground`: predicted volume in mL in the case's own
  geometry (voxel count × voxel volume);
- `agreement`: the mean pairwise Dice of the fold models' foreground predictions (both empty:
  1); NaN for a model of one network;
- `uncertainty`: the mean over the predicted foreground of the normalised entropy of the
  fold-averaged probabilities, H(p) / log K in [0, 1] (0: certain; no foreground: 0);
- `intensity_distance`: the Wasserstein-1 distance between the case's normalised intensities
  (on the cropped grid the networks see) and the training patients', from `QUANTILES` quantiles
  of each, in training standard deviations, averaged over channels.

Calibration (`calibrate`) uses Tukey's far-out fences over the validation patients: a measure is
out of range below Q1 − 3 IQR (agreement, foreground volume) or above Q3 + 3 IQR (uncertainty,
intensity distance, foreground volume). Far-out rather than the usual 1.5 IQR, because the
validation patients were seen by the other folds' networks, so their agreement and uncertainty
are optimistic. A case is flagged when a measure is out of range, or when nothing is segmented
(foreground volume 0 although every training patient has one), and `reason` says which.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from segsweep.labels import FOREGROUND

QUANTILES = 101  # quantile levels 0, 0.01, …, 1 summarise an intensity distribution
FENCE = 3.0  # Tukey's far-out fence, in interquartile ranges
LOW, HIGH = "low", "high"
# measure → the side(s) on which it is out of range
SIDES = {
    "agreement": (LOW,),
    "uncertainty": (HIGH,),
    "intensity_distance": (HIGH,),
    f"volume_ml_{FOREGROUND}": (LOW, HIGH),
}


def columns(classes: Sequence[str]) -> list[str]:
    """qc.csv's columns, for a model predicting `classes` (data class names)."""
    volumes = [f"volume_ml_{c}" for c in dict.fromkeys([*classes, FOREGROUND])]
    return ["case", *volumes, "agreement", "uncertainty", "intensity_distance", "flag", "reason"]


def intensity_quantiles(voxels: np.ndarray) -> np.ndarray:
    """[c, QUANTILES] quantiles of normalised voxels [..., c] (each channel's distribution)."""
    flat = voxels.reshape(-1, voxels.shape[-1]).astype(np.float64)
    return np.quantile(flat, np.linspace(0.0, 1.0, QUANTILES), axis=0).T


def intensity_distance(voxels: np.ndarray, reference: dict[str, Any]) -> float:
    """Wasserstein-1 distance of normalised voxels [..., c] from the training distribution
    (`reference`: "quantiles" [c, Q] and "std" [c]), in training SDs, averaged over channels:
    the mean absolute difference of the two quantile functions."""
    case = intensity_quantiles(voxels)
    training = np.asarray(reference["quantiles"], dtype=np.float64)
    std = np.asarray(reference["std"], dtype=np.float64)
    distance = np.abs(case - training).mean(axis=1) / np.where(std > 0, std, 1.0)
    return float(distance.mean())


def agreement(foregrounds: Sequence[np.ndarray]) -> float:
    """Mean pairwise Dice of the members' boolean foreground masks; NaN for fewer than two."""
    if len(foregrounds) < 2:
        return math.nan
    sizes = [int(np.count_nonzero(f)) for f in foregrounds]
    scores = []
    for i in range(len(foregrounds)):
        for j in range(i + 1, len(foregrounds)):
            total = sizes[i] + sizes[j]
            common = int(np.count_nonzero(foregrounds[i] & foregrounds[j]))
            scores.append(1.0 if total == 0 else 2.0 * common / total)
    return float(np.mean(scores))


def normalised_entropy(probabilities: np.ndarray) -> np.ndarray:
    """H(p) / log K of class probabilities [K, ...] (float32, in [0, 1])."""
    k = probabilities.shape[0]
    p = np.clip(probabilities.astype(np.float64), 1e-12, 1.0)
    entropy = -(p * np.log(p)).sum(axis=0) / math.log(k)
    return np.clip(entropy, 0.0, 1.0).astype(np.float32)


def mean_uncertainty(entropy: np.ndarray, foreground: np.ndarray) -> float:
    """Mean of the entropy map over the predicted foreground (none: 0)."""
    return float(entropy[foreground].mean()) if foreground.any() else 0.0


def calibrate(rows: pd.DataFrame) -> dict[str, Any]:
    """Thresholds from the validation patients' measures (`rows`, columns of `SIDES`): each
    measure's fences, None on a side it is not checked on or without finite values."""
    thresholds = {}
    for measure, sides in SIDES.items():
        values = rows[measure].to_numpy(float) if measure in rows else np.array([])
        values = values[np.isfinite(values)]
        fences = {LOW: None, HIGH: None}
        if values.size:
            q1, q3 = np.percentile(values, [25, 75])
            iqr = q3 - q1
            if LOW in sides:
                fences[LOW] = float(q1 - FENCE * iqr)
            if HIGH in sides:
                fences[HIGH] = float(q3 + FENCE * iqr)
        thresholds[measure] = fences
    return {
        "rule": f"Tukey's far-out fences (Q1 - {FENCE:g} IQR, Q3 + {FENCE:g} IQR) over the "
        "out-of-fold validation patients",
        "patients": int(len(rows)),
        "thresholds": thresholds,
    }


def flag(row: dict[str, Any], calibration: dict[str, Any]) -> tuple[bool, str]:
    """(flagged, reason) of one case's measures against the package's calibration."""
    reasons = []
    if row.get(f"volume_ml_{FOREGROUND}", 1.0) == 0:
        reasons.append("nothing segmented")
    for measure in SIDES:  # reasons in the order of the measures, however stored
        fences, value = calibration["thresholds"].get(measure, {}), row.get(measure)
        if value is None or not math.isfinite(value):
            continue
        if fences.get(LOW) is not None and value < fences[LOW]:
            reasons.append(f"{measure} {value:.3g} < {fences[LOW]:.3g}")
        if fences.get(HIGH) is not None and value > fences[HIGH]:
            reasons.append(f"{measure} {value:.3g} > {fences[HIGH]:.3g}")
    return bool(reasons), "; ".join(reasons)
