"""How every figure of the workflow is drawn and saved: matplotlib's Agg backend (no display),
one font size and one colour-blind-safe palette, and files written without timestamps or random
ids, so reruns give identical files.

Figures are printed at their own size, never enlarged: `save` shrinks a figure wider than the
page's text width (`TEXT_WIDTH`) to fit it, so text drawn at `FONT_SIZE` points reads at that
size on every page of the thesis (HTML, PDF and LaTeX alike). Each figure is written as PNG (the
declared output), with an SVG (the HTML and its PDF) and a PDF (the LaTeX kit; TrueType fonts
embedded) beside it, in the same job.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

matplotlib.use("Agg")  # no display: figures are only ever written to files

DPI = 150
TEXT_WIDTH = 6.3  # inches: the text width of the thesis's A4 page (16 cm)
FONT_SIZE = 9  # points, for labels and titles; ticks and legends one point smaller
matplotlib.rcParams.update(
    {
        "font.size": FONT_SIZE,
        "axes.titlesize": FONT_SIZE,
        "axes.labelsize": FONT_SIZE,
        "figure.titlesize": FONT_SIZE + 1,
        "xtick.labelsize": FONT_SIZE - 1,
        "ytick.labelsize": FONT_SIZE - 1,
        "legend.fontsize": FONT_SIZE - 1,
        "legend.title_fontsize": FONT_SIZE - 1,
        "pdf.fonttype": 42,  # TrueType, embedded: the text stays text in the LaTeX kit
        "svg.fonttype": "none",  # text as text: searchable and editable in the HTML and PDF
        "svg.hashsalt": "segsweep",
    }
)
PALETTE = "colorblind"  # seaborn's colour-blind-safe palette: every categorical colour
TRAIN_COLOUR = "#0173b2"  # the palette's blue: training, and single-colour marks
VAL_COLOUR = "#de8f05"  # its orange: validation points, medians and predicted outlines
REFERENCE_COLOUR = "#029e73"  # its green: reference (ground-truth) outlines
FILL_COLOUR = "#a6cde8"  # the blue, light: box and bar fills
LINE_COLOUR = "#01436a"  # the blue, dark: box lines, outliers and bar edges


def level_colours(levels: list[str]) -> dict[str, tuple[float, float, float]]:
    """Each level (of a hyperparameter, or a run id) → its colour: the palette in the order of
    `levels`, so a level keeps its colour in every figure drawn with the same levels."""
    return dict(zip(levels, sns.color_palette(PALETTE, len(levels)), strict=True))


def fit_text_width(fig: Figure) -> None:
    """Shrink `fig` (keeping its aspect) until its tight bounding box, the part that is saved,
    is no wider than the text width; a narrower figure is left as it is."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    target = TEXT_WIDTH - 2 * matplotlib.rcParams["savefig.pad_inches"]  # saved with padding
    for _ in range(3):  # the tight layout moves text when the size changes: converge
        fig.draw_without_rendering()
        width = fig.get_tightbbox(canvas.get_renderer()).width
        if width <= target * 1.002:
            return
        w, h = fig.get_size_inches()
        fig.set_size_inches(w * target / width, h * target / width)


def save(fig: Figure, png: Path, dpi: int = DPI) -> None:
    """Write the figure, fitted to the text width, as PNG (`dpi`) with SVG and PDF beside it,
    creating the folder."""
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fit_text_width(fig)
    fig.savefig(png, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(png.with_suffix(".svg"), bbox_inches="tight", metadata={"Date": None})
    fig.savefig(png.with_suffix(".pdf"), bbox_inches="tight", metadata={"CreationDate": None})


def without_ticks(axes) -> None:
    """Image panels: no axis ticks."""
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
