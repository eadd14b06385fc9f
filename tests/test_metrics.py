"""Overlap metrics agree with SimpleITK's label overlap filter and follow the empty conventions."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import SimpleITK as sitk

from segsweep.metrics import METRICS, confusion_counts, fbeta, overlap_metrics, volumes_ml


def _random_pair(shape, density, agreement, seed):
    """A reference mask and a prediction that copies it on `agreement` of the voxels."""
    rng = np.random.default_rng(seed)
    ref = rng.random(shape) < density
    noise = rng.random(shape) < density
    pred = np.where(rng.random(shape) < agreement, ref, noise)
    ref.flat[0] = pred.flat[-1] = True  # SimpleITK needs label 1 in both images
    return pred, ref


def _sitk_metrics(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """The same metrics from SimpleITK, an independent implementation.

    Execute(source=prediction, target=reference) returns, for label 1:
    FalseNegativeError = FN / (TP + FN), FalsePositiveError = FP / (FP + TN),
    FalseDiscoveryRate = FP / (TP + FP). Accuracy is the mean of the voxelwise agreement image.
    """
    pred_img = sitk.GetImageFromArray(pred.astype(np.uint8))
    ref_img = sitk.GetImageFromArray(ref.astype(np.uint8))
    overlap = sitk.LabelOverlapMeasuresImageFilter()
    overlap.Execute(pred_img, ref_img)
    stats = sitk.StatisticsImageFilter()
    stats.Execute(sitk.Equal(pred_img, ref_img))
    recall = 1.0 - overlap.GetFalseNegativeError(1)
    ppv = 1.0 - overlap.GetFalseDiscoveryRate(1)
    return {
        "dice": overlap.GetDiceCoefficient(1),
        "iou": overlap.GetJaccardCoefficient(1),
        "sensitivity": 1.0 - overlap.GetFalseNegativeError(1),
        "specificity": 1.0 - overlap.GetFalsePositiveError(1),
        "precision": 1.0 - overlap.GetFalseDiscoveryRate(1),
        "accuracy": stats.GetMean(),
        "f2": 5 * ppv * recall / (4 * ppv + recall) if ppv + recall else 0.0,
    }


@pytest.mark.parametrize("shape", [(3, 4, 5), (8, 17, 23), (24, 48, 40)])
@pytest.mark.parametrize("density", [0.02, 0.3, 0.8])
@pytest.mark.parametrize("agreement", [0.0, 0.7, 0.97])
def test_agrees_with_simpleitk(shape, density, agreement):
    seed = hash((shape, density, agreement)) % 2**32
    pred, ref = _random_pair(shape, density, agreement, seed)
    ours = overlap_metrics(*confusion_counts(pred, ref))
    theirs = _sitk_metrics(pred, ref)
    assert list(ours) == list(METRICS)
    for name in METRICS:
        assert ours[name].shape == ()
        assert ours[name] == pytest.approx(theirs[name], abs=1e-6), name


def test_counts_are_int64_and_sum_to_size():
    pred, ref = _random_pair((5, 6, 7), 0.4, 0.5, 1)
    counts = confusion_counts(pred, ref)
    assert all(c.dtype == np.int64 for c in counts)
    tp, fp, fn, tn = (int(c) for c in counts)
    assert tp == np.sum(pred & ref) and fp == np.sum(pred & ~ref)
    assert fn == np.sum(~pred & ref) and tn == np.sum(~pred & ~ref)
    assert tp + fp + fn + tn == pred.size


def test_axis_keeps_other_axes():
    """Counts over (rows, cols) of an [n, rows, cols, m] batch are per slice and class."""
    pred, ref = _random_pair((4, 9, 11, 3), 0.3, 0.6, 2)
    tp, fp, fn, tn = confusion_counts(pred, ref, axis=(1, 2))
    assert tp.shape == (4, 3)
    assert tp[2, 1] == np.sum(pred[2, :, :, 1] & ref[2, :, :, 1])
    np.testing.assert_array_equal(tp + fp + fn + tn, np.full((4, 3), 9 * 11))
    assert confusion_counts(pred, ref, axis=-1)[0].shape == (4, 9, 11)


def test_patient_from_summed_slice_counts_equals_volume():
    pred, ref = _random_pair((12, 20, 20), 0.25, 0.8, 3)
    ref[5:8] = False  # slices with an empty reference
    pred[6] = False  # one of them also empty in the prediction
    per_slice = confusion_counts(pred, ref, axis=(1, 2))
    summed = overlap_metrics(*(c.sum(axis=0) for c in per_slice))
    volume = overlap_metrics(*confusion_counts(pred, ref))
    for name in METRICS:
        assert summed[name] == pytest.approx(volume[name], abs=1e-12)
    slice_dice = overlap_metrics(*per_slice)["dice"]
    assert np.isnan(slice_dice[6]) and slice_dice[5] == 0.0
    assert np.isfinite(np.delete(slice_dice, 6)).all()


def _no_warnings(*counts):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            return overlap_metrics(*counts)


def test_both_empty():
    pred = ref = np.zeros((2, 3, 4), dtype=bool)
    m = _no_warnings(*confusion_counts(pred, ref))
    for name in ("dice", "iou", "sensitivity", "precision"):
        assert np.isnan(m[name]), name
    assert m["specificity"] == 1.0 and m["accuracy"] == 1.0


def test_empty_reference_with_false_positives():
    ref = np.zeros((2, 3, 4), dtype=bool)
    pred = ref.copy()
    pred[0, 0, :2] = True
    m = _no_warnings(*confusion_counts(pred, ref))
    assert m["dice"] == 0.0 and m["iou"] == 0.0 and m["precision"] == 0.0
    assert np.isnan(m["sensitivity"])
    assert m["specificity"] == pytest.approx(22 / 24) and m["accuracy"] == pytest.approx(22 / 24)


def test_missed_structure():
    ref = np.zeros((2, 3, 4), dtype=bool)
    ref[1, 2, 3] = True
    m = _no_warnings(*confusion_counts(np.zeros_like(ref), ref))
    assert m["dice"] == 0.0 and m["iou"] == 0.0 and m["sensitivity"] == 0.0
    assert np.isnan(m["precision"])
    assert m["specificity"] == 1.0 and m["accuracy"] == pytest.approx(23 / 24)


def test_specificity_nan_only_without_negatives():
    ref = np.ones((2, 2, 2), dtype=bool)
    m = _no_warnings(*confusion_counts(ref, ref))
    assert np.isnan(m["specificity"])
    assert m["dice"] == 1.0 and m["accuracy"] == 1.0
    m = _no_warnings(*confusion_counts(~ref, ~ref))
    assert m["specificity"] == 1.0


def test_vectorised_mixed_cases():
    """Empty and non-empty cases in one call give each element its own convention."""
    tp = np.array([0, 0, 0, 5])
    fp = np.array([0, 3, 0, 1])
    fn = np.array([0, 0, 2, 4])
    tn = np.array([10, 7, 8, 0])
    m = _no_warnings(tp, fp, fn, tn)
    np.testing.assert_array_equal(m["dice"], [np.nan, 0.0, 0.0, 10 / 15])
    np.testing.assert_array_equal(m["sensitivity"], [np.nan, np.nan, 0.0, 5 / 9])
    np.testing.assert_array_equal(m["precision"], [np.nan, 0.0, np.nan, 5 / 6])
    np.testing.assert_array_equal(m["specificity"], [1.0, 0.7, 1.0, 0.0])
    assert all(v.dtype == np.float64 for v in m.values())


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        confusion_counts(np.zeros((2, 3)), np.zeros((3, 2)))


def test_fbeta_one_is_dice_and_volumes_in_ml():
    tp, fp, fn = np.array([10, 0, 0]), np.array([3, 0, 4]), np.array([5, 0, 0])
    dice = overlap_metrics(tp, fp, fn, np.array([100, 100, 100]))["dice"]
    np.testing.assert_allclose(fbeta(tp, fp, fn, 1.0), dice, equal_nan=True)
    assert np.isnan(fbeta(tp, fp, fn, 2.0)[1]) and fbeta(tp, fp, fn, 2.0)[2] == 0.0
    volumes = volumes_ml(tp, fp, fn, voxel_mm3=2.5)
    np.testing.assert_allclose(volumes["volume_ref_ml"], [0.0375, 0.0, 0.0])
    np.testing.assert_allclose(volumes["volume_pred_ml"], [0.0325, 0.0, 0.01])
