"""The document model as LaTeX, for a thesis written in LaTeX (or taken to Word with Pandoc).

`write_latex` fills results/report/latex/ with
- tables/<key>.tex: one per table, with booktabs rules, the caption and notes of the HTML, bold
  where it is bold; a long table as a longtable whose header repeats on every page;
- figures/<key>.pdf: one vector PDF per figure (the one `segsweep.plotting.save` wrote beside
  the PNG; fonts embedded), included at the width it was drawn at, so its fonts print at theirs;
- summary.tex: the one-page summary, to follow the title page;
- chapter.tex: the chapters, sections, text, captions and references of thesis.html;
- preamble.tex: the packages and the one macro the other files use, for a student's own main file;
- main.tex: a book that compiles chapter.tex alone with pdflatex (run twice for the references).
Labels are made from what a table or figure is (`tab:hp-loss`, `fig:jitter-lr`, the document
model's keys), never from its position, so `\\ref{tab:hp-loss}` survives a rerun that adds a grid.
Every text from the configuration or the data is escaped, and the Unicode the thesis writes
(≤, ±, ×, →, σ, …) becomes LaTeX commands, so pdflatex needs no font beyond its defaults.
"""

from __future__ import annotations

import re
import shutil
from html import unescape
from pathlib import Path
from typing import Any

from markupsafe import Markup

from segsweep.report.document import (
    Chapter,
    Code,
    Document,
    Figure,
    Item,
    Paragraph,
    Ref,
    Section,
    Table,
)

SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    "≤": r"$\leq$",
    "≥": r"$\geq$",
    "±": r"$\pm$",
    "×": r"$\times$",
    "÷": r"$\div$",
    "→": r"$\rightarrow$",
    "−": r"$-$",
    "≈": r"$\approx$",
    "≠": r"$\neq$",
    "·": r"$\cdot$",
    "…": r"\dots{}",
    "°": r"\textdegree{}",
    "²": r"\textsuperscript{2}",
    "³": r"\textsuperscript{3}",
    "µ": r"$\mu$",
    "α": r"$\alpha$",
    "β": r"$\beta$",
    "γ": r"$\gamma$",
    "δ": r"$\delta$",
    "Δ": r"$\Delta$",
    "η": r"$\eta$",
    "κ": r"$\kappa$",
    "μ": r"$\mu$",
    "ρ": r"$\rho$",
    "σ": r"$\sigma$",
    "Σ": r"$\Sigma$",
    "τ": r"$\tau$",
    "χ": r"$\chi$",
    "\u00a0": "~",
}
SPECIALS = re.compile("|".join(re.escape(c) for c in SPECIAL))
TAGS = re.compile(r"<(/?)(\w+)[^>]*>")
BOLD = {"strong", "b", "span"}  # span: the warning's cut values, bold red in the HTML
ITALIC = {"em", "i"}
LONG_COLUMNS = 8  # a long table with more columns is set smaller, its columns wrapping
TEXT_EM, PAD_EM = 64.0, 0.9  # the text width (455 pt) and a column's padding, in \scriptsize em
CHAR_EM, WRAP_EM = 0.55, 9.0  # a character's width, and the widest a wrapping column starts


def escape(value: Any) -> str:
    """Text (from config, data or the thesis) as LaTeX that prints it verbatim."""
    return SPECIALS.sub(lambda m: SPECIAL[m.group(0)], str(value))


def inline(value: Any) -> str:
    """A cell or text part as LaTeX: Markup's bold and italic become \\textbf and \\emph, other
    tags are dropped, entities decoded; plain text is escaped."""
    if not hasattr(value, "__html__"):
        return escape(value)
    out, html = [], str(Markup(value))
    position = 0
    for match in TAGS.finditer(html):
        out.append(escape(unescape(html[position : match.start()])))
        closing, tag = match.group(1), match.group(2).lower()
        if tag in BOLD | ITALIC:
            out.append("}" if closing else (r"\textbf{" if tag in BOLD else r"\emph{"))
        position = match.end()
    out.append(escape(unescape(html[position:])))
    return "".join(out)


def label(item: Item | Section | Chapter) -> str:
    """The LaTeX label: tab:<key>, fig:<key>, sec:<key> or chap:<key>."""
    kinds = {Table: "tab", Figure: "fig", Section: "sec", Chapter: "chap"}
    prefix = next(prefix for kind, prefix in kinds.items() if isinstance(item, kind))
    return f"{prefix}:{item.key}"


