"""Outline figures of the final models on test patients (thesis Figs. 5.9–5.22): up to twelve
linearly spaced slices of a patient with the reference and the prediction outlined, for the
best, median and worst patient by Dice or for chosen patient ids. Drawn by the final-model stage,
the only one that sees test images: one shown patient at a time (`draw_outlines_of`), as
evaluation goes patient by patient so that a split larger than the memory budget can be streamed
(`segsweep.evaluate.chunks`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from segsweep.io.splits import Split
from segsweep.labels import FOREGROUND
from segsweep.plotting import REFERENCE_COLOUR, VAL_COLOUR, save


def _processed_dice(per_patient: pd.DataFrame) -> pd.Series:
    """Foreground Dice per patient in the processed space (the grid the outlines are drawn on)."""
    rows = per_patient["class"] == FOREGROUND
    if "space" in per_patient:
        rows &= per_patient["space"] == "processed"
    return per_patient[rows].set_index("patient_id")["dice"]


def shown_patients(per_patient: pd.DataFrame, wanted: list[str]) -> list[tuple[str, str]]:
    """(tag, patient) to draw: "best", "median" and "worst" by per-patient foreground Dice
    (processed space, defined values), or patient ids as given; unknown ids are skipped and a
    patient chosen twice is drawn once ("best-median")."""
    dice = _processed_dice(per_patient)
    ranked = dice.dropna().sort_values(ascending=False, kind="stable")
    chosen: dict[str, list[str]] = {}  # patient → tags, so a patient is drawn once
    for tag in wanted:
        if tag in ("best", "median", "worst") and len(ranked):
            position = {"best": 0, "median": (len(ranked) - 1) // 2, "worst": len(ranked) - 1}[tag]
            chosen.setdefault(str(ranked.index[position]), []).append(tag)
        elif tag in dice.index:
            chosen.setdefault(tag, []).append("patient")
    return [("-".join(tags), patient) for patient, tags in chosen.items()]


def draw_outlines_of(
    slices_of: Callable[[str], tuple[np.ndarray, Split]],
    per_patient: pd.DataFrame,
    wanted: list[str],
    out_dir: Path,
) -> list[Path]:
    """Twelve slices with reference and predicted outlines for each shown patient, its
    (predictions, slices) from `slices_of(patient)` (slices holding at least the patient's), one
    patient after the other: a split evaluated one patient at a time holds one shown patient at a
    time."""
    dice = _processed_dice(per_patient)
    written = []
    for index, (tag, patient) in enumerate(shown_patients(per_patient, wanted), 1):
        pred, data = slices_of(patient)
        rows = np.flatnonzero(data.patient_id == patient)
        rows = rows[np.argsort(data.slice_id[rows], kind="stable")]
        path = Path(out_dir) / f"outlines_{index}_{tag}_{patient}.png"
        title = f"{patient} ({tag}, Dice {dice[patient]:.3f})"
        image, reference = data.images[rows, ..., 0], data.masks[rows].any(axis=-1)
        slice_outlines(image, reference, pred[rows] > 0, path, title)
        written.append(path)
    return written


def twelve_slices(n_slices: int, count: int = 12) -> np.ndarray:
    """`count` linearly spaced slice positions over a volume (all when it has fewer)."""
    return np.unique(np.linspace(0, n_slices - 1, min(count, n_slices)).round().astype(int))


def slice_outlines(
    image: np.ndarray, reference: np.ndarray, prediction: np.ndarray, out: Path, title: str
) -> None:
    """Twelve linearly spaced slices (z, y, x) with the reference outlined in green and the
    prediction in orange (label maps: every non-zero label is outlined)."""
    positions = twelve_slices(len(image))
    columns = 6
    rows = int(np.ceil(len(positions) / columns))
    fig = Figure(figsize=(1.6 * columns, 1.75 * rows + 0.4), layout="tight")
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, k in zip(axes.flat, positions, strict=False):
        ax.imshow(image[k], cmap="gray", interpolation="nearest")
        for mask, colour in ((reference[k], REFERENCE_COLOUR), (prediction[k], VAL_COLOUR)):
            if mask.any():
                ax.contour(mask > 0, levels=[0.5], colors=colour, linewidths=0.9)
        ax.set_title(f"slice {k}", fontsize=7)
    fig.suptitle(f"{title} (green: reference, orange: prediction)", fontsize=9)
    save(fig, out)
