"""The report's document model: numbers follow where tables and figures stand in the document,
not the order in which the chapters built them; references read the numbers when rendered; keys
make stable anchors and must be unique; a reference to something not shown is an error."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pandas as pd
import PIL.Image
import pytest
from markupsafe import Markup

from segsweep.numerals import number, percent
from segsweep.report.document import (
    Chapter,
    Document,
    Figure,
    Paragraph,
    Section,
    Table,
    slug,
    text,
)
from segsweep.report.render import render_html

FRAME = pd.DataFrame({"Level": ["a", "b"], "Mean": ["0.500", "0.700"]})


def table(key: str) -> Table:
    return Table.of(key, f"The {key} table. More.", FRAME)


PNG = Path(tempfile.mkdtemp()) / "figure.png"
PIL.Image.new("RGB", (150, 75)).save(PNG, dpi=(150, 150))


def figure(key: str) -> Figure:
    return Figure(key, f"The {key} figure.", PNG)


def document(*chapters: Chapter) -> Document:
    return Document("T", "A", "2020-01-01", "made", list(chapters)).number()


def test_numbers_follow_placement_not_creation_order() -> None:
    first, second = table("first"), table("second")  # built in this order …
    later = figure("later")
    chapter = Chapter("c", "2", "C", [text("{t} comes first.", t=second), second, later, first])
    appendix = Chapter("x", "A", "X", [table("all"), Section("s", "S", [figure("deep")])])
    doc = document(chapter, appendix)
    assert (second.number, first.number, later.number) == ("2.1", "2.2", "2.1")
    assert [t.key for t in doc.tables] == ["second", "first", "all"]
    assert [f.number for f in doc.figures] == ["2.1", "A.1"]
    assert doc.chapters[1].blocks[1].number == "A.1"  # numbered section of the appendix


def test_references_render_the_number_the_item_got() -> None:
    one, two, three = table("one"), table("two"), figure("three")
    paragraph = text("See {items} and {f}; “{name}” & co.", items=[one, two], f=three, name="x<y")
    chapter = Chapter("c", "4", "Results", [paragraph, three, two, one])
    document(chapter)
    html = Markup.escape(paragraph)
    assert html == (
        'See <a class="ref" href="#tab-one">Table 4.2</a> and '
        '<a class="ref" href="#tab-two">Table 4.1</a> and '
        '<a class="ref" href="#fig-three">Figure 4.1</a>; “x&lt;y” &amp; co.'
    )


def test_lists_of_three_references_use_commas() -> None:
    items = [table(k) for k in ("a", "b", "c")]
    paragraph = text("{t}", t=items)
    document(Chapter("c", "1", "C", [paragraph, *items]))
    assert Markup.escape(paragraph).striptags() == "Table 1.1, Table 1.2 and Table 1.3"


def test_keys_are_unique_and_references_must_be_shown() -> None:
    with pytest.raises(ValueError, match="share a key.*tab-same"):
        document(Chapter("c", "1", "C", [table("same"), table("same")]))
    hidden = table("hidden")
    with pytest.raises(ValueError, match="does not show.*hidden"):
        document(Chapter("c", "1", "C", [text("{t}", t=hidden)]))


def test_keys_are_slugs_of_what_an_item_shows() -> None:
    assert slug("hp-lr_policy") == "hp-lr-policy" and slug("pair-loss-labels") == (
        "pair-loss-labels"
    )
    assert table("Outlines dice EPI-001").id == "tab-outlines-dice-epi-001"


def test_the_template_renders_blocks_in_document_order() -> None:
    late, early = table("late"), table("early")
    section = Section("part", "Part", [Paragraph(["inside"]), late])
    doc = document(Chapter("c", "3", "Methods", [early, text("{t}", t=late), section]))
    html = render_html(doc)
    assert html.index('id="tab-early"') < html.index('id="part"') < html.index('id="tab-late"')
    assert "<h2>3.1 Part</h2>" in html and "Table 3.2: The late table." in html
    assert '<a href="#part">3.1 Part</a>' in html  # the contents list numbered sections


def test_numbers_never_show_a_negative_zero_or_hide_a_rare_share() -> None:
    assert number(-0.0002) == "0.000" and number(-0.002) == "-0.002" and number(None) == "–"
    assert [percent(s) for s in (0.0, 0.004, 0.5, 0.996, 1.0)] == [
        "0 %",
        "0.4 %",
        "50 %",
        "99.6 %",
        "100 %",
    ]


RUNS = pd.DataFrame(
    {
        "Run": ["lr-0.01", "lr-0.001", "lr-1e-4"],
        "lr": ["0.01", "0.001", "1e-4"],
        "Score": ["0.500", "–", "0.700"],
    }
)


def runs_table(**options: object) -> Table:
    return Table.of("runs", "Runs.", RUNS, interactive=True, **options)


def test_an_interactive_table_keeps_the_static_rows_and_hides_its_controls() -> None:
    table = runs_table(filters=["lr"], search="Run", marked=[1], marked_label="final models")
    html = render_html(document(Chapter("x", "A", "X", [table])))
    body = html[html.index("<tbody>") : html.index("</tbody>")]
    assert [body.index(f"<td>{run}</td>") for run in RUNS["Run"]] == sorted(
        body.index(f"<td>{run}</td>") for run in RUNS["Run"]
    )  # every row, in document order, for the PDF
    assert body.count('<tr class="marked">') == 1 and '<tr class="marked"><td>lr-0.001' in body
    assert '<div class="table-controls" hidden>' in html  # shown by the script only
    levels = '<option value="">all</option><option value="1e-4">1e-4</option>'
    assert levels + '<option value="0.001">0.001</option><option value="0.01">0.01</option>' in html
    assert "final models only" in html and "showing 3 of 3 rows" in html


def test_a_static_table_has_no_controls_but_the_page_has_an_inline_script() -> None:
    html = render_html(document(Chapter("x", "A", "X", [table("plain")])))
    assert '<div class="table-controls"' not in html and '<tr class="marked">' not in html
    assert re.search(r"<script>\s*/\* Interactive tables", html)
    assert not re.search(r"<script[^>]*\bsrc=|<link\b|https?://", html)  # works offline


def test_table_controls_must_name_columns_and_rows_it_has() -> None:
    with pytest.raises(ValueError, match="no columns.*'seed'"):
        runs_table(filters=["seed"])
    with pytest.raises(ValueError, match="out of range"):
        runs_table(marked=[3])
    with pytest.raises(ValueError, match="need interactive"):
        Table.of("runs", "Runs.", RUNS, search="Run")
