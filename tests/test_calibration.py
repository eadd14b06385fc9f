"""Calibration of the classification task's final models (`segsweep.evaluate.calibration`): the
ECE against independent computations (scikit-learn's calibration_curve with numpy.histogram's
counts, a plain loop), known cases, its patient bootstrap, the analysis's calibration and
reliability tables, the reliability diagram and the thesis's Calibration section."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import PIL.Image
import pytest
from sklearn.calibration import calibration_curve
from test_classification_analysis import CONFIG, SWEEP, write_fake_results
from test_classification_report import CLASSES, per_study, write_results
from test_classification_report import CONFIG as REPORT_CONFIG
from test_classification_report import SWEEP as REPORT_SWEEP

from segsweep.evaluate.calibration import (
    CALIBRATION_COLUMNS,
    RELIABILITY_COLUMNS,
    TOP_LABEL,
    bin_count,
    calibration_table,
    expected_calibration_error,
    reliability_table,
)
from segsweep.evaluate.predictions import study_table
from segsweep.report import classification_figures as cf
from segsweep.report.chapters import classification as chapters
from segsweep.report.document import Figure, Paragraph, Section, walk
from segsweep.sweep.classification_analysis import write_classification_tables
from segsweep.sweep.grammar import sweep_runs


def loop_ece(score: np.ndarray, outcome: np.ndarray, bins: int) -> float:
    """ECE by a plain loop over the bins [b/B, (b+1)/B), the last closed, empty bins skipped."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for b in range(bins):
        last = b == bins - 1
        inside = [
            i
            for i, p in enumerate(score)
            if edges[b] <= p and (p < edges[b + 1] or (last and p <= 1.0))
        ]
        if inside:
            gap = np.mean(outcome[inside]) - np.mean(score[inside])
            total += len(inside) / len(score) * abs(gap)
    return total


def sklearn_ece(score: np.ndarray, outcome: np.ndarray, bins: int) -> float:
    """ECE from calibration_curve(strategy="uniform") (non-empty bins only) weighted by
    numpy.histogram's counts of the same bins."""
    observed, predicted = calibration_curve(outcome, score, n_bins=bins, strategy="uniform")
    counts = np.histogram(score, bins=np.linspace(0.0, 1.0, bins + 1))[0]
    return float(np.sum(counts[counts > 0] / len(score) * np.abs(observed - predicted)))


def table_of(score: np.ndarray, outcome: np.ndarray, patients: list[str] | None = None):
    """A binary per_study table: one study (and patient, unless given) per score."""
    n = len(score)
    true = np.where(outcome == 1, "abnormal", "normal")
    return pd.DataFrame(
        {
            "study_id": [f"s{i}" for i in range(n)],
            "patient_id": patients or [f"p{i}" for i in range(n)],
            "true": true,
            "p_normal": 1 - score,
            "p_abnormal": score,
            "predicted": np.where(score >= 0.5, "abnormal", "normal"),
        }
    )


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("bins", [2, 5, 10])
def test_the_ece_equals_independent_computations_on_random_data(seed: int, bins: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 200))
    score = rng.random(n) ** 2  # skewed towards 0: uneven bins
    outcome = (rng.random(n) < score**0.5).astype(float)  # miscalibrated
    ece = expected_calibration_error(score, outcome, bins)
    assert ece == pytest.approx(sklearn_ece(score, outcome, bins), abs=1e-12)
    assert ece == pytest.approx(loop_ece(score, outcome, bins), abs=1e-12)


def test_empty_bins_are_skipped() -> None:
    rng = np.random.default_rng(3)
    score = rng.uniform(0.0, 0.45, 60)  # bins 5 … 9 of 10 stay empty
    outcome = (rng.random(60) < 0.3).astype(float)
    assert (np.histogram(score, bins=np.linspace(0, 1, 11))[0][5:] == 0).all()
    ece = expected_calibration_error(score, outcome, 10)
    assert ece == pytest.approx(sklearn_ece(score, outcome, 10), abs=1e-12)
    assert ece == pytest.approx(loop_ece(score, outcome, 10), abs=1e-12)
    bins = reliability_table(table_of(score, outcome), CLASSES)  # 60 studies: 6 bins
    assert bins["n_studies"].sum() == 60 and (bins["n_studies"] == 0).any()
    empty = bins[bins["n_studies"] == 0]
    assert empty["mean_probability"].isna().all() and empty["observed"].isna().all()


def test_edges_follow_numpy_histogram() -> None:
    score = np.array([0.0, 0.5, 0.5, 1.0])  # 0.5 opens the upper bin, 1 closes the last
    outcome = np.array([0.0, 1.0, 0.0, 1.0])
    assert expected_calibration_error(score, outcome, 2) == pytest.approx(
        loop_ece(score, outcome, 2), abs=1e-12
    )
    found = reliability_table(table_of(score, outcome), CLASSES)
    assert found["n_studies"].tolist() == np.histogram(score, bins=[0, 0.5, 1])[0].tolist()


