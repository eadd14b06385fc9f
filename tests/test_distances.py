"""HD95 and ASSD agree with distances from SimpleITK's Maurer distance maps and its contour filter,
and follow the empty conventions (missed structure → image diagonal, never NaN). The NSD beside
them is checked against MONAI in tests/test_nsd.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from segsweep.evaluate.distances import diagonal_mm, surface, surface_distances

TAU = 1.0  # the NSD's tolerance (mm): HD95 and ASSD do not depend on it


def _sitk_surface(mask: np.ndarray) -> np.ndarray:
    """Face-connected contour of a mask from SimpleITK (padded: the border counts as outside)."""
    image = sitk.ConstantPad(sitk.GetImageFromArray(mask.astype(np.uint8)), [1] * 3, [1] * 3, 0)
    contour = sitk.BinaryContour(image, fullyConnected=False, backgroundValue=0, foregroundValue=1)
    return sitk.GetArrayFromImage(contour)[1:-1, 1:-1, 1:-1].astype(bool)


def _sitk_distance_to(target: np.ndarray, spacing_zyx: tuple[float, ...]) -> np.ndarray:
    """Distance in mm of every voxel to the nearest voxel of `target` (0 on it), from ITK."""
    image = sitk.GetImageFromArray(target.astype(np.uint8))
    image.SetSpacing(spacing_zyx[::-1])
    field = sitk.SignedMaurerDistanceMap(
        image, insideIsPositive=False, squaredDistance=False, useImageSpacing=True
    )
    return np.where(target, 0.0, sitk.GetArrayFromImage(field))


def _reference(pred, ref, spacing):
    sp, sr = _sitk_surface(pred), _sitk_surface(ref)
    d_pred = _sitk_distance_to(sr, spacing)[sp]
    d_ref = _sitk_distance_to(sp, spacing)[sr]
    hd95 = max(np.percentile(d_pred, 95), np.percentile(d_ref, 95))
    return hd95, np.concatenate([d_pred, d_ref]).mean()


def _blob(shape, rng, density):
    """A smooth random blob, so that surfaces are not just noise."""
    from scipy import ndimage

    noise = ndimage.gaussian_filter(rng.random(shape), sigma=1.5)
    return noise > np.quantile(noise, 1 - density)


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_simpleitk_distance_maps(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(5, 24, size=3))
    spacing = tuple(float(s) for s in rng.uniform(0.4, 4.0, size=3))
    ref = _blob(shape, rng, rng.uniform(0.05, 0.4))
    pred = (
        _blob(shape, rng, rng.uniform(0.05, 0.4)) if seed % 2 else ref ^ (rng.random(shape) < 0.05)
    )
    np.testing.assert_array_equal(surface(ref), _sitk_surface(ref))
    ours = surface_distances(pred, ref, spacing, TAU)
    hd95, assd = _reference(pred, ref, spacing)
    assert ours["hd95"] == pytest.approx(hd95, abs=1e-6)
    assert ours["assd"] == pytest.approx(assd, abs=1e-6)


def test_full_hausdorff_bound_by_simpleitk():
    """HD95 never exceeds SimpleITK's (100 %) Hausdorff distance of the same masks."""
    rng = np.random.default_rng(3)
    ref, pred = _blob((12, 20, 20), rng, 0.2), _blob((12, 20, 20), rng, 0.2)
    spacing = (3.0, 0.8, 0.8)
    images = []
    for mask in (pred, ref):
        image = sitk.GetImageFromArray(mask.astype(np.uint8))
        image.SetSpacing(spacing[::-1])
        images.append(image)
    hausdorff = sitk.HausdorffDistanceImageFilter()
    hausdorff.Execute(*images)
    assert (
        0 < surface_distances(pred, ref, spacing, TAU)["hd95"] <= hausdorff.GetHausdorffDistance()
    )


def test_identical_masks_have_zero_distance():
    mask = np.zeros((5, 8, 8), bool)
    mask[1:4, 2:6, 2:6] = True
    assert surface_distances(mask, mask, (2.0, 1.0, 1.0), TAU) == {
        "hd95": 0.0,
        "assd": 0.0,
        "nsd": 1.0,
    }


def test_shift_by_one_slice_is_the_slice_thickness():
    ref = np.zeros((10, 10, 10), bool)
    ref[2:5, 2:8, 2:8] = True
    pred = np.roll(ref, 1, axis=0)
    assert surface_distances(pred, ref, (3.0, 1.0, 1.0), TAU)["hd95"] == pytest.approx(3.0)


def test_empty_conventions():
    empty = np.zeros((4, 6, 8), bool)
    full = empty.copy()
    full[1, 2, 3] = True
    spacing = (3.0, 1.5, 0.5)
    diagonal = math.sqrt(12.0**2 + 9.0**2 + 4.0**2)
    assert diagonal_mm(empty.shape, spacing) == pytest.approx(diagonal)
    both = surface_distances(empty, empty, spacing, TAU)
    assert math.isnan(both["hd95"]) and math.isnan(both["assd"]) and math.isnan(both["nsd"])
    for pred, ref in [(empty, full), (full, empty)]:  # missed structure, false positives only
        found = surface_distances(pred, ref, spacing, TAU)
        assert found == {"hd95": diagonal, "assd": diagonal, "nsd": 0.0}
