"""How every figure of the workflow is drawn and saved: matplotlib's Agg backend (no display),
the colours, and files written without timestamps or random ids, so reruns give identical files.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

matplotlib.use("Agg")  # no display: figures are only ever written to files

DPI = 150
PALETTE = "colorblind"  # seaborn's colour-blind-safe palette, for categorical colours
TRAIN_COLOUR = "#1f4e8c"
VAL_COLOUR = "#e8781e"  # validation points and predicted outlines
REFERENCE_COLOUR = "#2ca02c"  # reference (ground-truth) outlines


def save(fig: Figure, png: Path) -> None:
    """Write the figure as PNG (DPI, for the thesis) and as SVG beside it (for print and
    editing), creating the folder."""
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({"svg.hashsalt": "segsweep"}):
        fig.savefig(png, dpi=DPI, bbox_inches="tight", metadata={"Software": None})
        fig.savefig(png.with_suffix(".svg"), bbox_inches="tight", metadata={"Date": None})


def save_png(fig: Figure, png: Path, dpi: int) -> None:
    """Write a quality-control figure as PNG only (small, not for print), creating the folder."""
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=dpi, bbox_inches="tight", metadata={"Software": None})


def without_ticks(axes) -> None:
    """Image panels: no axis ticks."""
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
