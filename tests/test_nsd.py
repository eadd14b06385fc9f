"""The normalised surface Dice (`segsweep.evaluate.distances`) against an independent
implementation, MONAI's `compute_surface_dice` (`use_subvoxels=False`, its default): the same
surface voxels as MONAI's `get_mask_edges`, the same values to MONAI's float32 precision on
anisotropic grids, tolerances on and off the voxel lattice, masks cut by the image border, and
the same empty conventions."""

from __future__ import annotations

import argparse
import math
import warnings

import jsonschema
import numpy as np
import pytest
import torch
from monai.metrics import compute_surface_dice
from monai.metrics.utils import get_mask_edges
from scipy import ndimage

from segsweep.cli import add_nsd_tolerance_option
from segsweep.config_schema import defaults, schema, section
from segsweep.evaluate.distances import normalised_surface_dice, surface, surface_distances

# multiples of an axis's spacing (ties: 0.7, 1.4 with 0.7 mm; 0.5, 1.0, 2.0 with 0.5 mm; 3.0)
# and values between them
TOLERANCES = (0.5, 0.7, 1.0, 1.3, 1.4, 2.0, 2.6, 3.0, 5.0)
SPACINGS = ((3.0, 0.7, 0.5), (0.5, 2.5, 1.3), (1.0, 1.0, 1.0))


def monai_nsd(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...], tau: float) -> float:
    """MONAI's NSD of two boolean volumes: one batch, one class (no background channel to
    drop), the spacing in the volumes' axis order."""
    y_pred, y = (torch.from_numpy(m[None, None].astype(np.float32)) for m in (pred, ref))
    with warnings.catch_warnings():  # MONAI warns on an empty mask
        warnings.simplefilter("ignore")
        nsd = compute_surface_dice(y_pred, y, [tau], include_background=True, spacing=spacing)
    return float(nsd[0, 0])


def _blob(shape: tuple[int, ...], rng: np.random.Generator, density: float) -> np.ndarray:
    """A smooth random blob (its surface is not noise); dense ones reach the image border."""
    noise = ndimage.gaussian_filter(rng.random(shape), sigma=1.5)
    return noise > np.quantile(noise, 1 - density)


def _case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random shape; the prediction a noisy copy of the reference or another blob; both cut
    by the border (a full first slice, a full last column)."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(4, 20, size=3))
    ref = _blob(shape, rng, rng.uniform(0.05, 0.6))
    if seed % 2:
        pred = _blob(shape, rng, rng.uniform(0.05, 0.6))
    else:
        pred = ref ^ (rng.random(shape) < 0.05)
    ref[0], pred[..., -1] = True, True
    return pred, ref


@pytest.mark.parametrize("seed", range(8))
def test_our_surface_is_monai_s_edges(seed):
    """MONAI's edges (scipy's face erosion XOR the mask, after a crop padded with background)
    are our surface voxels, on the whole grid and in number after its crop."""
    pred, ref = _case(seed)
    assert surface(ref)[0].all()  # the border counts as outside: a full slice is surface
    whole = get_mask_edges(pred, ref, crop=False)
    np.testing.assert_array_equal(whole[0], surface(pred))
    np.testing.assert_array_equal(whole[1], surface(ref))
    cropped = get_mask_edges(pred, ref, crop=True)  # what compute_surface_dice uses
    assert [int(e.sum()) for e in cropped] == [int(surface(m).sum()) for m in (pred, ref)]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("spacing", SPACINGS)
def test_nsd_agrees_with_monai(seed, spacing):
    pred, ref = _case(seed)
    for tau in TOLERANCES:
        ours = normalised_surface_dice(pred, ref, spacing, tau)
        assert 0.0 <= ours <= 1.0
        assert ours == pytest.approx(monai_nsd(pred, ref, spacing, tau), abs=1e-6), tau
        assert surface_distances(pred, ref, spacing, tau)["nsd"] == ours


@pytest.mark.parametrize("seed", range(4))
def test_a_voxel_exactly_tau_away_counts_as_in_monai(seed):
    """k voxels of 0.1 mm are 0.30000000000000004 mm in floating point: at τ = 0.3 mm they
    still count, as in MONAI (whose float32 distances round onto τ)."""
    pred, ref = _case(seed)
    spacing = (1.0, 0.1, 0.1)
    for tau in (0.1, 0.2, 0.3, 0.7):
        ours = normalised_surface_dice(pred, ref, spacing, tau)
        assert ours == pytest.approx(monai_nsd(pred, ref, spacing, tau), abs=1e-6), tau


def test_a_shift_by_one_slice_is_within_one_slice_thickness():
    ref = np.zeros((10, 10, 10), bool)
    ref[2:5, 2:8, 2:8] = True
    pred = np.roll(ref, 1, axis=0)
    spacing = (3.0, 1.0, 1.0)
    assert normalised_surface_dice(pred, ref, spacing, 3.0) == 1.0
    below = normalised_surface_dice(pred, ref, spacing, 2.9)
    assert 0.0 < below < 1.0
    assert below == pytest.approx(monai_nsd(pred, ref, spacing, 2.9), abs=1e-6)
    assert normalised_surface_dice(ref, ref, spacing, 0.1) == 1.0


def test_empty_conventions_are_monai_s():
    """Both empty: NaN (undefined, as Dice and HD95 here), as MONAI; one empty (a missed
    structure, or false positives only): 0, as MONAI — no convention differs. (HD95 and ASSD,
    not MONAI's here, take the image diagonal when one is empty: tests/test_distances.py.)"""
    empty = np.zeros((4, 6, 8), bool)
    full = empty.copy()
    full[0, 2:4, 3:8] = True  # on the border
    spacing = (3.0, 0.7, 0.5)
    assert math.isnan(normalised_surface_dice(empty, empty, spacing, 1.0))
    assert math.isnan(monai_nsd(empty, empty, spacing, 1.0))
    for pred, ref in [(empty, full), (full, empty)]:
        assert normalised_surface_dice(pred, ref, spacing, 1.0) == 0.0
        assert monai_nsd(pred, ref, spacing, 1.0) == 0.0


@pytest.mark.parametrize("tau", [0.0, -1.0, math.nan])
def test_a_tolerance_must_be_positive(tau):
    mask = np.ones((2, 2, 2), bool)
    with pytest.raises(ValueError, match="tolerance"):
        normalised_surface_dice(mask, mask, (1.0, 1.0, 1.0), tau)
    with pytest.raises(ValueError, match="tolerance"):
        surface_distances(mask, mask, (1.0, 1.0, 1.0), tau)


def test_the_tolerance_is_a_config_key_in_mm_above_zero():
    """`metrics.nsd_tolerance_mm`: a number > 0 (schema default 1 mm); the stages' option
    takes the schema's default and refuses what the schema refuses."""
    assert defaults("metrics") == {"nsd_tolerance_mm": 1.0}
    jsonschema.validate({"metrics": {"nsd_tolerance_mm": 0.25}}, schema())
    for bad in (0, -1.0, "1mm"):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"nsd_tolerance_mm": bad}, section("metrics"))
    parser = argparse.ArgumentParser()
    add_nsd_tolerance_option(parser)
    assert parser.parse_args([]).nsd_tolerance_mm == 1.0
    assert parser.parse_args(["--nsd-tolerance-mm", "2.5"]).nsd_tolerance_mm == 2.5
    with pytest.raises(SystemExit):
        parser.parse_args(["--nsd-tolerance-mm", "0"])
