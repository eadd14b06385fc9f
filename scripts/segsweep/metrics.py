"""Binary overlap metrics from confusion counts, vectorised over slices, patients and classes.

Metrics are computed from TP/FP/FN/TN counts rather than from masks, so per-patient (3D) values
can be obtained exactly by summing per-slice counts, and every table carries the counts it was
computed from.

    dice        = 2 TP / (2 TP + FP + FN)      (F1)
    iou         = TP / (TP + FP + FN)          (Jaccard)
    sensitivity = TP / (TP + FN)               (recall, true positive rate)
    specificity = TN / (TN + FP)               (true negative rate)
    precision   = TP / (TP + FP)               (positive predictive value)
    accuracy    = (TP + TN) / (TP + FP + FN + TN)
    f2          = 5 TP / (5 TP + 4 FN + FP)    (Fβ with β = 2: recall weighted four times, the
                                                PET/CT thesis's F2; `fbeta` gives any β)

Empty conventions (as MONAI: a metric whose denominator is zero is NaN, never a warning):

- reference and prediction both empty: dice, iou, f2, sensitivity and precision are NaN (undefined;
  excluded from means and counted separately by the analysis);
- reference empty, prediction not (false positives only): dice = iou = f2 = precision = 0,
  sensitivity NaN (there is nothing to recall);
- reference not empty, prediction empty (a missed structure): dice = iou = f2 = sensitivity = 0,
  precision NaN (there are no positive predictions);
- specificity is NaN only when TN + FP == 0 (the reference covers every voxel);
- accuracy is always defined (NaN only for a region of zero voxels).

Volumes (mL) and the surface metrics (HD95, ASSD in mm and the normalised surface Dice at a
tolerance in mm, per patient in 3D) need the voxel spacing and live in `volumes_ml` and
`segsweep.evaluate.distances`.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.array_utils import normalize_axis_tuple

METRICS = ("dice", "iou", "sensitivity", "specificity", "precision", "accuracy", "f2")
BETA = 2.0


def confusion_counts(
    pred: np.ndarray, ref: np.ndarray, axis: int | tuple[int, ...] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """TP, FP, FN, TN (int64) of boolean masks, summed over `axis` (all axes when None)."""
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} != reference shape {ref.shape}")
    axes = tuple(range(pred.ndim)) if axis is None else normalize_axis_tuple(axis, pred.ndim)
    n_voxels = int(np.prod([pred.shape[a] for a in axes], dtype=np.int64))
    tp = np.asarray(np.count_nonzero(pred & ref, axis=axes), dtype=np.int64)
    n_pred = np.asarray(np.count_nonzero(pred, axis=axes), dtype=np.int64)
    n_ref = np.asarray(np.count_nonzero(ref, axis=axes), dtype=np.int64)
    fp = n_pred - tp
    fn = n_ref - tp
    tn = n_voxels - tp - fp - fn
    return tp, fp, fn, tn


def fbeta_fraction(tp, fp, fn, beta: float) -> tuple:
    """(1 + β²) TP and (1 + β²) TP + β² FN + FP, the numerator and denominator of Fβ."""
    b2 = beta * beta
    return (1 + b2) * tp, (1 + b2) * tp + b2 * fn + fp


def fractions(tp, fp, fn, tn) -> dict[str, tuple]:
    """(numerator, denominator) of every metric of METRICS from float64 counts: the one table
    of formulas, written for any array type with arithmetic (numpy arrays here, torch tensors
    on the model's device in `segsweep.evaluate.counts`), so both paths compute the same
    operations in the same order."""
    return {
        "dice": (2 * tp, 2 * tp + fp + fn),
        "iou": (tp, tp + fp + fn),
        "sensitivity": (tp, tp + fn),
        "specificity": (tn, tn + fp),
        "precision": (tp, tp + fp),
        "accuracy": (tp + tn, tp + fp + fn + tn),
        "f2": fbeta_fraction(tp, fp, fn, BETA),
    }


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den as float64, NaN where den == 0, without a numpy warning."""
    num, den = np.broadcast_arrays(np.asarray(num, dtype=np.float64), np.asarray(den, np.float64))
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den != 0)


def _floats(*counts) -> tuple[np.ndarray, ...]:
    """Counts as float64 (exact for counts below 2**53): every formula then runs in float64."""
    return tuple(np.asarray(c, dtype=np.float64) for c in counts)


def overlap_metrics(
    tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray
) -> dict[str, np.ndarray]:
    """Every metric of METRICS from confusion counts (broadcast), with the module's conventions."""
    return {name: _ratio(*pair) for name, pair in fractions(*_floats(tp, fp, fn, tn)).items()}


def fbeta(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, beta: float) -> np.ndarray:
    """(1 + β²) TP / ((1 + β²) TP + β² FN + FP); β > 1 weights recall more than precision."""
    return _ratio(*fbeta_fraction(*_floats(tp, fp, fn), beta))


def volumes(tp, fp, fn, scale) -> dict[str, tuple]:
    """Reference and predicted volume from counts and the voxel volume in mL (any array type)."""
    return {"volume_ref_ml": (tp + fn) * scale, "volume_pred_ml": (tp + fp) * scale}


def volumes_ml(
    tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, voxel_mm3: float | np.ndarray
) -> dict[str, np.ndarray]:
    """Reference and predicted volume in mL (1 mL = 1000 mm³) from confusion counts; the voxel
    volume (mm³) broadcasts, e.g. one per row."""
    scale = np.asarray(voxel_mm3, dtype=np.float64) / 1000.0
    return volumes(*_floats(tp, fp, fn), scale)
