"""Figures are written as valid PNG + SVG for the files the Snakefile declares, reproducibly."""

from __future__ import annotations

import struct
from pathlib import Path

import pandas as pd
import pytest
from test_analysis import analysis_args, cli_args, write_fake_results

from segsweep.evaluate import outlines
from segsweep.report import figures
from segsweep.tasks import stages

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DECLARED = ["jitter_labels", "jitter_loss", "jitter_lr", "boxplot_val", "boxplot_test"]
DECLARED += ["training_curves", "histogram_val", "histogram_test", "checkpoint_scores", "ranking"]
DECLARED += ["cost"]


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (after checking the signature)."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    results = write_fake_results(tmp_path_factory.mktemp("figures"))
    stages.analysis(analysis_args(results))
    stages.figures(cli_args(results))
    return results


@pytest.mark.parametrize("name", DECLARED)
def test_declared_figures_are_valid_png_with_svg(results: Path, name: str) -> None:
    png = results / "figures" / f"{name}.png"
    width, height = png_size(png)
    assert width > 300 and height > 200
    svg = png.with_suffix(".svg").read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg


def test_one_boxplot_panel_per_final_model_is_taller(results: Path) -> None:
    # two final models: two panels stacked, so taller than one panel of the same width
    single = results.parent / "single.png"
    slices = pd.read_csv(results / "final" / "default" / "test" / "per_slice.csv")
    figures.boxplot({"default": slices}, single, "one model")
    two = png_size(results / "figures" / "boxplot_test.png")
    one = png_size(single)
    assert two[1] > 1.6 * one[1]


def test_jitter_plot_is_reproducible(results: Path, tmp_path: Path) -> None:
    runs = pd.read_csv(results / "summary" / "runs.csv")
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    figures.jitter_plot(runs, "loss", "labels", first)
    figures.jitter_plot(runs, "loss", "labels", second)
    assert first.read_bytes() == second.read_bytes()
    assert first.with_suffix(".svg").read_bytes() == second.with_suffix(".svg").read_bytes()


def test_jitter_plot_without_hue(results: Path, tmp_path: Path) -> None:
    runs = pd.read_csv(results / "summary" / "runs.csv")
    out = tmp_path / "jitter.png"
    figures.jitter_plot(runs, "lr", None, out)
    assert png_size(out)[0] > 300


def test_rolling_window_grows_with_the_log() -> None:
    assert [figures.rolling_window(n) for n in (1, 6, 60, 1000)] == [2, 2, 12, 51]


def test_twelve_linearly_spaced_slices() -> None:
    assert outlines.twelve_slices(24).tolist() == [0, 2, 4, 6, 8, 10, 13, 15, 17, 19, 21, 23]
    assert outlines.twelve_slices(5).tolist() == [0, 1, 2, 3, 4]


def test_outlines_and_the_patients_shown(tmp_path: Path) -> None:
    import numpy as np

    per_patient = pd.DataFrame(
        {
            "patient_id": ["a", "b", "c", "d", "a"],
            "class": ["foreground"] * 4 + ["femur"],
            "dice": [0.9, 0.5, float("nan"), 0.7, 0.1],
        }
    )
    wanted = ["best", "median", "worst", "c", "zz"]
    assert outlines.shown_patients(per_patient, wanted) == [
        ("best", "a"),
        ("median", "d"),
        ("worst", "b"),
        ("patient", "c"),
    ]
    two = per_patient[per_patient["patient_id"].isin(["a", "b"])]
    assert outlines.shown_patients(two, ["best", "median", "worst"]) == [
        ("best-median", "a"),
        ("worst", "b"),
    ]
    image = np.random.default_rng(0).random((8, 16, 16))
    reference = np.zeros((8, 16, 16), bool)
    reference[2:6, 4:12, 4:12] = True
    out = tmp_path / "outlines.png"
    outlines.slice_outlines(image, reference, np.roll(reference, 1, axis=2), out, "p")
    assert png_size(out)[0] > png_size(out)[1]  # two rows of six (here: eight) slices


def test_cost_figure_of_ties_a_single_run_and_no_measured_cost(tmp_path: Path) -> None:
    points = pd.DataFrame(
        {
            "configuration": ["a", "b", "c", "d"],
            "score": [0.5, 0.5, 0.4, 0.7],
            "hours": [1.0, 1.0, 1.0, 2.0],  # a and b tie, both on the front
            "front": [True, True, False, True],
        }
    )
    ties, single, unmeasured = (tmp_path / f"{n}.png" for n in ("ties", "single", "none"))
    figures.cost_plot(points, "device_s", ties, "score", {"d": "d (overall)"})
    figures.cost_plot(points.iloc[[3]], "wall_s", single, "score", {})
    figures.cost_plot(points.assign(hours=float("nan")), "wall_s", unmeasured, "score", {})
    for png in (ties, single, unmeasured):
        width, height = png_size(png)
        assert width > 300 and height > 200 and png.with_suffix(".svg").is_file()


def test_pruned_configurations_have_their_own_marker_and_jitter_says_the_rung(
    tmp_path: Path,
) -> None:
    points = pd.DataFrame(
        {"configuration": ["a", "b", "c"], "score": [0.5, 0.7, 0.6], "hours": [1.0, 3.0, 1.0]}
    )
    points["front"] = [False, True, True]
    cost = tmp_path / "cost.png"
    figures.cost_plot(points, "device_s", cost, "score", {"b": "b"}, pruned={"a", "c"})
    assert "pruned at a rung" in cost.with_suffix(".svg").read_text()
    runs_df = pd.DataFrame({"run_id": ["a", "b", "c"], "pruned_at": [1, None, 1]})
    assert figures.pruned_configurations(runs_df) == {"a", "c"}
    assert figures.pruned_configurations(runs_df.drop(columns="pruned_at")) == set()
    jitter = tmp_path / "jitter.png"
    runs = pd.DataFrame({"lr": [0.1, 0.01, 0.1], "score": [0.5, 0.7, 0.6]})
    title = "All 3 configurations at rung 1, 4 epochs"
    figures.jitter_plot(runs, "lr", None, jitter, "score", title)
    assert title in jitter.with_suffix(".svg").read_text()
