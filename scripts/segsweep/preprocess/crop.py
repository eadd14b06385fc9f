"""Crop one subject around its crop centre and harmonise its slice count.

The raw field of view shows much of thigh and shin; only a square window around the point where
femur and tibia meet matters (thesis 4.3.1). The centre is found from the image alone, so
unlabelled subjects are cropped the same way: the knee joint for the synthetic knee cohort, the
foreground centroid for brought data (`centre: auto`). Its record (centre.json) also holds, for
a labelled subject, each class's extent around it, from which `crop_plan` sizes the window
(`window_mm: auto`). In-plane the window is resampled to size x size; across slices nothing is
interpolated (masks of neighbouring slices would blend): slices are only padded and subsampled
(thesis: 41 -> pad to 48 -> every 2nd -> 24).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage

from segsweep.config_schema import complete, defaults
from segsweep.errors import ConfigError, InputError
from segsweep.io.images import CANONICAL, blank, read_volume, write_image
from segsweep.io.records import named_paths, read_json, write_csv, write_json
from segsweep.layout import CROP_CENTRE, CROP_DIR, CROP_MASK_RECORD, CROP_RECORD, under
from segsweep.preprocess.crop_plan import (
    AUTO,
    KEPT_MINIMUM,
    PLANNING_SPLITS,
    half_extent,
    plan_crop,
    resolve_centre,
)

log = logging.getLogger(__name__)

# Joint detector scales, in mm (tuned on the synthetic cohort, plausible for real knees).
DETECT_MM = 1.0  # in-plane pixel size the detector works at (coarser is kept)
SMOOTH_MM = 1.5  # in-plane denoising before thresholding
FAT_MM = 12.0  # subcutaneous fat band removed by eroding the body outline
CENTRAL_MM = 15.0  # half-thickness of the slab of central (coronal) slices
PROFILE_MM = 3.0  # smoothing of the row profile: washes out thin growth plates, keeps the gap
FLANK_MM = 25.0  # how far above/below a candidate gap bone must be present
BAND_MM = 10.0  # rows above/below the gap that must hold marrow (left-right, slice centre)
GAP_MM = 3.0  # half-height of the rows taken as the joint gap itself
EDGE_LEVEL = 0.25  # bone edge = this fraction of the way from gap to flank (condyles are round)


# ---------------------------------------------------------------------------------------------
# joint centre


def _bright_interior(array: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Voxels of bright marrow inside the leg, excluding the subcutaneous fat ring.

    T1 marrow and fat are both bright. Fat lies under the skin, so voxels closer than FAT_MM to
    the body outline of their slice are dropped; image borders do not count as outline, so legs
    cut by the field of view keep their bone.
    """
    sx, sy, _ = spacing
    smooth = ndimage.gaussian_filter(array, (0, SMOOTH_MM / sy, SMOOTH_MM / sx))
    top = float(np.percentile(smooth, 99.5))
    body = smooth > 0.15 * top
    if not body.any():
        return body
    bright = smooth > _otsu(smooth[body])
    interior = np.empty_like(body)
    for k in range(body.shape[0]):
        filled = ndimage.binary_fill_holes(body[k])
        interior[k] = ndimage.distance_transform_edt(filled, sampling=(sy, sx)) > FAT_MM
    return bright & interior


