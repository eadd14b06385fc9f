"""Surface metrics in mm between a predicted and a reference 3D mask: HD95, ASSD and the
normalised surface Dice (NSD) at a tolerance τ in mm.

Conventions (stated in the report):

- a voxel belongs to the surface of a mask when it is in the mask and at least one of its six
  face neighbours is not (voxels outside the image count as background);
- distances are Euclidean between voxel centres, in mm (the grid's spacing), from each surface
  voxel of one mask to the nearest surface voxel of the other;
- HD95 = max of the two directed 95th percentiles (prediction → reference, reference →
  prediction), as MONAI's `compute_hausdorff_distance(percentile=95)`;
- ASSD = mean of the pooled distances of both directions (MONAI's symmetric average surface
  distance);
- NSD (Metrics Reloaded's boundary metric, Nikolov et al. 2021) = (surface voxels of the
  prediction within τ of the reference surface + surface voxels of the reference within τ of the
  prediction surface) / (surface voxels of both), each surface voxel weighing one (not its
  surface area); "within" is distance ≤ τ, so a voxel exactly τ away counts (up to a relative
  slack of `TIES` for the rounding of k · spacing). This is MONAI's
  `compute_surface_dice(use_subvoxels=False)`: it counts the voxels of `get_mask_edges`, the
  same surface as ours (scipy's face erosion, the border padded with background), and agrees
  to its float32 precision (tests/test_nsd.py);
- reference and prediction both empty: NaN (undefined, like Dice) for all three, as MONAI's NSD;
- exactly one of them empty (a missed structure, or false positives only): the worst case —
  HD95 and ASSD the diagonal of the image in mm, sqrt(Σ (size_i · spacing_i)²) over the axes of
  the grid the masks lie on, NSD 0 (no surface voxel is within τ of a surface that does not
  exist; MONAI gives 0 too) — never NaN;
- the spacing is the grid's own (mm) and τ the config's `metrics.nsd_tolerance_mm`; callers
  pass both, there is no default. τ is in mm of the grid the masks lie on (the cropped grid in
  the processed space, the original image in the native space).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

FACES = ndimage.generate_binary_structure(3, 1)
# relative slack of "within τ": a distance of k voxels is k · spacing in floating point
# (3 × 0.1 mm = 0.30000000000000004), which must still count as within τ = 0.3 mm
TIES = 1e-9


def surface(mask: np.ndarray) -> np.ndarray:
    """Mask voxels with a face neighbour outside the mask (the image border counts as outside)."""
    mask = np.asarray(mask, dtype=bool)
    eroded = ndimage.binary_erosion(mask, structure=FACES, border_value=0)
    return mask & ~eroded


def diagonal_mm(shape: tuple[int, ...], spacing: tuple[float, ...]) -> float:
    """Length of the image diagonal in mm, sqrt(Σ (n_i · s_i)²) (the full extent of every axis,
    not between the outermost voxel centres): the worst-case distance."""
    return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing, strict=True))))


def directed_distances(
    from_surface: np.ndarray, to_surface: np.ndarray, spacing: tuple[float, ...]
) -> np.ndarray:
    """Distance (mm) of every voxel of `from_surface` to the nearest voxel of `to_surface`."""
    field = ndimage.distance_transform_edt(~to_surface, sampling=spacing)
    return field[from_surface]


def patient_volume(slices: np.ndarray, slice_id: np.ndarray) -> np.ndarray:
    """A patient's boolean volume [z, H, W] from its slices [n, H, W] at `slice_id`: as deep as
    its last slice id, slices the split does not hold empty."""
    slice_id = np.asarray(slice_id)
    volume = np.zeros((int(slice_id.max()) + 1, *slices.shape[1:]), dtype=bool)
    volume[slice_id] = slices
    return volume


def _checked(
    pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...], nsd_tolerance_mm: float
) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Boolean masks of one shape, the spacing as floats, a tolerance > 0 mm."""
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} != reference shape {ref.shape}")
    if not nsd_tolerance_mm > 0:
        raise ValueError(f"the NSD tolerance must be > 0 mm, not {nsd_tolerance_mm}")
    return pred, ref, tuple(float(s) for s in spacing)


def _both_directions(
    pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) of the prediction's surface voxels to the reference surface, and of the
    reference's to the prediction's, of two non-empty masks."""
    pred_surface, ref_surface = surface(pred), surface(ref)
    return (
        directed_distances(pred_surface, ref_surface, spacing),
        directed_distances(ref_surface, pred_surface, spacing),
    )


def _nsd(d_pred: np.ndarray, d_ref: np.ndarray, tolerance_mm: float) -> float:
    """The share of both surfaces' voxels within `tolerance_mm` of the other surface."""
    reach = tolerance_mm * (1 + TIES)
    within = np.count_nonzero(d_pred <= reach) + np.count_nonzero(d_ref <= reach)
    return within / (d_pred.size + d_ref.size)


def normalised_surface_dice(
    pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...], tolerance_mm: float
) -> float:
    """NSD at `tolerance_mm` of two boolean volumes (z, y, x) with spacing (z, y, x) in mm:
    NaN when both are empty, 0 when one is."""
    pred, ref, spacing = _checked(pred, ref, spacing, tolerance_mm)
    has_pred, has_ref = pred.any(), ref.any()
    if not (has_pred and has_ref):
        return math.nan if not (has_pred or has_ref) else 0.0
    return _nsd(*_both_directions(pred, ref, spacing), tolerance_mm)


def surface_distances(
    pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...], nsd_tolerance_mm: float
) -> dict[str, float]:
    """{"hd95": …, "assd": …, "nsd": …} of two boolean volumes (z, y, x) with spacing (z, y, x):
    HD95 and ASSD in mm, NSD at `nsd_tolerance_mm`, from one pair of distance transforms."""
    pred, ref, spacing = _checked(pred, ref, spacing, nsd_tolerance_mm)
    has_pred, has_ref = pred.any(), ref.any()
    if not has_pred and not has_ref:
        return {"hd95": math.nan, "assd": math.nan, "nsd": math.nan}
    if not (has_pred and has_ref):
        worst = diagonal_mm(pred.shape, spacing)
        return {"hd95": worst, "assd": worst, "nsd": 0.0}
    d_pred, d_ref = _both_directions(pred, ref, spacing)
    hd95 = max(float(np.percentile(d_pred, 95)), float(np.percentile(d_ref, 95)))
    assd = float(np.concatenate([d_pred, d_ref]).mean())
    return {"hd95": hd95, "assd": assd, "nsd": _nsd(d_pred, d_ref, nsd_tolerance_mm)}
