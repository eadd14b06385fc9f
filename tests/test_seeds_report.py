"""The thesis section "Seed noise" and its summary sentence, rendered from fabricated seed
tables (HTML and the LaTeX kit), and the layout's seed tables."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

import pandas as pd
import pytest
from test_seeds import comparison_case, scores_of

from segsweep import layout
from segsweep.io.records import write_csv
from segsweep.report.chapters import seeds
from segsweep.report.document import Chapter, Document
from segsweep.report.inputs import ReportInputs
from segsweep.report.latex import chapter_tex, summary_tex, table_tex
from segsweep.report.render import render_html
from segsweep.sweep.seeds import (
    PATIENT_COLUMNS,
    seed_comparisons,
    seed_spread,
    winner_stability,
)

SELECTION = {
    "metric": "dice",
    "aggregate": "mean",
    "level": "patient",
    "class": "foreground",
    "higher_is_better": True,
}


def inputs_of(tables: dict[str, Path]) -> ReportInputs:
    unused = Path("unused")
    return ReportInputs(
        config={"selection": SELECTION},
        sweep={},
        manifest=unused,
        dropped=None,
        records={},
        splits=unused,
        checks=None,
        centre_error=None,
        kept_fraction=None,
        n4_qc={},
        crop_qc={},
        tables=tables,
        figures={},
        final=unused,
        outlines={},
        unlabelled={},
        provenance={},
    )


def written(tmp_path: Path, scores: pd.DataFrame, per_patient: pd.DataFrame) -> ReportInputs:
    tables = {
        "seed_spread": seed_spread(scores),
        "seed_comparisons": seed_comparisons(scores, per_patient, True),
        "seed_winners": winner_stability(scores, True),
    }
    for name, table in tables.items():
        write_csv(table, tmp_path / f"{name}.csv")
    return inputs_of({name: tmp_path / f"{name}.csv" for name in tables})


def document_of(inputs: ReportInputs) -> Document:
    chapter = Chapter("results", "4", "Results", seeds.sections(inputs))
    document = Document("T", "A", "2020-01-01", "generated", [chapter]).number()
    document.summary = [p for p in [seeds.summary_sentence(inputs, document)] if p is not None]
    return document.number()


def plain(html: str) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", "", html)))


@pytest.fixture
def case(tmp_path: Path) -> Document:
    return document_of(written(tmp_path, *comparison_case()))


def test_the_spread_table_holds_the_seed_numbers_best_first(case: Document) -> None:
    table = case.find("seed-spread")
    assert table.columns == ["Setting", "Seeds", "Mean", "SD", "Min", "Max", "Range"]
    assert [row[0] for row in table.rows] == ["good", "close", "noisy", "far"]
    assert table.rows[0] == ["good", "2", "0.820", "0.028", "0.800", "0.840", "0.040"]
    text = plain(render_html(case))
    assert "Table 4.1 shows how far the score of each of the 4 repeated settings moved" in text
    assert "a median SD over seeds of 0.021" in text  # of 0.007, 0.014, 0.028, 0.042


def test_the_comparisons_name_the_test_and_the_patients(case: Document) -> None:
    table = case.find("seed-comparisons")
    rows = {row[0]: row for row in table.rows}
    assert list(rows) == ["close", "noisy", "far"]
    assert rows["close"][2] == "0.005" and rows["close"][7] == "12"
    assert rows["close"][-1] == "no" and rows["far"][-1] == "yes" and rows["noisy"][-1] == "no"
    text = plain(render_html(case))
    assert "two-sided Wilcoxon signed-rank test" in text
    assert "tests it over the 12 patients both settings score" in text
    assert "it is distinguishable from 1 setting (far)" in text
    assert "Holm's correction over the 3 comparisons" in text


def test_the_summary_says_whether_the_best_beats_the_runner_up(case: Document) -> None:
    text = plain(render_html(case))
    assert (
        "Beyond seed noise, the best setting, good (2 seeds), is not distinguishable from the "
        "runner-up, close: their seed-averaged scores differ by 0.005 against a pooled seed SD "
        "of 0.021 (two-sided Wilcoxon signed-rank over 12 patients, p (Holm) = 0.001; "
        "Table 4.2)."
    ) in text
    assert r"p (Holm) = 0.001; Table~\ref{tab:seed-comparisons}" in summary_tex(case)


def test_winner_stability_sentence(tmp_path: Path) -> None:
    scores = scores_of({"a": [0.80, 0.85, 0.83], "b": [0.82, 0.81, 0.80], "c": [0.70, 0.90]})
    document = document_of(written(tmp_path, scores, pd.DataFrame(columns=PATIENT_COLUMNS)))
    text = plain(render_html(document))
    assert "a ranked first at 1 of 3 seed indices (33 %); b, c at the others." in text
    assert "no test defined" in text  # no per-patient values: nothing to pair


def test_the_latex_kit_has_the_section_and_its_tables(case: Document) -> None:
    tex = chapter_tex(case)
    assert r"\section{Seed noise}\label{sec:seed-noise}" in tex
    assert r"\input{tables/seed-spread}" in tex and r"\input{tables/seed-comparisons}" in tex
    assert r"good & 2 & 0.820 & 0.028" in table_tex(case.find("seed-spread"))
    assert r"$\Delta$ mean" in table_tex(case.find("seed-comparisons"))


def test_without_seed_tables_there_is_no_section_and_no_sentence(tmp_path: Path) -> None:
    document = document_of(inputs_of({}))
    assert document.chapters[0].blocks == [] and document.summary == []
    single = written(tmp_path, scores_of({"a": [0.8], "b": [0.7]}), pd.DataFrame())
    assert seeds.sections(single) == []


def test_the_layout_lists_the_seed_tables_only_with_seeds() -> None:
    files = layout.segmentation_thesis_files(["loss"], external=False, seeds=True)
    assert files["table_seed_spread"] == layout.SEED_SPREAD
    assert files["table_seed_comparisons"] == layout.SEED_COMPARISONS
    assert files["table_seed_winners"] == layout.SEED_WINNERS
    assert not any("seed" in k for k in layout.segmentation_thesis_files(["loss"], False))
    named = layout.named_under("res", files, "table_")
    assert named["seed_spread"] == Path("res/budget/seed_spread.csv")
