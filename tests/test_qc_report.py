"""The thesis section "Quality control of predictions", rendered from fabricated qc.csv and test
per_patient.csv files (HTML and the LaTeX kit): the measures and their calibration in words,
rho with its interval and n per measure, the flagged patients' median Dice against the others'
and the sentence that reads the result."""

from __future__ import annotations

import math
import re
from html import unescape
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats
from test_qc_validation import DICE, per_patient_table, qc_table

from segsweep.numerals import number
from segsweep.report.chapters import quality
from segsweep.report.document import Chapter, Document
from segsweep.report.inputs import ReportInputs
from segsweep.report.latex import chapter_tex, table_tex
from segsweep.report.render import render_html


def inputs_of(tmp_path: Path, qcs: dict[str, pd.DataFrame], folds: int = 5) -> ReportInputs:
    unused = Path("unused")
    for run, qc in qcs.items():
        qc.to_csv(tmp_path / f"{run}-qc.csv", index=False)
        per_patient_table(("processed", "native")).to_csv(tmp_path / f"{run}-test.csv", index=False)
    return ReportInputs(
        config={"split": {"folds": folds}},
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
        tables={},
        figures={},
        final=unused,
        outlines={},
        unlabelled={},
        provenance={},
        final_qc={run: tmp_path / f"{run}-qc.csv" for run in qcs},
        test_per_patient={run: tmp_path / f"{run}-test.csv" for run in qcs},
    )


def document_of(inputs: ReportInputs) -> Document:
    chapter = Chapter("results", "4", "Results", quality.sections(inputs))
    return Document("T", "A", "2020-01-01", "generated", [chapter]).number()


def plain(html: str) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", "", html)))


@pytest.fixture
def case(tmp_path: Path) -> Document:
    qcs = {"ensemble": qc_table(), "single": qc_table(agreement=math.nan)}
    return document_of(inputs_of(tmp_path, qcs))


def test_the_rho_table_holds_rho_its_interval_and_n_per_measure(case: Document) -> None:
    table = case.find("qc-rho")
    assert table.columns == ["Model", "Measure", "Patients", "ρ", "95 % CI", "p", "Note"]
    rows = {(row[0], row[1]): row for row in table.rows}
    assert len(rows) == 8  # 2 models × 4 measures
    agreement = rows["ensemble", "Agreement"]
    rho = stats.spearmanr(qc_table()["agreement"], DICE).statistic
    assert agreement[2] == "12" and agreement[3] == number(rho)
    assert re.fullmatch(r"\[0\.\d{3}, (0\.\d{3}|1\.000)\]", agreement[4])  # excludes 0
    assert rows["ensemble", "Uncertainty"][3] == "-1.000"
    single = rows["single", "Agreement"]
    assert single[2:6] == ["0", "–", "–", "–"]
    assert "a model of one member has no pairwise agreement" in single[6]
    assert "native space" in table.caption  # the test tables have native Dice
    assert "2000 resamples" in table.notes[0]


def test_the_flag_table_and_sentence_state_every_n(case: Document) -> None:
    table = case.find("qc-flags")
    assert table.rows[0] == ["ensemble", "12", "3", "0.550", "9", "0.850"]
    text = plain(render_html(case))
    assert (
        "The predictor flagged 3 of the 12 test patients of ensemble, median Dice 0.550, "
        "against 0.850 for the 9 not flagged; the predictor flagged 3 of the 12 test patients "
        "of single" in text
    )


def test_the_text_says_what_the_measures_are_and_how_they_were_calibrated(case: Document) -> None:
    text = plain(render_html(case))
    assert "4.1 Quality control of predictions" in text
    for words in [
        "mean pairwise Dice between the predictions of the 5 fold models",
        "mean normalised entropy of the fold-averaged class probabilities",
        "Wasserstein-1 distance",
        "on its out-of-fold validation patients",
        "seen in training by the other folds' models, so their agreement and uncertainty are "
        "optimistic",
        "results/final/<run>/qc.csv",
        "results/final/<run>/test/per_patient.csv",
    ]:
        assert words in text, words


def test_one_sentence_reads_whether_agreement_predicts_dice(case: Document) -> None:
    text = plain(render_html(case))
    interval = case.find("qc-rho").rows[0][4]
    assert (
        f"For ensemble, the 95 % interval of agreement's ρ over the 12 test patients, "
        f"{interval}, excludes 0: the test patients on which the fold models agreed more were "
        "segmented better; of the other measures, the interval of uncertainty (ρ = -1.000, "
        "[-1.000, -1.000], n = 12)" in text
    )
    assert (
        "For single, agreement's ρ is undefined (agreement is missing for every patient; a "
        "model of one member has no pairwise agreement), so these test patients cannot say "
        "whether agreement predicts Dice" in text
    )


def test_the_latex_kit_has_the_section_and_its_tables(case: Document) -> None:
    tex = chapter_tex(case)
    assert r"\section{Quality control of predictions}\label{sec:prediction-qc}" in tex
    assert r"\input{tables/qc-rho}" in tex and r"\input{tables/qc-flags}" in tex
    rho = table_tex(case.find("qc-rho"))
    assert r"$\rho$" in rho and "ρ" not in rho
    assert r"ensemble & 12 & 3 & 0.550 & 9 & 0.850 \\" in table_tex(case.find("qc-flags"))


def test_an_interval_including_zero_is_read_as_no_evidence(tmp_path: Path) -> None:
    unrelated = qc_table(agreement=qc_table()["intensity_distance"])
    document = document_of(inputs_of(tmp_path, {"m": unrelated}))
    text = plain(render_html(document))
    assert "includes 0: on these patients agreement does not detectably predict Dice" in text


def test_without_a_qc_table_there_is_no_section(tmp_path: Path) -> None:
    assert quality.sections(inputs_of(tmp_path, {})) == []
