"""Maps on the cropped grid back in a scan's own geometry.

The crop stage resampled the canonical (LIP) volume with nearest neighbour onto the cropped grid
recorded in crop.json ("output": origin, spacing, direction, size; every `step`-th canonical
slice). `to_native` undoes it: a map on the cropped grid is resampled onto the canonical grid
("input") — a label map with nearest neighbour, so each canonical slice takes its nearest
predicted slice and voxels outside the crop window are background — then reoriented to the
orientation ingest recorded and given the original origin, spacing and direction, so it overlays
on the raw image.
"""

from __future__ import annotations

from typing import Any

import SimpleITK as sitk

from segsweep.errors import InputError
from segsweep.io.images import blank


def to_native(
    cropped: sitk.Image,
    crop_info: dict[str, Any],
    ingest_info: dict[str, Any],
    interpolator: int = sitk.sitkNearestNeighbor,
    outside: float = 0.0,
) -> sitk.Image:
    """A map on the cropped grid in the subject's original geometry: a label map (uint8,
    nearest neighbour), or with `interpolator` linear a float32 map (uncertainty, a class's
    probability) that is `outside` beyond the crop window. It holds two maps of the original
    grid at once (the resampled canonical one and its reoriented copy)."""
    pixel = sitk.sitkUInt8 if interpolator == sitk.sitkNearestNeighbor else sitk.sitkFloat32
    canonical = sitk.Resample(
        sitk.Cast(cropped, pixel),
        blank(crop_info["input"], pixel),
        sitk.Transform(),
        interpolator,
        outside,
        pixel,
    )
    original = ingest_info["original"]
    native = sitk.DICOMOrient(canonical, original["orientation"])
    if list(native.GetSize()) != [int(s) for s in original["size"]]:
        raise InputError(
            ingest_info.get("subject_id"),
            "ingest.json",
            f"reoriented size {native.GetSize()} is not the original {original['size']}",
        )
    native.SetOrigin([float(v) for v in original["origin"]])
    native.SetSpacing([float(v) for v in original["spacing"]])
    native.SetDirection([float(v) for v in original["direction"]])
    return native