def test_calibrated_probabilities_give_zero_and_a_constant_one_its_gap() -> None:
    score, outcome = [], []
    for b in range(10):  # 20 studies at each bin's centre, the centre's share of them positive
        centre = (b + 0.5) / 10
        positive = round(20 * centre)
        score += [centre] * 20
        outcome += [1.0] * positive + [0.0] * (20 - positive)
    assert expected_calibration_error(np.array(score), np.array(outcome), 10) == pytest.approx(
        0.0, abs=1e-12
    )
    constant = np.full(10, 0.8)  # says 80 %, 3 of 10 positive
    assert expected_calibration_error(constant, np.array([1.0] * 3 + [0.0] * 7), 10) == (
        pytest.approx(0.5, abs=1e-12)
    )
    assert np.isnan(expected_calibration_error(np.zeros(0), np.zeros(0), 10))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error(np.array([0.2, 1.2]), np.array([0.0, 1.0]), 10)


def test_the_number_of_bins_follows_the_studies() -> None:
    assert [bin_count(n) for n in (0, 6, 25, 57, 100, 5000)] == [2, 2, 2, 5, 10, 10]


def test_the_interval_contains_the_estimate_and_is_seeded() -> None:
    rng = np.random.default_rng(1)
    score = rng.random(150)
    outcome = (rng.random(150) < score**2).astype(float)  # probabilities too high
    table = table_of(score, outcome)
    row = calibration_table(table, CLASSES, 400, seed=5).iloc[0]
    assert list(row.index) == CALIBRATION_COLUMNS
    assert row["n_studies"] == 150 and row["n_patients"] == 150 and row["bins"] == 10
    assert row["probability"] == "p_abnormal"
    assert row["ece"] == pytest.approx(loop_ece(score, outcome, 10), abs=1e-12)
    assert row["ece_low"] < row["ece"] < row["ece_high"]
    again = calibration_table(table, CLASSES, 400, seed=5).iloc[0]
    assert (again["ece_low"], again["ece_high"]) == (row["ece_low"], row["ece_high"])
    unresampled = calibration_table(table, CLASSES, 0, seed=5).iloc[0]
    assert np.isnan(unresampled["ece_low"]) and np.isnan(unresampled["ece_high"])


def test_the_statistics_are_per_study_not_per_image() -> None:
    """Studies with 1 to 9 images: the ECE and its counts are those of the studies, each
    counted once whatever its images, not those of the images."""
    rng = np.random.default_rng(2)
    rows = []
    for s in range(40):
        true = "abnormal" if s % 3 == 0 else "normal"
        for i in range(1 + s % 9):
            p = float(rng.random())
            rows.append(
                {
                    "image_id": f"s{s}-{i}",
                    "study_id": f"s{s}",
                    "patient_id": f"p{s // 2}",
                    "study_type": "XR_WRIST",
                    "path": f"s{s}/{i}.png",
                    "true": true,
                    "p_normal": 1 - p,
                    "p_abnormal": p,
                    "predicted": "abnormal" if p >= 0.5 else "normal",
                }
            )
    images = pd.DataFrame(rows)
    studies = study_table(images, CLASSES)
    studies["predicted"] = np.where(studies["p_abnormal"] >= 0.5, "abnormal", "normal")
    row = calibration_table(studies, CLASSES, 100, seed=0).iloc[0]
    assert row["n_studies"] == 40 and row["n_patients"] == 20 and row["bins"] == 4
    by_study = loop_ece(
        studies["p_abnormal"].to_numpy(), (studies["true"] == "abnormal").to_numpy(float), 4
    )
    by_image = loop_ece(
        images["p_abnormal"].to_numpy(), (images["true"] == "abnormal").to_numpy(float), 4
    )
    assert row["ece"] == pytest.approx(by_study, abs=1e-12)
    assert abs(by_study - by_image) > 0.01
    assert reliability_table(studies, CLASSES)["n_studies"].sum() == 40


def test_the_interval_resamples_patients_not_rows() -> None:
    """Every study repeated as 5 rows of its patient (as if each image were a row): the
    resampled patients bring their rows together, so the ECE and its interval are unchanged;
    resampling the rows as independent would narrow the interval."""
    rng = np.random.default_rng(4)
    score = rng.random(100)
    outcome = (rng.random(100) < score**2).astype(float)
    single = table_of(score, outcome)
    repeated = single.loc[single.index.repeat(5)].reset_index(drop=True)
    one = calibration_table(single, CLASSES, 300, seed=3).iloc[0]
    five = calibration_table(repeated, CLASSES, 300, seed=3).iloc[0]
    assert five["bins"] == one["bins"] == 10 and five["n_patients"] == 100
    assert five["ece"] == pytest.approx(one["ece"], abs=1e-12)
    assert five["ece_low"] == pytest.approx(one["ece_low"], abs=1e-12)
    assert five["ece_high"] == pytest.approx(one["ece_high"], abs=1e-12)
    draws = np.random.default_rng(3).integers(0, 500, size=(300, 500))
    p, y = repeated["p_abnormal"].to_numpy(), (repeated["true"] == "abnormal").to_numpy(float)
    rows = [expected_calibration_error(p[d], y[d], 10) for d in draws]
    low, high = np.percentile(rows, [2.5, 97.5])
    assert high - low < 0.7 * (one["ece_high"] - one["ece_low"])