def reference(ref: Ref) -> str:
    """ "Table~\\ref{tab:a}", "Figure~\\ref{fig:a} and Table~\\ref{tab:b}" as in the HTML."""
    words = [f"{item.kind}~\\ref{{{label(item)}}}" for item in ref.items]
    if len(words) <= 2:
        return " and ".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def paragraph(block: Paragraph) -> str:
    return "".join(reference(p) if isinstance(p, Ref) else inline(p) for p in block.parts)


def caption_tex(item: Item) -> str:
    """\\caption[short]{caption}\\label{...}; the short one (for the lists of tables and
    figures) braced, so a "]" in it ("[0.1, 0.2]") does not end it."""
    return rf"\caption[{{{inline(item.short)}}}]{{{inline(item.caption)}}}\label{{{label(item)}}}"


def _row(cells: list[Any], breakable: bool = False) -> str:
    """One row; `breakable`: a line may break after "_" and "-" (long run ids in the
    wrapping columns of a wide table)."""
    texts = [inline(c) for c in cells]
    if breakable:
        texts = [
            t.replace(r"\_", r"\_\allowbreak{}").replace("-", r"-\allowbreak{}") for t in texts
        ]
    return " & ".join(texts) + r" \\"


def wrapping_columns(table: Table) -> str:
    """A wide table's column spec that fits the text width: every column wraps (p), text
    ragged right and numbers ragged left, each as wide as its longest word or number (at most
    `WRAP_EM` em), shrunk together when they would not fit `TEXT_EM`."""
    widths = []
    for i in range(len(table.columns)):
        cells = [Markup(row[i]).striptags() for row in table.rows]
        words = [w for cell in [*cells, table.columns[i]] for w in str(cell).split()]
        widths.append(min(WRAP_EM, max([3, *map(len, words)]) * CHAR_EM))
    scale = min(1.0, (TEXT_EM - PAD_EM * len(widths)) / sum(widths))
    return "".join(
        rf">{{\{'raggedleft' if numeric else 'raggedright'}\arraybackslash}}p{{{w * scale:.2f}em}}"
        for w, numeric in zip(widths, table.numeric, strict=True)
    )


def _header(table: Table) -> list[str]:
    lines = [r"\toprule"]
    if table.group_header:
        cells, rules, start = [], [], 1
        for group, span in table.group_header:
            cells.append(rf"\multicolumn{{{span}}}{{c}}{{{inline(group)}}}")
            if str(group).strip():
                rules.append(rf"\cmidrule(lr){{{start}-{start + span - 1}}}")
            start += span
        lines += [" & ".join(cells) + r" \\", " ".join(rules)]
    return [*lines, _row(table.columns), r"\midrule"]


def table_tex(table: Table) -> str:
    """One table as a table float (a tabular shrunk to the text width if wider), or, when
    long, as a longtable that repeats its header on every page (a wide one set small, its
    columns wrapping to the text width: a page in portrait, no page broken for landscape)."""
    wide = table.long and len(table.columns) > LONG_COLUMNS
    spec = (
        wrapping_columns(table)
        if wide
        else "".join("r" if numeric else "l" for numeric in table.numeric)
    )
    caption = caption_tex(table)
    notes = [rf"\par\smallskip{{\footnotesize {inline(note)}\par}}" for note in table.notes]
    marked = set(table.marked)  # highlighted in the HTML: bold here
    body = [
        _row([Markup("<strong>{}</strong>").format(c) for c in row] if i in marked else row, wide)
        for i, row in enumerate(table.rows)
    ]
    if table.long:
        size = r"\scriptsize" if wide else r"\footnotesize"
        header = _header(table)
        continued = rf"\multicolumn{{{len(table.columns)}}}{{l}}{{\emph{{(continued)}}}} \\"
        lines = [
            "{" + size,
            r"\setlength{\tabcolsep}{3pt}",
            rf"\begin{{longtable}}{{@{{}}{spec}@{{}}}}",
            caption + r" \\",
            *header,
            r"\endfirsthead",
            continued,
            *header,
            r"\endhead",
            r"\bottomrule",
            r"\endlastfoot",
            *body,
            r"\end{longtable}",
            "}",
            *notes,
        ]
    else:
        lines = [
            r"\begin{table}[htbp]",
            r"\centering",
            caption,
            r"\small",
            r"\segsweepfit{%",
            rf"\begin{{tabular}}{{@{{}}{spec}@{{}}}}",
            *_header(table),
            *body,
            r"\bottomrule",
            r"\end{tabular}}",
            *notes,
            r"\end{table}",
        ]
    return "\n".join(lines) + "\n"


