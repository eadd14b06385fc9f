"""The preprocessing chapter words a planned window and an automatic centre."""

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
        "cropped to a square in-plane window of 116 mm, planned from the data: the smallest "
        "window that, around each training and validation subject's own crop centre, holds "
        "every labelled voxel, widened by 10 % on each side around the centroid of the image's "
        "foreground (Otsu threshold)" in text
    )
    assert "“auto”" not in text  # no raw config value in the prose
    assert "Distance of the crop centre (the centroid of the image's foreground" in text
