"""The crop planned from the data it is given, as nnU-Net plans from a dataset fingerprint.

`preprocess.crop.centre: auto` is the knee joint for the synthetic knee cohort and, for brought
data, the centroid of the image foreground, which assumes no anatomy. `window_mm: auto` is the
side of the smallest square in-plane window that, around each subject's own image-derived crop
centre, holds every labelled voxel of every training and validation subject, widened by
`margin` on each side. Measured from the detected centre rather than from the labels' centre, it
covers the detector's offsets too. Test subjects never enter the plan.

Light on purpose (no image library): the report reads the cut threshold and the centre wording
from here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from segsweep.errors import ConfigError, InputError

AUTO = "auto"
KEPT_MINIMUM = 0.99  # a labelled subject keeping less of a class than this is cut by the crop
PLANNING_SPLITS = ("train", "val")  # the labelled subjects a plan may rest on (never test)


def resolve_centre(method: str, data_source: str) -> str:
    """The crop-centre method `preprocess.crop.centre` stands for: `auto` is `joint` for the
    synthetic knee cohort (`data.source: synthetic`) and `foreground` for brought data."""
    if method != AUTO:
        return method
    return "joint" if data_source == "synthetic" else "foreground"


def half_extent(extents: Mapping[str, list[float] | None] | None) -> float | None:
    """Largest distance (mm) from the crop centre to a labelled voxel centre along either
    in-plane axis, over the classes of one subject's extents ([x_min, x_max, y_min, y_max]
    each); None without labelled voxels."""
    values = [abs(v) for box in (extents or {}).values() if box for v in box]
    return max(values) if values else None


def planned_window(half_mm: float, margin: float) -> float:
    """Side (mm) of the square window holding `half_mm` on each side of the centre, widened by
    `margin` (a fraction), rounded up to a whole millimetre."""
    return float(math.ceil(2.0 * half_mm * (1.0 + margin) - 1e-9))


def plan_crop(
    records: Mapping[str, Mapping[str, Any]],
    splits: pd.DataFrame,
    window_mm: float | str = AUTO,
    margin: float = 0.1,
) -> dict[str, Any]:
    """The crop plan (plan.json) from the centre records (centre.json, subject → record) and
    splits.csv: the window (planned when `window_mm` is auto, else as configured), the centre
    method, and the half-extent of every train and val subject it rests on."""
    split_of = dict(zip(splits["subject_id"].astype(str), splits["split"], strict=True))
    planning = sorted(s for s in records if split_of.get(s) in PLANNING_SPLITS)
    halves = {s: half_extent(records[s].get("extent_mm")) for s in planning}
    halves = {s: h for s, h in halves.items() if h is not None}
    methods = sorted({str(records[s].get("centre_method")) for s in records})
    plan: dict[str, Any] = {
        "window": AUTO if window_mm == AUTO else "config",
        "centre_method": methods[0] if len(methods) == 1 else methods,
        "margin": float(margin),
        "splits": list(PLANNING_SPLITS),
        "subjects": len(halves),
        "half_extent_mm": halves,
    }
    if not halves:
        if window_mm == AUTO:
            raise InputError(
                None,
                "splits.csv",
                "preprocess.crop.window_mm: auto needs train or val subjects with labelled "
                "voxels; none has any",
            )
        return {**plan, "window_mm": float(window_mm), "widest": None, "widest_mm": None}
    widest = max(halves, key=lambda s: (halves[s], s))
    if window_mm == AUTO:
        window = planned_window(halves[widest], margin)
    else:
        try:
            window = float(window_mm)
        except (TypeError, ValueError):
            allowed = f"a size in mm or {AUTO}"
            raise ConfigError("preprocess.crop.window_mm", window_mm, allowed) from None
    return {**plan, "window_mm": window, "widest": widest, "widest_mm": halves[widest]}


def cut_classes(kept: pd.DataFrame, minimum: float = KEPT_MINIMUM) -> pd.DataFrame:
    """The (subject_id, class, kept) triples of a kept-fraction table (kept_fraction.csv) below
    `minimum`, smallest first; absent classes are not cut."""
    classes = [c for c in kept.columns if c != "subject_id"]
    frame = kept.assign(subject_id=kept["subject_id"].astype(str)).melt(
        id_vars="subject_id", value_vars=classes, var_name="class", value_name="kept"
    )
    frame["kept"] = pd.to_numeric(frame["kept"], errors="coerce")
    cut = frame[frame["kept"] < minimum]
    return cut.sort_values(["kept", "subject_id", "class"]).reset_index(drop=True)