def figure_tex(figure: Figure) -> str:
    """A figure float: the PDF at the width it was drawn at (at most the text width)."""
    return "\n".join(
        [
            r"\begin{figure}[htbp]",
            r"\centering",
            rf"\segsweepgraphic{{{figure.width_pt:.1f}pt}}{{figures/{figure.key}}}",
            caption_tex(figure),
            r"\end{figure}",
        ]
    )


def blocks_tex(blocks: list[Any]) -> list[str]:
    out = []
    for block in blocks:
        if isinstance(block, Paragraph):
            out.append(paragraph(block))
        elif isinstance(block, Table):
            out.append(rf"\input{{tables/{block.key}}}")
        elif isinstance(block, Figure):
            out.append(figure_tex(block))
        elif isinstance(block, Code):
            out.append("\\begin{verbatim}\n" + block.text.rstrip("\n") + "\n\\end{verbatim}")
        elif isinstance(block, Section):
            command = "section" if block.level == 2 else "subsection"
            star = "" if block.level == 2 and block.number else "*"
            out.append(rf"\{command}{star}{{{inline(block.title)}}}\label{{{label(block)}}}")
            out += blocks_tex(block.blocks)
    return out


WRITTEN = "% Written by segsweep from the results of one workflow run; rerunning rewrites it."


def summary_tex(document: Document) -> str:
    """The summary as an unnumbered chapter (empty without one)."""
    if not document.summary:
        return WRITTEN + "\n"
    lines = [WRITTEN, r"\chapter*{Summary}\label{chap:summary}", *map(paragraph, document.summary)]
    return "\n\n".join(lines) + "\n"


def chapter_tex(document: Document) -> str:
    """The chapters, appendices after \\appendix, as one file to \\input."""
    out = [WRITTEN]
    appendix = False
    for chapter in document.chapters:
        if chapter.appendix and not appendix:
            out.append(r"\appendix")
            appendix = True
        out.append(rf"\chapter{{{inline(chapter.title)}}}\label{{{label(chapter)}}}")
        out += blocks_tex(chapter.blocks)
    return "\n\n".join(out) + "\n"


PREAMBLE = r"""% The packages and macros segsweep's chapter.tex and tables need (all in TeX Live's
% latex-recommended set). \input this from your own main file.
\usepackage[utf8]{inputenc}
\usepackage{textcomp}
\usepackage{graphicx}
\usepackage{booktabs}
\usepackage{longtable}
\usepackage{array}
\AtBeginDocument{\setlength{\LTcapwidth}{\textwidth}}% long tables' captions as wide as the text
\usepackage[hidelinks]{hyperref}
% a figure at the width it was drawn at (#1), never wider than the text
\newlength{\segsweepwidth}
\newcommand{\segsweepgraphic}[2]{\setlength{\segsweepwidth}{#1}%
  \ifdim\segsweepwidth>\linewidth\setlength{\segsweepwidth}{\linewidth}\fi%
  \includegraphics[width=\segsweepwidth]{#2}}
% a tabular shrunk to the text width when it is wider, else left as it is
\newcommand{\segsweepfit}[1]{\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{#1}}
"""


def main_tex(document: Document) -> str:
    """A standalone book around chapter.tex: title page, contents, lists, chapters."""
    return "\n".join(
        [
            r"\documentclass[11pt,a4paper]{report}",
            r"\usepackage[a4paper,margin=2.5cm]{geometry}",
            r"\input{preamble}",
            rf"\title{{{inline(document.title)}}}",
            rf"\author{{{inline(document.author)}}}",
            rf"\date{{{inline(document.date)}\\[1ex]\small {inline(document.generated)}}}",
            r"\begin{document}",
            r"\maketitle",
            r"\input{summary}",
            r"\tableofcontents",
            r"\listoftables",
            r"\listoffigures",
            r"\input{chapter}",
            r"\end{document}",
            "",
        ]
    )


def write_latex(document: Document, out: Path) -> None:
    """Write the LaTeX kit of the numbered `document` into the folder `out` (replacing it, so
    a table or figure the document no longer has leaves no file behind)."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    (out / "tables").mkdir(parents=True)
    (out / "figures").mkdir()
    for table in document.tables:
        (out / "tables" / f"{table.key}.tex").write_text(table_tex(table), encoding="utf-8")
    for figure in document.figures:
        shutil.copyfile(figure.path.with_suffix(".pdf"), out / "figures" / f"{figure.key}.pdf")
    (out / "summary.tex").write_text(summary_tex(document), encoding="utf-8")
    (out / "chapter.tex").write_text(chapter_tex(document), encoding="utf-8")
    (out / "preamble.tex").write_text(PREAMBLE, encoding="utf-8")
    (out / "main.tex").write_text(main_tex(document), encoding="utf-8")
