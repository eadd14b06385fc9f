"""The preprocessing chapter says prominently when the crop cuts labelled structure: a warning
section opening the chapter names every subject and class kept below 99 %, with how much was
kept, and the kept-fraction table marks those cells. Also the wording of a planned window and
an automatic centre."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from test_analysis import CONFIG, SWEEP, write_fake_results

from segsweep.report.chapters import preprocessing
from segsweep.report.document import Document
from segsweep.report.inputs import ReportInputs
from segsweep.report.render import render_html


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    return write_fake_results(tmp_path)


def chapter_html(results: Path, config: dict = CONFIG) -> tuple[str, Document]:
    inputs = ReportInputs.under(results, config, SWEEP, [])
    chapter = preprocessing.chapter(inputs, inputs_used=False)
    document = Document("t", "a", "2020-01-01", "now", [chapter]).number()
    return render_html(document), document


def write_kept(results: Path, rows: dict) -> None:
    pd.DataFrame(rows).to_csv(results / "crop" / "kept_fraction.csv", index=False)


def test_a_cut_class_opens_the_chapter_with_a_warning(results: Path) -> None:
    write_kept(
        results,
        {
            "subject_id": ["epi-000", "epi-001", "jopp-000"],
            "femur": [1.0, 0.9899, 0.995],
            "fibula": [None, 0.5, 1.0],
        },
    )
    html, document = chapter_html(results)
    (chapter,) = document.chapters
    warning = chapter.blocks[0]
    assert warning.key == "crop-cuts" and warning.css == "warning"
    body = html[html.index("<h1>2 Preprocessing</h1>") :]
    # first in the chapter, drawn as a warning box, unnumbered
    assert re.match(
        r"<h1>2 Preprocessing</h1>\s*<section id=\"crop-cuts\" class=\"warning\">", body
    )
    assert '<h2 class="unnumbered">Warning: the crop cuts labelled structure</h2>' in body
    text = re.sub(r"<[^>]+>", "", body[: body.index("</section>")])
    assert "for 1 of 3 labelled subjects it keeps less than 99 % of a class" in text
    # every cut, smallest first, with its kept share (rounded down: 98.9 %, not 99.0 %)
    assert "fibula of epi-001 (50.0 %); femur of epi-001 (98.9 %) (marked in Table 2.2)" in text
    assert "Enlarge preprocess.crop.window_mm or set it to “auto”" in text  # a fixed window
    assert "jopp-000" not in text  # 99.5 % is not cut
    # the kept-fraction table marks the cut cells only
    assert html.count('<span class="cut">') == 2
    assert '<span class="cut">0.500</span>' in html and '<span class="cut">0.990</span>' in html


def test_no_warning_when_every_class_is_kept(results: Path) -> None:
    write_kept(results, {"subject_id": ["epi-000", "epi-001"], "femur": [1.0, 0.995]})
    html, document = chapter_html(results)
    assert "crop-cuts" not in html and 'class="cut"' not in html
    assert not any(getattr(b, "key", None) == "crop-cuts" for b in document.chapters[0].blocks)


def test_the_warning_lists_a_dozen_cuts_and_counts_the_rest(results: Path) -> None:
    subjects = [f"s{i:02d}" for i in range(15)]
    write_kept(results, {"subject_id": subjects, "brain": [0.5 + i / 100 for i in range(15)]})
    html, _ = chapter_html(results)
    text = re.sub(r"<[^>]+>", "", html)
    assert "for 15 of 15 labelled subjects" in text
    assert "brain of s00 (50.0 %)" in text and "brain of s11 (61.0 %)" in text
    assert "s12 (" not in text and "and 3 more classes" in text


def test_a_planned_window_and_an_automatic_centre_are_worded(results: Path) -> None:
    centre = pd.read_csv(results / "crop" / "centre_error.csv")
    centre.insert(2, "window_mm", 116.0)
    centre.assign(method="foreground").to_csv(results / "crop" / "centre_error.csv", index=False)
    config = {
        **CONFIG,
        "data": {**CONFIG["data"], "source": "manifest"},
        "preprocess": {
            **CONFIG["preprocess"],
            "crop": {
                "window_mm": "auto",
                "margin": 0.1,
                "size": 64,
                "slices": 24,
                "centre": "auto",
            },
        },
    }
    html, _ = chapter_html(results, config)
    body = html[html.index("<h1>2 Preprocessing</h1>") :]
    text = re.sub(r"<[^>]+>", "", body).replace("&#39;", "'")
    assert (
        "cropped to a square in-plane window of 116 mm around the centroid of the image's "
        "foreground (Otsu threshold) and resampled to 64 × 64 pixels. The window was planned "
        "from the data: the smallest square that, around each training and validation "
        "subject's own crop centre, holds every labelled voxel, widened by 10 % on each side "
        "(test subjects did not enter the plan)." in text
    )
    assert "“auto”" not in text  # no raw config value in the prose
    # the fakes' kept fractions are cut: a planned window's advice is the margin
    assert "raise preprocess.crop.margin" in text and "Enlarge" not in text
    assert "Distance of the crop centre (the centroid of the image's foreground" in text
    assert "The zone is the surface midway between the two classes with the widest" in text


def test_the_interface_note_names_the_knee_only_for_the_knee_cohort() -> None:
    from segsweep.report.chapters.preprocessing import interface_note

    labels = {"vertebra": 2, "disc": 5}
    assert "tibia" in interface_note(labels, knee=True)
    assert "tibia" not in interface_note(labels, knee=False)
    assert "widest interface" in interface_note(labels, knee=False)
    assert interface_note({"brain": 1}, knee=False) == ""
