"""A subject's header checks: every problem its files' headers show, no voxel read.

The words are those ingest uses for the same checks (`segsweep.data.ingest`), which read the
voxels too: missing files, unsupported or unreadable headers, images that are not 3D (or 4D with
channels last), channel counts against the named channels, and every channel, mask and class
mask against the first channel's size, spacing, origin and direction.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from segsweep.data.datasets import Problem
from segsweep.errors import InputError
from segsweep.io.images import brought_header

CHANNEL_TOLERANCE = 1e-3  # mm: channels are stacked voxel by voxel (as ingest checks them)


def _grid_problem(
    header: dict[str, Any], reference: dict[str, Any], tolerance: float, what: str
) -> str | None:
    """What differs between a mask's or channel's grid and the image's (the first channel's),
    in the words ingest uses for the same check; None when they match."""
    against = "image" if what == "mask" else "first channel"
    if header["size"] != reference["size"]:
        return f"shape mismatch: {what} size {header['size']} != {against} size {reference['size']}"
    differences = []
    for key in ("spacing", "origin", "direction"):
        difference = float(np.max(np.abs(np.subtract(header[key], reference[key]))))
        if difference > tolerance:
            ours = ", ".join(f"{v:.4g}" for v in reference[key])
            theirs = ", ".join(f"{v:.4g}" for v in header[key])
            differences.append(
                f"{key} differs by {difference:.3g} ({against} ({ours}), {what} ({theirs}), "
                f"tolerance {tolerance:g})"
            )
    if not differences:
        return None
    mismatch = "geometry mismatch" if what == "mask" else f"{what} geometry mismatch"
    return f"{mismatch}: " + "; ".join(differences)


def _header(subject: str, path: str, problems: list[Problem]) -> dict[str, Any] | None:
    try:
        header = brought_header(path, subject)
    except InputError as error:
        problems.append(Problem(subject, path, error.problem))
        return None
    if header["dimension"] not in (3, 4):
        problems.append(Problem(subject, path, f"expected a 3D image, got {header['dimension']}D"))
        return None
    return header


def header_problems(
    subject: str, row: dict[str, Any], channels: int | None, tolerance: float
) -> list[Problem]:
    """Every problem the headers of one subject's files show (`row` of a subject table:
    images, mask, class_masks, roi). `channels`: how many channels its images must hold
    together (None: as many as they do)."""
    problems: list[Problem] = []
    images = row["images"]
    headers = [_header(subject, path, problems) for path in images]
    first = headers[0]
    for path, header in zip(images, headers, strict=True):
        if header and header["dimension"] == 4 and len(images) > 1:
            problems.append(Problem(subject, path, "a 4D image can only be a subject's only image"))
    held = sum(h["channels"] for h in headers if h) if all(headers) else None
    if held is not None and channels is not None and held != channels:
        problems.append(
            Problem(subject, images[0], f"images hold {held} channels, {channels} are named")
        )
    if first and first["size"] is not None:
        for path, header in zip(images[1:], headers[1:], strict=True):
            if header and header["size"] is not None:
                problem = _grid_problem(header, first, CHANNEL_TOLERANCE, "channel")
                problems += [Problem(subject, path, problem)] if problem else []
    masks = [row["mask"]] if row.get("mask") else []
    masks += list(row.get("class_masks", {}).values())
    for path in masks:
        header = _header(subject, path, problems)
        if header and header["dimension"] != 3:
            problems.append(
                Problem(subject, path, f"a mask must be 3D, got {header['dimension']}D")
            )
        elif header and first and first["size"] is not None and header["size"] is not None:
            problem = _grid_problem(header, first, tolerance, "mask")
            problems += [Problem(subject, path, problem)] if problem else []
    if row.get("roi"):
        _header(subject, row["roi"], problems)
    return problems
