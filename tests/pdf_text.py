"""What a reader sees on each page of the thesis PDF, from poppler's `pdftotext -bbox`: the words
of each page's body (the running header and page number left out), and where captions fall.

A table's caption stands above it and a figure's below it (figure text — axis labels, ticks —
is text in the PDF, as the SVG figures keep their text), so a table caption that parts from its
table is the last thing on its page, and a figure caption that parts from its figure is the first.
"""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

NS = "{http://www.w3.org/1999/xhtml}"
MARGIN = 2.5 * 72 / 2.54  # the thesis's top and bottom page margins (2.5 cm), in points
CAPTION = re.compile(r"^(Table|Figure) [0-9A-Z]+\.\d+:$")


@dataclass
class Caption:
    label: str  # "Table 3.2"
    page: int  # 1-based
    before: int  # body words on its page before the caption
    after: int  # body words on its page after the caption


def body_words(pdf: Path) -> list[list[str]]:
    """The words of each page's body, in reading order."""
    xml = subprocess.run(
        ["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    pages = []
    for page in ET.fromstring(xml).iter(f"{NS}page"):
        height = float(page.get("height"))
        pages.append(
            [
                word.text or ""
                for word in page.iter(f"{NS}word")
                if float(word.get("yMin")) >= MARGIN - 1
                and float(word.get("yMax")) <= height - MARGIN + 1
            ]
        )
    return pages


def captions(pdf: Path, texts: dict[str, str]) -> tuple[list[Caption], list[list[str]]]:
    """Every caption of the body (`texts`: label → the caption's text after "Table 3.2:"),
    found on pages that are not lists of tables or figures; and the pages' words. A caption is
    its label with a colon followed by its text's first words ("as Table 3.2: each cell" in the
    running text is not one)."""
    pages = body_words(pdf)
    found = []
    for number, words in enumerate(pages, start=1):
        if words.count(".") > 20:  # the leaders of a contents list
            continue
        for i in range(len(words) - 1):
            label = f"{words[i]} {words[i + 1]}"
            text = texts.get(label[:-1], "").split()
            if CAPTION.match(label) and text and words[i + 2 : i + 5] == text[:3]:
                found.append(Caption(label[:-1], number, i, len(words) - i - 2 - len(text)))
    return found, pages
