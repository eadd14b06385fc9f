"""The LaTeX kit (`segsweep.report.latex`): escaping, tables with booktabs rules and bold cells,
labels from keys, and a small document that pdflatex compiles with every reference resolved."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from markupsafe import Markup
from matplotlib.figure import Figure as MplFigure

from segsweep.plotting import save
from segsweep.report.document import Chapter, Document, Figure, Section, Table, text
from segsweep.report.latex import escape, inline, table_tex, write_latex

PDFLATEX = shutil.which("pdflatex")
IN_CI = bool(os.environ.get("CI"))


def test_text_from_config_and_data_is_escaped() -> None:
    assert escape("run_1 & 50% #2 {x} ~ ^ \\ $") == (
        r"run\_1 \& 50\% \#2 \{x\} \textasciitilde{} \textasciicircum{} \textbackslash{} \$"
    )
    assert (
        escape("a ≤ b ± c × d → e, σ") == r"a $\leq$ b $\pm$ c $\times$ d $\rightarrow$ e, $\sigma$"
    )
    assert escape("“loss” – dice") == "“loss” – dice"  # inputenc knows these


def test_bold_markup_becomes_textbf_and_its_text_is_still_escaped() -> None:
    assert inline(Markup("<strong>{}</strong>").format("0.9 & co_1")) == r"\textbf{0.9 \& co\_1}"
    assert inline(Markup('<span class="cut">{}</span>').format("5 %")) == r"\textbf{5 \%}"
    assert (
        inline("<b>not markup</b>")
        == r"\textless{}b\textgreater{}not markup\textless{}/b\textgreater{}"
    )


def frame() -> pd.DataFrame:
    return pd.DataFrame({"Run": ["a_1", "b%"], "Score": [Markup("<strong>0.9</strong>"), "0.8"]})


def test_a_table_has_booktabs_rules_caption_label_and_right_aligned_numbers() -> None:
    table = Table.of("hp-loss", "Scores per loss. More.", frame(), notes=["A note."])
    tex = table_tex(table)
    assert r"\begin{tabular}{@{}lr@{}}" in tex
    assert tex.index(r"\toprule") < tex.index(r"Run & Score \\") < tex.index(r"\midrule")
    assert r"a\_1 & \textbf{0.9} \\" in tex and r"b\% & 0.8 \\" in tex
    assert r"\caption[{Scores per loss.}]{Scores per loss. More.}\label{tab:hp-loss}" in tex
    assert "A note." in tex and tex.index(r"\bottomrule") < tex.index("A note.")


def test_a_long_table_repeats_its_header_on_every_page() -> None:
    table = Table.of("all-runs", "All runs.", frame(), long=True)
    tex = table_tex(table)
    assert r"\begin{longtable}" in tex
    first, head = tex.index(r"\endfirsthead"), tex.index(r"\endhead")
    assert tex.count(r"Run & Score \\") == 2 and first < tex.rindex(r"Run & Score \\") < head


def kit(tmp_path: Path, title: str = "A thesis on run_1 & 50%") -> Path:
    """A small document with a section, a long table, a table with a group header and a figure,
    referred to from the text and the summary, written as a LaTeX kit."""
    fig = MplFigure(figsize=(9, 3))  # wider than the page: fitted to its text width
    fig.subplots().plot([0, 1], [1, 0])
    save(fig, tmp_path / "plot.png")
    long = Table.of("all-runs", "Every run.", pd.concat([frame()] * 40), long=True)
    grouped = Table.of("pair-loss-labels", "Pairs.", frame(), group_header=[("", 1), ("Mean", 1)])
    figure = Figure.of("jitter-lr", "Scores by learning rate.", tmp_path / "plot.png")
    chapter = Chapter(
        "results",
        "1",
        "Results",
        [
            text("{a} and {b} show it; {f} too.", a=long, b=grouped, f=figure),
            Section("effects", "Effects", [grouped, figure]),
            long,
        ],
    )
    appendix = Chapter("appendix-x", "A", "More", [text("See {t}.", t=grouped)], appendix=True)
    document = Document(title, "Me", "2026-12-02", "made", [chapter, appendix]).number()
    document.summary = [text("The best is in {t}.", t=grouped)]
    out = tmp_path / "latex"
    write_latex(document.number(), out)
    return out


def test_the_kit_has_one_file_per_table_and_figure_and_labels_from_keys(tmp_path: Path) -> None:
    out = kit(tmp_path)
    assert sorted(p.name for p in (out / "tables").iterdir()) == [
        "all-runs.tex",
        "pair-loss-labels.tex",
    ]
    assert [p.name for p in (out / "figures").iterdir()] == ["jitter-lr.pdf"]
    chapter = (out / "chapter.tex").read_text()
    summary = (out / "summary.tex").read_text()
    assert r"\chapter*{Summary}" in summary and r"Table~\ref{tab:pair-loss-labels}" in summary
    assert r"Table~\ref{tab:all-runs} and Table~\ref{tab:pair-loss-labels}" in chapter
    assert r"Figure~\ref{fig:jitter-lr}" in chapter and r"\label{fig:jitter-lr}" in chapter
    main = (out / "main.tex").read_text()
    assert main.index(r"\maketitle") < main.index(r"\input{summary}") < main.index("contents")
    assert chapter.index(r"\appendix") < chapter.index(r"\chapter{More}")
    # fitted to the text width (453.6 pt) by segsweep.plotting.save, and included at its width
    width = float(re.search(r"segsweepgraphic\{([\d.]+)pt\}\{figures/jitter-lr\}", chapter)[1])
    assert 440 < width <= 454.5
    assert r"\title{A thesis on run\_1 \& 50\%}" in (out / "main.tex").read_text()


def compile_twice(folder: Path) -> str:
    """pdflatex main.tex twice (references resolve on the second run); the last log."""
    for _ in range(2):
        result = subprocess.run(
            [PDFLATEX or "pdflatex", "-interaction=nonstopmode", "-halt-on-error", "main.tex"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout[-3000:]
    return (folder / "main.log").read_text(errors="replace")


def undefined_references(log: str) -> list[str]:
    return [
        line
        for line in log.splitlines()
        if "undefined" in line.lower() and ("reference" in line.lower() or "citation" in line)
    ]


@pytest.mark.latex
@pytest.mark.skipif(PDFLATEX is None and not IN_CI, reason="pdflatex not installed")
def test_pdflatex_compiles_the_kit_with_every_reference_resolved(tmp_path: Path) -> None:
    assert PDFLATEX, "CI must install texlive-latex-recommended"
    out = kit(tmp_path)
    log = compile_twice(out)
    assert not undefined_references(log), undefined_references(log)
    assert (out / "main.pdf").stat().st_size > 10_000


def test_a_wide_long_table_wraps_its_columns_to_the_text_width_in_portrait() -> None:
    columns = {f"Column {i}": ["0.5"] * 40 for i in range(10)}
    frame = pd.DataFrame({"Run": ["labels-separate_loss-cross-entropy_fold-0"] * 40, **columns})
    tex = table_tex(Table.of("all-runs", "All runs.", frame))  # 40 rows: long
    assert r"\begin{longtable}" in tex and "landscape" not in tex
    widths = [float(w) for w in re.findall(r"p\{([\d.]+)em\}", tex)]
    assert len(widths) == 11 and sum(widths) + 0.9 * 11 <= 64.01
    assert r"labels-\allowbreak{}separate\_\allowbreak{}loss" in tex  # run ids may break