def test_more_classes_give_the_top_label_ece() -> None:
    rng = np.random.default_rng(6)
    classes = ["a", "b", "c"]
    probabilities = rng.dirichlet([1.0, 1.0, 1.0], size=80)
    true = rng.integers(0, 3, 80)
    table = pd.DataFrame(
        {
            "study_id": [f"s{i}" for i in range(80)],
            "patient_id": [f"p{i}" for i in range(80)],
            "true": [classes[t] for t in true],
            **{f"p_{c}": probabilities[:, k] for k, c in enumerate(classes)},
            "predicted": [classes[k] for k in probabilities.argmax(axis=1)],
        }
    )
    row = calibration_table(table, classes, 50, seed=0).iloc[0]
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == true).astype(float)
    assert row["probability"] == TOP_LABEL and row["bins"] == 8
    assert row["ece"] == pytest.approx(loop_ece(confidence, correct, 8), abs=1e-12)


def test_the_analysis_writes_the_calibration_tables(tmp_path: Path) -> None:
    given, outputs = write_fake_results(tmp_path, CONFIG)
    write_classification_tables(CONFIG, SWEEP, given, outputs)
    calibration = pd.read_csv(outputs["calibration"])
    assert list(calibration.columns) == ["model", "split", *CALIBRATION_COLUMNS]
    assert len(calibration) == 2 * 2
    found = calibration.set_index(["model", "split"])
    test = pd.read_csv(given.test_per_study["default"])  # 30 studies of 15 patients
    expected = loop_ece(
        test["p_abnormal"].to_numpy(), (test["true"] == "abnormal").to_numpy(float), 3
    )
    row = found.loc[("default", "test")]
    assert (row["n_studies"], row["n_patients"], row["bins"]) == (30, 15, 3)
    assert row["ece"] == pytest.approx(expected, abs=1e-12)
    assert row["ece_low"] <= row["ece_high"]
    val = pd.read_csv(given.val_per_study["default"])  # the studies its threshold was chosen on
    assert found.loc[("default", "val"), "n_studies"] == len(val) == 24
    reliability = pd.read_csv(outputs["reliability"])
    assert list(reliability.columns) == ["model", "split", *RELIABILITY_COLUMNS]
    counts = reliability.groupby(["model", "split"])["n_studies"].sum()
    assert counts.loc[("default", "test")] == 30 and counts.loc[("default", "val")] == 24
    assert len(reliability) == int(calibration["bins"].sum())


def _fabricated(models: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(reliability, calibration) of `models` on val and test, from the report's fake studies."""
    studies = per_study()
    bins = reliability_table(studies, CLASSES)
    reliability = pd.concat(
        [bins.assign(model=m, split=s) for m in models for s in ("val", "test")]
    )
    calibration = pd.concat(
        [
            calibration_table(studies, CLASSES, 50, seed=0).assign(model=m, split=s)
            for m in models
            for s in ("val", "test")
        ]
    )
    return reliability, calibration


def test_the_reliability_diagram_is_drawn(tmp_path: Path) -> None:
    reliability, calibration = _fabricated(["m1", "m2"])
    png = tmp_path / "calibration.png"
    cf.reliability_figure(reliability, calibration, png)
    with PIL.Image.open(png) as image:
        assert image.width > 100 and image.height > 100
    svg = png.with_suffix(".svg").read_text()
    assert "ECE" in svg and "6 studies" in svg and "observed share of abnormal" in svg
    empty = tmp_path / "empty.png"
    cf.reliability_figure(reliability.iloc[:0], calibration.iloc[:0], empty)
    with PIL.Image.open(empty) as image:
        assert image.width > 0


def test_the_thesis_has_a_calibration_section(tmp_path: Path) -> None:
    run = sweep_runs(REPORT_CONFIG, REPORT_SWEEP)[0].run_id
    inputs = write_results(tmp_path, [run])
    section = chapters.final_section(inputs)
    found = [b for b in walk(section.blocks) if isinstance(b, Section)]
    assert [s.title for s in found] == ["Calibration"]
    figures = [b for b in walk(found[0].blocks) if isinstance(b, Figure)]
    assert [f.key for f in figures] == ["cls-calibration"]
    assert "the validation set has 5 studies in 2 bins" in figures[0].caption
    assert "the test set has 6 studies in 2 bins" in figures[0].caption
    assert "bootstrap 95 % interval over patients" in figures[0].caption
    said = "".join(
        str(part)
        for block in walk(found[0].blocks)
        if isinstance(block, Paragraph)
        for part in block.parts
    )
    assert "The expected calibration error (ECE)" in said
    assert f"{run} had an ECE of 0.200 [0.100, 0.400] on the validation set" in said
    assert "(6 studies of 4 patients, 2 bins)" in said
    assert "a point below the diagonal" in said