def _otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu threshold of a 1-D sample (between-class variance maximum)."""
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(hist)
    total = weight[-1]
    mean = np.cumsum(hist * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mean[-1] * weight / total - mean) ** 2 / (weight * (total - weight))
    return float(centres[np.nanargmax(between[:-1])])


def _gap_row(profile: np.ndarray, sy: float) -> float | None:
    """Sub-row position of the joint gap in a marrow-fraction row profile (None if no gap).

    The gap is the deepest dip with marrow within FLANK_MM above and below; its position is the
    midpoint of the two bone edges, where the profile climbs EDGE_LEVEL of the way from the dip
    to each flank (robust to asymmetric dips: round condyles above, a flat plateau below).
    """
    smooth = ndimage.gaussian_filter1d(profile, PROFILE_MM / sy, mode="nearest")
    n = smooth.size
    reach = max(2, round(FLANK_MM / sy))
    above = np.array([smooth[max(0, r - reach) : r + 1].max() for r in range(n)])
    below = np.array([smooth[r : r + reach + 1].max() for r in range(n)])
    score = np.minimum(above, below) - smooth
    best = int(np.argmax(score))
    if score[best] <= 0.05:
        return None
    dip = smooth[best]
    top = _crossing(smooth, best, dip + EDGE_LEVEL * (above[best] - dip), -1)
    bottom = _crossing(smooth, best, dip + EDGE_LEVEL * (below[best] - dip), +1)
    return (top + bottom) / 2


def _crossing(values: np.ndarray, start: int, level: float, direction: int) -> float:
    """Fractional index where `values` first rises to `level` walking from `start`."""
    r = start
    while 0 <= r + direction < values.size and values[r + direction] < level:
        r += direction
    nxt = r + direction
    if not 0 <= nxt < values.size:
        return float(r)
    span = values[nxt] - values[r]
    t = (level - values[r]) / span if span > 0 else 0.0
    return r + direction * float(np.clip(t, 0.0, 1.0))


def _bands(bone: np.ndarray, row: float, sy: float, axis: int | tuple[int, ...]) -> list:
    """Marrow fraction above the gap, in the gap and below it at `row`, averaged over `axis`
    of the (slice, row, column) array (1: per slice and column; (1, 2): per slice)."""
    ny = bone.shape[1]
    r0 = round(row)
    gap = max(1, round(GAP_MM / sy))
    band = max(1, round(BAND_MM / sy))
    parts = (
        bone[:, max(0, r0 - gap - band) : max(0, r0 - gap)],
        bone[:, max(0, r0 - gap + 1) : r0 + gap],
        bone[:, min(ny, r0 + gap + 1) : min(ny, r0 + gap + 1 + band)],
    )
    empty = np.zeros_like(bone[:, :1].mean(axis=axis))
    return [p.mean(axis=axis) if p.shape[1] else empty for p in parts]


def _slice_centre(bone: np.ndarray, row: float, sy: float, default: float) -> float:
    """Centroid over slices of the gap contrast at `row`: marrow both above and below while the
    gap is dark. High only where condyles face the plateau, not in the fat pads in front of and
    behind the joint, which are bright in the gap rows."""
    above, inside, below = _bands(bone, row, sy, axis=(1, 2))
    contrast = np.clip(np.minimum(above, below) - inside, 0.0, None)
    if contrast.sum() == 0:
        return default
    return float(np.average(np.arange(bone.shape[0]), weights=contrast))


def _column_centre(bone: np.ndarray, row: float, sy: float, default: float) -> float:
    """Centroid over columns of marrow next to the gap, per slice discounted where the gap rows
    are bright too (fat cut by the image border is bright in every row)."""
    above, inside, below = _bands(bone, row, sy, axis=1)
    weights = ((above + below) * (1.0 - inside)).sum(axis=0)
    if weights.sum() == 0:
        return default
    return float(np.average(np.arange(bone.shape[2]), weights=weights))


def _slab(bone: np.ndarray, k_centre: float, sz: float) -> np.ndarray:
    """The central slices: within CENTRAL_MM of `k_centre`."""
    half = round(CENTRAL_MM / sz)
    return bone[max(0, round(k_centre) - half) : round(k_centre) + half + 1]


def _detection_grid(image: sitk.Image) -> sitk.Image:
    """Average fine in-plane pixels down to about DETECT_MM: the detector's features are several
    mm wide, and full-resolution images (0.2 mm) would only cost time."""
    factors = [max(1, int(DETECT_MM / s)) for s in image.GetSpacing()[:2]] + [1]
    if max(factors) == 1:
        return image
    return sitk.BinShrink(sitk.Cast(image, sitk.sitkFloat32), factors)


def find_joint_centre(image: sitk.Image) -> tuple[float, float, float]:
    """Physical point (mm) of the knee joint centre, from the image alone.

    In canonical coronal slices the joint is a dark horizontal gap between bright femoral condyles
    above and the bright tibial plateau below (T1: bright marrow, dark cortex and cartilage).
    Row: the gap in the row profile of marrow fraction over the central slices (thin growth plates
    are smoothed away, the wider joint gap is not). Slice: centroid of the per-slice gap
    contrast. Column: centroid of marrow just above and below the gap (the fibula lies lower).
    The slab of central slices starts around the marrow centroid and is refined once.
    Falls back to the image centre, with a warning, if no gap is found.
    """
    lip = _detection_grid(sitk.DICOMOrient(image, CANONICAL))
    array = sitk.GetArrayFromImage(lip).astype(np.float32)
    sx, sy, sz = lip.GetSpacing()
    nz, ny, nx = array.shape
    bone = _bright_interior(array, (sx, sy, sz))
    centre = [(nx - 1) / 2, (ny - 1) / 2, (nz - 1) / 2]
    per_slice = bone.sum(axis=(1, 2)).astype(float)
    k_centre = float(np.average(np.arange(nz), weights=per_slice)) if per_slice.any() else centre[2]
    row = None
    for _ in range(2):
        row = _gap_row(_slab(bone, k_centre, sz).mean(axis=(0, 2)), sy)
        if row is None:
            log.warning("no joint gap found; using the image centre as joint centre")
            return lip.TransformContinuousIndexToPhysicalPoint(centre)
        k_centre = _slice_centre(bone, row, sy, default=k_centre)
    column = _column_centre(_slab(bone, k_centre, sz), row, sy, default=centre[0])
    return lip.TransformContinuousIndexToPhysicalPoint((column, row, k_centre))


CENTRES = ("joint", "foreground", "image", "fixed")


def foreground_centre(image: sitk.Image) -> tuple[float, float, float]:
    """Physical centroid of the Otsu foreground (the body, for anatomies without a joint gap)."""
    if image.GetNumberOfComponentsPerPixel() > 1:
        image = sitk.VectorIndexSelectionCast(image, 0)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(sitk.OtsuThreshold(sitk.Cast(image, sitk.sitkFloat32), 0, 1))
    if 1 not in stats.GetLabels():
        log.warning("empty foreground; using the image centre")
        return image_centre(image)
    return stats.GetCentroid(1)


def image_centre(image: sitk.Image) -> tuple[float, float, float]:
    """Physical centre of the image grid."""
    return image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()])


def find_centre(
    image: sitk.Image, method: str = "joint", point_mm: list[float] | None = None
) -> tuple[float, float, float]:
    """The crop centre by the configured method (preprocess.crop.centre)."""
    if method == "joint":
        if image.GetNumberOfComponentsPerPixel() > 1:
            image = sitk.VectorIndexSelectionCast(image, 0)
        return find_joint_centre(image)
    if method == "foreground":
        return foreground_centre(image)
    if method == "image":
        return image_centre(image)
    if method == "fixed":
        if point_mm is None or len(point_mm) != 3:
            raise ConfigError("preprocess.crop.centre_mm", point_mm, "[x, y, z] in mm for 'fixed'")
        return tuple(float(v) for v in point_mm)
    raise ConfigError("preprocess.crop.centre", method, " | ".join(CENTRES))


MEET_MM = 16.0  # two classes at most this far apart meet (the knee's joint gap is about 6-8 mm)


def mask_centre(mask: sitk.Image, labels: dict[str, int]) -> tuple[float, float, float] | None:
    """Reference centre from a label map: centroid of the widest interface where two classes
    meet, the voxels about as far from one class as from the other (within a voxel) and
    together at most MEET_MM from both. For the knee that is the surface midway between femur
    and tibia across the joint gap (cartilage and fluid, about 6-8 mm from bone to bone); the
    tibia faces the fibula over a smaller area. The centroid of all labelled voxels when no
    two classes meet; None for an empty mask."""
    lip = sitk.DICOMOrient(mask, CANONICAL)
    array = sitk.GetArrayViewFromImage(lip)
    sx, sy, sz = lip.GetSpacing()
    present = [v for v in labels.values() if np.any(array == v)]
    if not present:
        return None
    distance = {
        v: ndimage.distance_transform_edt(array != v, sampling=(sz, sy, sx)).astype(np.float32)
        for v in present
    }
    band = max(sx, sy, sz)  # the difference changes by up to 2 voxels' width per voxel
    zone, widest = np.isin(array, present), 0
    for a, b in itertools.combinations(present, 2):
        da, db = distance[a], distance[b]
        meet = (np.abs(da - db) <= band) & (da + db <= MEET_MM)
        if np.count_nonzero(meet) > widest:
            zone, widest = meet, int(np.count_nonzero(meet))
    k, j, i = (float(c.mean()) for c in np.nonzero(zone))
    return lip.TransformContinuousIndexToPhysicalPoint((i, j, k))


def label_extents(
    mask: sitk.Image, centre_mm: tuple[float, float, float], labels: dict[str, int]
) -> dict[str, list[float] | None]:
    """In-plane extent of each class around the crop centre: [x_min, x_max, y_min, y_max], the
    offsets (mm) of its outermost voxel centres from `centre_mm` along the canonical columns
    (x, to the patient's left) and rows (y, inferior), over all slices; None if absent. A window
    of side 2 * max |offset| around the centre holds every voxel of the class."""
    lip = sitk.DICOMOrient(mask, CANONICAL)
    array = sitk.GetArrayViewFromImage(lip)
    sx, sy, _ = lip.GetSpacing()
    ci, cj, _ = lip.TransformPhysicalPointToContinuousIndex(tuple(centre_mm))
    extents: dict[str, list[float] | None] = {}
    for name, value in labels.items():
        voxels = array == value
        columns = np.flatnonzero(voxels.any(axis=(0, 1)))
        rows = np.flatnonzero(voxels.any(axis=(0, 2)))
        if not columns.size:
            extents[name] = None
            continue
        extents[name] = [
            float((columns[0] - ci) * sx),
            float((columns[-1] - ci) * sx),
            float((rows[0] - cj) * sy),
            float((rows[-1] - cj) * sy),
        ]
    return extents


def centre_record(
    image: sitk.Image,
    cfg: Mapping[str, Any],
    mask: sitk.Image | None = None,
    labels: dict[str, int] | None = None,
) -> dict[str, Any]:
    """One subject's centre.json: the crop centre found from the image alone by
    `cfg["centre"]` (resolved, not auto) and, for a labelled subject, the extent of each class
    around it (`label_extents`) with its largest half-extent, which a planned window rests on."""
    method = cfg["centre"]
    centre = find_centre(image, method, cfg.get("centre_mm"))
    extents = label_extents(mask, centre, labels) if mask is not None and labels else None
    return {
        "centre_mm": [float(c) for c in centre],
        "centre_method": method,
        "extent_mm": extents,
        "half_extent_mm": half_extent(extents),
    }


# ---------------------------------------------------------------------------------------------
# slice harmonisation and cropping


def harmonise_slices(n: int, target: int) -> dict[str, Any]:
    """Which original slices make up `target` output slices, without interpolating across slices.

    n > target: pad symmetrically to the next multiple m*target and keep every m-th slice (of
    the m possible phases, the one keeping most real slices); n < target: pad with empty slices.
    `kept[j]` is the original index of output slice j, or None for a padding slice.
    """
    if n < 1 or target < 1:
        raise ValueError(f"slice counts must be positive (n={n}, target={target})")
    step = max(1, math.ceil(n / target))
    padding = step * target - n
    before, after = padding // 2, padding - padding // 2
    phases = [[p - before for p in range(phase, step * target, step)] for phase in range(step)]
    best = max(phases, key=lambda idx: sum(0 <= i < n for i in idx))
    return {
        "original": n,
        "target": target,
        "step": step,
        "padding": [before, after],
        "first": best[0],
        "kept": [i if 0 <= i < n else None for i in best],
    }


def _output_grid(
    image: sitk.Image,
    centre_mm: tuple[float, float, float],
    window_mm: float,
    size: int,
    slices: dict[str, Any],
) -> dict[str, Any]:
    """Origin/spacing/direction/size of the cropped grid (same axes as the canonical image)."""
    sx, sy, sz = image.GetSpacing()
    ci, cj, _ = image.TransformPhysicalPointToContinuousIndex(tuple(centre_mm))
    pixel = window_mm / size
    offset = (size - 1) / 2 * pixel
    corner = (ci - offset / sx, cj - offset / sy, float(slices["first"]))
    return {
        "origin": list(image.TransformContinuousIndexToPhysicalPoint(corner)),
        "spacing": [pixel, pixel, sz * slices["step"]],
        "direction": list(image.GetDirection()),
        "size": [size, size, slices["target"]],
    }


def _anti_alias(image: sitk.Image, pixel_mm: float) -> sitk.Image:
    """Gaussian blur in-plane only before downsampling (sigma = (factor - 1) / 2 pixels, the
    scikit-image convention); nothing across slices."""
    sx, sy, _ = image.GetSpacing()
    sigma = [max(0.0, (pixel_mm / s - 1) / 2) for s in (sy, sx)]
    if max(sigma) == 0:
        return image
    vector = image.GetNumberOfComponentsPerPixel() > 1
    array = sitk.GetArrayFromImage(image)
    array = ndimage.gaussian_filter(array, (0, *sigma, 0) if vector else (0, *sigma))
    out = sitk.GetImageFromArray(array, isVector=vector)
    out.CopyInformation(image)
    return out


def _float(image: sitk.Image) -> sitk.Image:
    """float32 voxels, keeping channels (one vector component per channel)."""
    multi = image.GetNumberOfComponentsPerPixel() > 1
    return sitk.Cast(image, sitk.sitkVectorFloat32 if multi else sitk.sitkFloat32)


def crop_subject(
    image: sitk.Image,
    centre_mm: tuple[float, float, float],
    window_mm: float = 90.0,
    size: int = 64,
    slices: int = 24,
) -> tuple[sitk.Image, dict[str, Any]]:
    """Square in-plane window around `centre_mm`, resampled to size x size, `slices` slices.

    Outside the image the window is padded with the image minimum. Slices are only padded and
    subsampled (see `harmonise_slices`), never interpolated. Returns the float32 crop and the
    crop record (crop.json) that `crop_mask` replays on the label map.
    """
    lip = _float(sitk.DICOMOrient(image, CANONICAL))
    plan = harmonise_slices(lip.GetSize()[2], slices)
    grid = _output_grid(lip, centre_mm, window_mm, size, plan)
    minimum = float(sitk.GetArrayViewFromImage(lip).min())
    cropped = sitk.Resample(
        _anti_alias(lip, window_mm / size),
        blank(grid, lip.GetPixelID(), lip.GetNumberOfComponentsPerPixel()),
        sitk.Transform(),
        sitk.sitkLinear,
        minimum,
        lip.GetPixelID(),
    )
    info = {
        "centre_mm": [float(c) for c in centre_mm],
        "centre_index": list(lip.TransformPhysicalPointToContinuousIndex(tuple(centre_mm))),
        "window_mm": float(window_mm),
        "size": grid["size"],
        "slices": plan,
        "pad_value": minimum,
        "input": {
            "size": list(lip.GetSize()),
            "spacing": list(lip.GetSpacing()),
            "origin": list(lip.GetOrigin()),
            "direction": list(lip.GetDirection()),
        },
        "output": grid,
    }
    return cropped, info


def _window_mask(mask: sitk.Image, info: dict[str, Any]) -> np.ndarray:
    """Boolean (1, y, x) array: voxels whose centres lie inside the in-plane window."""
    nx, ny, _ = mask.GetSize()
    sx, sy, _ = mask.GetSpacing()
    ci, cj, _ = mask.TransformPhysicalPointToContinuousIndex(tuple(info["centre_mm"]))
    half = info["window_mm"] / 2
    cols = np.abs((np.arange(nx) - ci) * sx) <= half
    rows = np.abs((np.arange(ny) - cj) * sy) <= half
    return (rows[:, None] & cols[None, :])[None]


def crop_mask(
    mask: sitk.Image, info: dict[str, Any], labels: dict[str, int] | None = None
) -> tuple[sitk.Image, dict[str, float]]:
    """Apply the image's crop to its label map (nearest neighbour, same slices).

    kept_fraction[class] = class volume inside the in-plane window (all slices, original grid) /
    class volume in the whole mask; NaN if the class is absent. Without `labels`, every non-zero
    value present is a class named by its value.
    """
    lip = sitk.DICOMOrient(mask, CANONICAL)
    array = sitk.GetArrayViewFromImage(lip)
    labels = labels or {str(v): int(v) for v in np.unique(array) if v != 0}
    inside = _window_mask(lip, info)
    kept = {}
    for name, value in labels.items():
        total = int(np.count_nonzero(array == value))
        kept[name] = (
            float(np.count_nonzero((array == value) & inside)) / total if total else float("nan")
        )
    cropped = sitk.Resample(
        lip,
        blank(info["output"], sitk.sitkUInt8),
        sitk.Transform(),
        sitk.sitkNearestNeighbor,
        0,
        sitk.sitkUInt8,
    )
    return cropped, kept


# ---------------------------------------------------------------------------------------------
# QC figure


def qc_figure(
    image: sitk.Image, cropped: sitk.Image, info: dict[str, Any], out_png: str | Path
) -> None:
    """Slice through the centre with the window and centre drawn, beside the cropped slice."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from segsweep.plotting import save, without_ticks

    lip = sitk.DICOMOrient(image, CANONICAL)
    array = sitk.GetArrayViewFromImage(lip)
    array = array[..., 0] if array.ndim == 4 else array  # first channel
    sx, sy, _ = lip.GetSpacing()
    ci, cj, ck = info["centre_index"]
    k = int(np.clip(round(ck), 0, array.shape[0] - 1))
    out = sitk.GetArrayViewFromImage(cropped)
    out = out[..., 0] if out.ndim == 4 else out
    kept = info["slices"]["kept"]
    real = [j for j, i in enumerate(kept) if i is not None]
    j = min(real, key=lambda j: abs(kept[j] - ck)) if real else out.shape[0] // 2
    low, high = np.percentile(array, [1, 99.5])

    fig = Figure(figsize=(9, 4.6), layout="tight")
    axes = fig.subplots(1, 2)
    ny, nx = array.shape[1:]
    extent = (-0.5 * sx, (nx - 0.5) * sx, (ny - 0.5) * sy, -0.5 * sy)  # mm, true aspect
    axes[0].imshow(array[k], cmap="gray", vmin=low, vmax=high, extent=extent)
    half = info["window_mm"] / 2
    axes[0].add_patch(
        Rectangle((ci * sx - half, cj * sy - half), 2 * half, 2 * half, fill=False, color="yellow")
    )
    axes[0].plot(ci * sx, cj * sy, "r+", markersize=14, markeredgewidth=2)
    axes[0].set_title(f"slice {k} of {array.shape[0]}, window {info['window_mm']:g} mm")
    axes[1].imshow(out[j], cmap="gray", vmin=low, vmax=high)
    axes[1].set_title(f"cropped slice {j} of {out.shape[0]} ({out.shape[2]}x{out.shape[1]})")
    without_ticks(axes)
    save(fig, out_png, dpi=80)


# ---------------------------------------------------------------------------------------------
# command line


def centre_error(
    info: dict[str, Any], reference: tuple[float, float, float] | None
) -> dict[str, Any]:
    """Detected crop centre against the mask-derived one: distance and per-axis offset in mm."""
    if reference is None:
        return {"mask_centre_mm": None, "centre_error_mm": None, "centre_offset_mm": None}
    offset = np.subtract(info["centre_mm"], reference)
    return {
        "mask_centre_mm": [float(v) for v in reference],
        "centre_error_mm": float(np.linalg.norm(offset)),
        "centre_offset_mm": [float(v) for v in offset],
    }


TABLE_CENTRE = ["subject_id", "method", "window_mm", "error_mm", "dx_mm", "dy_mm", "dz_mm"]


def cohort_tables(
    crop_records: Mapping[str, str | Path], mask_records: Mapping[str, str | Path]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Centre-error table (one row per labelled subject, sorted: centre method, crop window,
    distance and per-axis offset in mm of the detected centre from the mask-derived one) and
    kept-fraction table (subject_id, one column per class: fraction of its voxels inside the
    crop window; empty if absent), from each subject's crop.json and mask.json (subject →
    path)."""
    centre_rows, kept_rows = [], []
    for subject in sorted(mask_records):
        if subject not in crop_records:
            raise InputError(subject, str(mask_records[subject]), "no crop.json given for it")
        info, kept = read_json(crop_records[subject]), read_json(mask_records[subject])
        offset = kept.get("centre_offset_mm") or [None] * 3
        centre_rows.append(
            {
                "subject_id": subject,
                "method": info.get("centre_method", "joint"),
                "window_mm": info.get("window_mm"),
                "error_mm": kept.get("centre_error_mm"),
                "dx_mm": offset[0],
                "dy_mm": offset[1],
                "dz_mm": offset[2],
            }
        )
        kept_rows.append({"subject_id": subject, **kept["kept_fraction"]})
    return pd.DataFrame(centre_rows, columns=TABLE_CENTRE), pd.DataFrame(kept_rows)


def write_tables(
    crop_records: Mapping[str, str | Path],
    mask_records: Mapping[str, str | Path],
    out_centre: str | Path,
    out_kept: str | Path,
) -> None:
    """centre_error.csv and kept_fraction.csv of the labelled subjects (`cohort_tables`)."""
    centre, kept = cohort_tables(crop_records, mask_records)
    write_csv(centre, out_centre)
    write_csv(kept, out_kept)
    print(centre.to_string(index=False))


def write_plan(
    centre_records: Mapping[str, str | Path],
    splits_csv: str | Path,
    cfg: Mapping[str, Any],
    out_json: str | Path,
) -> dict[str, Any]:
    """plan.json from the subjects' centre.json files (subject → path) and splits.csv
    (`crop_plan.plan_crop`): only the records of train and val subjects are read."""
    cfg = complete(dict(cfg), "preprocess", "crop")
    splits = pd.read_csv(splits_csv, dtype={"subject_id": str})
    planning = set(splits.loc[splits["split"].isin(PLANNING_SPLITS), "subject_id"])
    records = {s: read_json(p) for s, p in centre_records.items() if s in planning}
    plan = plan_crop(records, splits, cfg["window_mm"], cfg["margin"])
    write_json(out_json, plan)
    print(
        f"crop window {plan['window_mm']:g} mm ({plan['window']}) around the "
        f"{plan['centre_method']} centre; widest labelled half-extent {plan['widest_mm']} mm "
        f"({plan['widest']}) over {plan['subjects']} train/val subjects"
    )
    return plan


def window_of(cfg: Mapping[str, Any], plan: Mapping[str, Any] | None) -> float:
    """The crop window (mm): the configured one, or the plan's when `window_mm` is auto."""
    if cfg["window_mm"] != AUTO:
        return float(cfg["window_mm"])
    if plan is None:
        raise ConfigError(
            "preprocess.crop.window_mm", AUTO, "a size in mm, or auto with the crop plan given"
        )
    return float(plan["window_mm"])


def _config(text: str, data_source: str | None) -> dict[str, Any]:
    """The preprocess.crop section of `--config-json`, completed from the schema, its centre
    resolved (`crop_plan.resolve_centre`; auto needs the data source)."""
    cfg = complete(json.loads(text), "preprocess", "crop")
    source = data_source or defaults("data")["source"]
    return {**cfg, "centre": resolve_centre(cfg["centre"], source)}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segsweep crop", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    section = "preprocess.crop section (JSON; missing keys take their defaults)"
    source = "data.source, which centre 'auto' depends on (default: the schema's)"
    centre = commands.add_parser("centre", help="find the crop centre (and the label extents)")
    centre.add_argument("--image", required=True)
    centre.add_argument("--mask", help="the canonical label map, for a labelled subject")
    centre.add_argument("--labels-json", default=None, help="class name → label value")
    centre.add_argument("--config-json", default="{}", help=section)
    centre.add_argument("--data-source", default=None, help=source)
    centre.add_argument("--out-json", required=True)
    plan = commands.add_parser("plan", help="plan the window from train/val label extents")
    plan.add_argument("--splits", required=True, help="splits.csv")
    plan.add_argument("--crop-dir", type=Path, help="results/crop, with --subjects")
    plan.add_argument("--subjects", nargs="*", default=[], help="subjects with a centre.json")
    plan.add_argument(
        "--centre-json", nargs="*", default=[], help="SUBJECT=PATH of each centre.json"
    )
    plan.add_argument("--config-json", default="{}", help=section)
    plan.add_argument("--out-json", required=True)
    image = commands.add_parser("image", help="crop the image around its centre")
    image.add_argument("--image", required=True)
    image.add_argument("--config-json", default="{}", help=section)
    image.add_argument("--data-source", default=None, help=source)
    image.add_argument("--centre-json", help="the subject's centre.json (else found here)")
    image.add_argument("--plan-json", help="plan.json, for window_mm: auto")
    image.add_argument("--out-image", required=True)
    image.add_argument("--out-json", required=True)
    image.add_argument("--out-qc", required=True)
    mask = commands.add_parser("mask", help="replay an image's crop on its label map")
    mask.add_argument("--mask", required=True)
    mask.add_argument("--crop-json", required=True)
    mask.add_argument("--labels-json", required=True)
    mask.add_argument("--out-mask", required=True)
    mask.add_argument("--out-json", required=True)
    tables = commands.add_parser("tables", help="centre-error and kept-fraction tables")
    tables.add_argument("--crop-dir", type=Path, help="results/crop, with --subjects")
    tables.add_argument("--subjects", nargs="*", default=[], help="the labelled subjects")
    tables.add_argument(
        "--crop-json", nargs="*", default=[], help="SUBJECT=PATH of each subject's crop.json"
    )
    tables.add_argument(
        "--mask-json",
        nargs="*",
        default=[],
        help="SUBJECT=PATH of each mask.json",
    )
    tables.add_argument("--out-centre", required=True)
    tables.add_argument("--out-kept", required=True)
    return parser


def _found(args: argparse.Namespace, pattern: str, named: dict[str, str]) -> dict[str, Any]:
    """`named` plus each of `--subjects`' files `pattern` under `--crop-dir`."""
    for subject in args.subjects if args.crop_dir else []:
        named[subject] = under(args.crop_dir, pattern, base=CROP_DIR, subject=subject)
    return named


def _crop_image(args: argparse.Namespace) -> None:
    """`crop image`: the centre from its record (or found now), the window from the config or
    the plan; writes the crop, crop.json and the QC figure."""
    cfg = _config(args.config_json, args.data_source)
    source = read_volume(args.image)
    if args.centre_json:
        record = read_json(args.centre_json)
    else:
        record = centre_record(source, cfg)
    plan = read_json(args.plan_json) if args.plan_json else None
    cropped, info = crop_subject(
        source,
        tuple(record["centre_mm"]),
        window_mm=window_of(cfg, plan),
        size=int(cfg["size"]),
        slices=int(cfg["slices"]),
    )
    info["centre_method"] = record["centre_method"]
    info["window"] = AUTO if cfg["window_mm"] == AUTO else "config"
    write_image(cropped, args.out_image)
    write_json(args.out_json, info)
    qc_figure(source, cropped, info, args.out_qc)


def _crop_mask(args: argparse.Namespace) -> None:
    """`crop mask`: the crop replayed on the label map, kept fractions and centre error."""
    info = read_json(args.crop_json)
    labels = json.loads(args.labels_json)
    source = read_volume(args.mask)
    cropped, kept = crop_mask(source, info, labels)
    write_image(cropped, args.out_mask)
    # strict JSON has no NaN: an absent class is written as null
    kept_json = {k: None if math.isnan(v) else v for k, v in kept.items()}
    error = centre_error(info, mask_centre(source, labels))
    write_json(args.out_json, {"kept_fraction": kept_json, **error})
    cut = {k: round(v, 3) for k, v in kept_json.items() if v is not None and v < KEPT_MINIMUM}
    if cut:
        log.warning("crop window cuts labelled structure; kept fraction %s", cut)


def main(argv: list[str] | None = None) -> None:
    """`python -m segsweep crop centre ...` (the crop centre and label extents of one subject),
    `crop plan ...` (the window from the train/val subjects), `crop image ...` (crop, QC),
    `crop mask ...` or `crop tables ...` (centre error and kept fractions of the labelled
    subjects)."""
    args = _parser().parse_args(argv)
    if args.command == "centre":
        cfg = _config(args.config_json, args.data_source)
        mask = read_volume(args.mask) if args.mask else None
        labels = json.loads(args.labels_json) if args.labels_json else None
        if mask is not None and not labels:
            raise SystemExit("--mask needs --labels-json")
        write_json(args.out_json, centre_record(read_volume(args.image), cfg, mask, labels))
    elif args.command == "plan":
        records = _found(args, CROP_CENTRE, named_paths(args.centre_json, "--centre-json"))
        write_plan(records, args.splits, json.loads(args.config_json), args.out_json)
    elif args.command == "image":
        _crop_image(args)
    elif args.command == "mask":
        _crop_mask(args)
    else:
        crop_records = _found(args, CROP_RECORD, named_paths(args.crop_json, "--crop-json"))
        mask_records = _found(args, CROP_MASK_RECORD, named_paths(args.mask_json, "--mask-json"))
        write_tables(crop_records, mask_records, args.out_centre, args.out_kept)


if __name__ == "__main__":
    main()
