"""The thesis as a document model: chapters of sections, paragraphs, tables and figures, rendered
to HTML (and from it to PDF) by `segsweep.report.render`.

Tables and figures are objects that know their caption and their identity (`key`, e.g.
"hp-loss" for the table of hyperparameter "loss"), never their number: `Document.number` numbers
them per chapter and kind ("Table 4.2", "Figure A.1") in the order the document places them, once,
before rendering. A paragraph refers to a table or figure by the object (`Ref`), so the text
names whatever number it gets; the order in which chapters build their parts does not matter.
A key is readable and stable across reruns (it says what the table shows), so anchors such as
`#tab-hp-loss` survive a sweep that adds a grid.
"""

from __future__ import annotations

import base64
import re
import string
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import PIL.Image
from markupsafe import Markup

LONG_ROWS = 30  # a table of more rows may run over pages (about 45 fit on an A4 page)
NUMERIC = re.compile(r"^(–|-/-.*|[-+]?\d[\d.e+-]*(\W.*)?)$")  # numbers, "0.6 (0.5)", "-/- (0)"


def slug(text: str) -> str:
    """Lower-case letters, digits and single hyphens: a key or anchor made from any text."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "x"


def short_caption(caption: str) -> str:
    """The first sentence of a caption, for the lists of tables and figures."""
    first = caption.split(". ")[0]
    return first if first.endswith(".") else first + "."


@dataclass(eq=False)
class Table:
    """A table of display text (Markup for bold cells), with notes under it; `key` says what
    it shows and makes its anchor.

    An `interactive` table can be sorted, filtered and searched in the HTML; every renderer
    still prints all rows in order, and may highlight the `marked` ones."""

    key: str
    caption: str
    columns: list[str]
    rows: list[list[Any]]
    notes: list[str] = field(default_factory=list)
    group_header: list[tuple[str, int]] = field(default_factory=list)
    long: bool = False  # may run over pages, repeating its header; set for any of > LONG_ROWS rows
    number: str = ""  # set by Document.number
    interactive: bool = False  # HTML only: sort by any column, and the filters and search below
    filters: list[str] = field(default_factory=list)  # columns offered as level filters
    search: str | None = None  # the column a search box matches (substring, any case)
    marked: list[int] = field(default_factory=list)  # indexes of the rows to highlight
    marked_label: str = "marked rows"  # what the marked rows are, plural: "final models"
    unit: str = "rows"  # what a row is, plural: "showing 3 of 40 runs"
    kind = "Table"
    block = "table"

    def __post_init__(self) -> None:
        """Fail on controls the table cannot have: they would silently do nothing. A table of
        more rows than a page holds is long."""
        self.long = self.long or len(self.rows) > LONG_ROWS
        controlled = [*self.filters, *([self.search] if self.search else [])]
        if controlled and not self.interactive:
            raise ValueError(f"table {self.key}: filters and search need interactive=True")
        unknown = [name for name in controlled if name not in self.columns]
        if unknown:
            raise ValueError(f"table {self.key}: no columns {unknown}")
        if any(not 0 <= i < len(self.rows) for i in self.marked):
            raise ValueError(f"table {self.key}: marked rows {self.marked} out of range")

    @classmethod
    def of(cls, key: str, caption: str, frame: pd.DataFrame, **options: Any) -> Table:
        """A table from a frame of display text (format numbers before)."""
        rows = [list(row) for row in frame.itertuples(index=False)]
        return cls(slug(key), caption, [str(c) for c in frame.columns], rows, **options)

    @property
    def id(self) -> str:
        return f"tab-{self.key}"

    @property
    def numeric(self) -> list[bool]:
        """Per column: do all cells hold numbers (right-aligned)?"""
        return [
            all(NUMERIC.match(Markup(row[i]).striptags()) for row in self.rows)
            for i in range(len(self.columns))
        ]

    @property
    def levels(self) -> list[tuple[str, int, list[str]]]:
        """Per filter: column name, index and the distinct cell texts it offers, numbers in
        numeric order before text (the text a browser shows as the cell's content)."""
        result = []
        for name in self.filters:
            i = self.columns.index(name)
            texts = {Markup.escape(row[i]).striptags() for row in self.rows}
            result.append((name, i, sorted(texts, key=self._level_order)))
        return result

    @staticmethod
    def _level_order(text: str) -> tuple[bool, float, str]:
        number = re.match(r"[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?", text, re.IGNORECASE)
        return (number is None, float(number.group()) if number else 0.0, text)

    @property
    def short(self) -> str:
        return short_caption(self.caption)


@dataclass(eq=False)
class Figure:
    """A figure drawn by `segsweep.plotting.save`: `path` is its PNG, with the SVG that the HTML
    embeds (a data URI, so the HTML is one self-contained file) and the PDF that the LaTeX kit
    includes beside it; a figure without an SVG is embedded as its PNG."""

    key: str
    caption: str
    path: Path
    number: str = ""  # set by Document.number
    kind = "Figure"
    block = "figure"

    @classmethod
    def of(cls, key: str, caption: str, png: str | Path) -> Figure:
        return cls(slug(key), caption, Path(png))

    @property
    def src(self) -> str:
        """The figure as a data URI: its SVG where there is one, else its PNG."""
        svg = self.path.with_suffix(".svg")
        path, kind = (svg, "svg+xml") if svg.is_file() else (self.path, "png")
        return f"data:image/{kind};base64," + base64.b64encode(path.read_bytes()).decode("ascii")

    @property
    def width_pt(self) -> float:
        """The width the figure was drawn at, in points, to print it at its own size (its
        fonts at theirs): the SVG's width, else the PNG's pixels at its resolution."""
        svg = self.path.with_suffix(".svg")
        if svg.is_file():
            match = re.search(rb'<svg[^>]*\swidth="([\d.]+)pt"', svg.read_bytes()[:4096])
            if match:
                return float(match.group(1))
        with PIL.Image.open(self.path) as image:
            dpi = image.info.get("dpi", (72.0, 72.0))[0]
            return image.width * 72.0 / float(dpi)

    @property
    def id(self) -> str:
        return f"fig-{self.key}"

    @property
    def short(self) -> str:
        return short_caption(self.caption)


Item = Table | Figure


@dataclass(frozen=True)
class Ref:
    """A reference to a table or figure, which reads its number when the text is rendered;
    several items make one list ("Tables 4.1 and 4.2" is written "Table 4.1 and Table 4.2")."""

    items: tuple[Item, ...]

    def __html__(self) -> str:
        links = [
            Markup('<a class="ref" href="#{}">{} {}</a>').format(i.id, i.kind, i.number)
            for i in self.items
        ]
        return str(join_words(links))


def join_words(words: list[Any]) -> Markup:
    """ "a", "a and b", "a, b and c" (each word escaped unless it is Markup)."""
    words = [Markup.escape(w) for w in words]
    if len(words) <= 2:
        return Markup(" and ").join(words)
    return Markup(", ").join(words[:-1]) + Markup(" and ") + words[-1]


@dataclass(eq=False)
class Paragraph:
    """Running text: a sequence of text (escaped when rendered) and references."""

    parts: list[Any]
    block = "paragraph"

    def __html__(self) -> str:
        return str(Markup("").join(Markup.escape(part) for part in self.parts))

    @property
    def items(self) -> list[Item]:
        return [item for part in self.parts if isinstance(part, Ref) for item in part.items]


def text(template: str, **values: Any) -> Paragraph:
    """A paragraph from a format string whose fields are text, numbers, tables or figures (or
    lists of them): `text("{t} shows “{name}”.", t=table, name="loss")`; a table or figure
    becomes a reference to it."""
    parts: list[Any] = []
    for literal, name, spec, _ in string.Formatter().parse(template):
        if literal:
            parts.append(literal)
        if name is None:
            continue
        value = values[name]
        if isinstance(value, Table | Figure):
            parts.append(Ref((value,)))
        elif isinstance(value, list | tuple) and value and isinstance(value[0], Table | Figure):
            parts.append(Ref(tuple(value)))
        else:
            parts.append(format(value, spec))
    return Paragraph(parts)


@dataclass(eq=False)
class Code:
    """Preformatted text (the configuration as YAML)."""

    text: str
    block = "code"


@dataclass(eq=False)
class Section:
    """A titled part of a chapter; level 2 sections may be numbered ("4.1"), level 3 ones
    are not."""

    key: str
    title: str
    blocks: list[Any] = field(default_factory=list)
    level: int = 2
    numbered: bool = True
    number: str = ""  # set by Document.number
    block = "section"

    @property
    def id(self) -> str:
        return self.key

    @property
    def heading(self) -> str:
        return f"{self.number} {self.title}" if self.number else self.title


@dataclass(eq=False)
class Chapter:
    """A chapter: `label` is its number ("1") or letter ("A", appendices)."""

    key: str
    label: str
    title: str
    blocks: list[Any] = field(default_factory=list)
    appendix: bool = False

    @property
    def id(self) -> str:
        return self.key

    @property
    def heading(self) -> str:
        return f"{self.label} {self.title}"

    @property
    def sections(self) -> list[Section]:
        return [b for b in self.blocks if isinstance(b, Section) and b.level == 2]


def walk(blocks: list[Any]) -> Iterator[Any]:
    """Every block of `blocks`, sections' blocks included, in document order."""
    for block in blocks:
        yield block
        if isinstance(block, Section):
            yield from walk(block.blocks)


@dataclass(eq=False)
class Document:
    """The thesis: title page fields, the one-page summary that follows the title page (the
    findings, each sentence citing its table or figure) and the chapters, numbered once by
    `number`."""

    title: str
    author: str
    date: str
    generated: str
    chapters: list[Chapter]
    summary: list[Paragraph] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)

    def find(self, key: str) -> Item | None:
        """The placed table or figure of `key` (after `number`), None when there is none."""
        return next((item for item in (*self.tables, *self.figures) if item.key == key), None)

    def number(self) -> Document:
        """Number tables and figures per chapter and kind in the order they are placed, and
        the numbered sections; check that every key is unique and every reference points to a
        placed table or figure."""
        counts: Counter[tuple[str, str]] = Counter()
        self.tables, self.figures, keys = [], [], Counter()
        cited = [item for block in self.summary for item in block.items]
        for chapter in self.chapters:
            sections = 0
            for block in walk(chapter.blocks):
                if isinstance(block, Table | Figure):
                    counts[chapter.label, block.kind] += 1
                    block.number = f"{chapter.label}.{counts[chapter.label, block.kind]}"
                    (self.tables if isinstance(block, Table) else self.figures).append(block)
                    keys[block.id] += 1
                elif isinstance(block, Section) and block.level == 2 and block.numbered:
                    sections += 1
                    block.number = f"{chapter.label}.{sections}"
                elif isinstance(block, Paragraph):
                    cited += block.items
        duplicated = sorted(key for key, n in keys.items() if n > 1)
        if duplicated:
            raise ValueError(f"tables or figures share a key: {duplicated}")
        placed = {id(item) for item in (*self.tables, *self.figures)}
        missing = [item.key for item in cited if id(item) not in placed]
        if missing:
            raise ValueError(f"the text refers to tables or figures it does not show: {missing}")
        return self
