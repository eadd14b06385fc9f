"""How figures are saved (`segsweep.plotting`): PNG, SVG and PDF together, never wider than the
page's text width (so their fonts print at their size), text kept as text, one palette."""

from __future__ import annotations

import re
from pathlib import Path

import seaborn as sns
from matplotlib.figure import Figure

from segsweep.plotting import FONT_SIZE, PALETTE, TEXT_WIDTH, level_colours, save


def svg_width_pt(svg: Path) -> float:
    return float(re.search(r'<svg[^>]*\swidth="([\d.]+)pt"', svg.read_text())[1])


def drawn(width: float) -> Figure:
    fig = Figure(figsize=(width, 3), layout="tight")
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1])
    ax.set_xlabel("epoch")
    return fig


def test_a_wide_figure_is_fitted_to_the_text_width_with_its_font_size_kept(tmp_path: Path) -> None:
    save(drawn(11), tmp_path / "wide.png")
    assert {p.suffix for p in tmp_path.iterdir()} == {".png", ".svg", ".pdf"}
    assert 0.97 * TEXT_WIDTH * 72 <= svg_width_pt(tmp_path / "wide.svg") <= TEXT_WIDTH * 72 + 1
    svg = (tmp_path / "wide.svg").read_text()
    # text as text, at FONT_SIZE in the SVG's user units (points, as its width is)
    assert re.search(rf"font-size: {FONT_SIZE}(\.0)?px[^>]*>epoch</text>", svg)


def test_a_narrow_figure_keeps_its_size(tmp_path: Path) -> None:
    save(drawn(3), tmp_path / "narrow.png")
    assert svg_width_pt(tmp_path / "narrow.svg") < 3 * 72 + 10


def test_the_pdf_embeds_its_fonts_as_truetype(tmp_path: Path) -> None:
    save(drawn(4), tmp_path / "f.png")
    pdf = (tmp_path / "f.pdf").read_bytes()
    assert b"/FontFile2" in pdf and b"/Type3" not in pdf  # TrueType programs embedded


def test_a_level_keeps_its_colour_and_the_palette_is_colour_blind_safe() -> None:
    colours = level_colours(["cross_entropy", "dice", "focal"])
    assert list(colours.values()) == sns.color_palette(PALETTE, 3)
    assert level_colours(["cross_entropy", "dice", "focal"]) == colours
