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
from markupsafe import Markup

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
    it shows and makes its anchor."""

    key: str
    caption: str
    columns: list[str]
    rows: list[list[Any]]
    notes: list[str] = field(default_factory=list)
    group_header: list[tuple[str, int]] = field(default_factory=list)
    long: bool = False
    number: str = ""  # set by Document.number
    kind = "Table"
    block = "table"

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
    def short(self) -> str:
        return short_caption(self.caption)


@dataclass(eq=False)
class Figure:
    """A figure embedded as a data URI, so the HTML is one self-contained file."""

    key: str
    caption: str
    src: str
    number: str = ""  # set by Document.number
    kind = "Figure"
    block = "figure"

    @classmethod
    def of(cls, key: str, caption: str, png: str | Path) -> Figure:
        """A figure from a PNG file, inlined as base64."""
        data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
        return cls(slug(key), caption, "data:image/png;base64," + data)

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
    """The thesis: title page fields and chapters, numbered once by `number`."""

    title: str
    author: str
    date: str
    generated: str
    chapters: list[Chapter]
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)

    def number(self) -> Document:
        """Number tables and figures per chapter and kind in the order they are placed, and
        the numbered sections; check that every key is unique and every reference points to a
        placed table or figure."""
        counts: Counter[tuple[str, str]] = Counter()
        self.tables, self.figures, keys, cited = [], [], Counter(), []
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
