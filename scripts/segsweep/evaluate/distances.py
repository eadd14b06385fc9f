"""Surface distances in mm between a predicted and a reference 3D mask: HD95 and ASSD.

Conventions (stated in the report):

- a voxel belongs to the surface of a mask when it is in the mask and at least one of its six
  face neighbours is not (voxels outside the image count as background);
- distances are Euclidean between voxel centres, in mm (the grid's spacing), from each surface
  voxel of one mask to the nearest surface voxel of the other;
- HD95 = max of the two directed 95th percentiles (prediction → reference, reference →
  prediction), as MONAI's `compute_hausdorff_distance(percentile=95)`;
- ASSD = mean of the pooled distances of both directions (MONAI's symmetric average surface
  distance);
- reference and prediction both empty: NaN (undefined, like Dice);
- exactly one of them empty (a missed structure, or false positives only): the worst case, the
  diagonal of the image in mm, sqrt(Σ (size_i · spacing_i)²) over the axes of the grid the
  masks lie on — never NaN;
- the spacing is the grid's own (mm); callers pass it, there is no default.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

FACES = ndimage.generate_binary_structure(3, 1)


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


def surface_distances(
    pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...]
) -> dict[str, float]:
    """{"hd95": …, "assd": …} in mm of two boolean volumes (z, y, x) with spacing (z, y, x)."""
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} != reference shape {ref.shape}")
    spacing = tuple(float(s) for s in spacing)
    has_pred, has_ref = pred.any(), ref.any()
    if not has_pred and not has_ref:
        return {"hd95": math.nan, "assd": math.nan}
    if not (has_pred and has_ref):
        worst = diagonal_mm(pred.shape, spacing)
        return {"hd95": worst, "assd": worst}
    pred_surface, ref_surface = surface(pred), surface(ref)
    d_pred = directed_distances(pred_surface, ref_surface, spacing)
    d_ref = directed_distances(ref_surface, pred_surface, spacing)
    hd95 = max(float(np.percentile(d_pred, 95)), float(np.percentile(d_ref, 95)))
    assd = float(np.concatenate([d_pred, d_ref]).mean())
    return {"hd95": hd95, "assd": assd}
