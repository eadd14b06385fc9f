"""Tests of the synthetic radiograph cohort: plan, balance, determinism, findings, anatomy."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from segsweep.data import radiographs
from segsweep.errors import ConfigError

SMALL = {"patients": 9, "size": 24, "study_types": ["XR_WRIST", "XR_ELBOW", "XR_CHEST"]}


def _normal(spec: radiographs.RadiographSpec) -> radiographs.RadiographSpec:
    return dataclasses.replace(spec, abnormal=False, finding="", label="normal")


def test_plan_ids_types_and_counts():
    cfg = {
        "patients": 12,
        "views": [2, 3],
        "studies": [1, 3],
        "study_types": ["XR_FINGER", "XR_HUMERUS"],
    }
    specs = radiographs.plan_radiographs(cfg)
    assert specs[0].image_id == "P0001-S1-V1" and specs[0].study_id == "P0001-S1"
    assert specs[0].patient_id == "P0001"
    table = pd.DataFrame([dataclasses.asdict(s) for s in specs])
    per_study = table.groupby("study_id").size()
    assert per_study.between(2, 3).all() and set(per_study) == {2, 3}
    per_patient = table.groupby("patient_id")["study_id"].nunique()
    assert per_patient.between(1, 3).all() and len(per_patient) == 12
    types = table.groupby("patient_id")["study_type"].agg(set)
    assert all(len(t) == 1 for t in types)  # a patient's studies are of one type
    assert table.drop_duplicates("patient_id")["study_type"].value_counts().to_dict() == {
        "XR_FINGER": 6,
        "XR_HUMERUS": 6,
    }
    assert (table.groupby("study_id")["label"].nunique() == 1).all()
    assert (
        table["view"]
        .groupby(table["study_id"])
        .apply(lambda v: list(v) == list(range(1, len(v) + 1)))
        .all()
    )


@pytest.mark.parametrize("fraction", [0.0, 0.15, 0.4, 0.5, 1.0])
def test_abnormal_fraction_is_exact(fraction):
    specs = radiographs.plan_radiographs({"patients": 23, "abnormal": fraction})
    studies = pd.DataFrame([dataclasses.asdict(s) for s in specs]).drop_duplicates("study_id")
    assert studies["abnormal"].sum() == round(fraction * len(studies))
    assert set(studies.loc[studies["abnormal"], "label"]) <= {"abnormal"}
    assert set(studies.loc[~studies["abnormal"], "label"]) <= {"normal"}
    assert (studies["finding"] != "").equals(studies["abnormal"])
    assert set(studies["finding"]) - {""} <= {"fracture", "hardware"}


def test_labels_classes_lowest_and_highest_value():
    specs = radiographs.plan_radiographs({"patients": 5, "labels": {"abnormal": 1, "normal": 0}})
    assert {s.label for s in specs} == {"normal", "abnormal"}
    specs = radiographs.plan_radiographs({"patients": 5, "labels": {"sick": 3, "healthy": 1}})
    assert {s.label for s in specs} == {"healthy", "sick"}


def test_deterministic_and_stable_when_patients_are_added():
    small = radiographs.plan_radiographs(SMALL)
    larger = radiographs.plan_radiographs({**SMALL, "patients": 15})
    assert larger[: len(small)] == small
    for spec in small[::3]:
        first = radiographs.draw(spec, SMALL)
        assert first.dtype == np.uint8 and first.shape == (24, 24)
        assert np.array_equal(first, radiographs.draw(spec, SMALL))
        assert np.array_equal(first, radiographs.draw(spec, {**SMALL, "patients": 15}))
    other = radiographs.draw(small[0], {**SMALL, "seed": 8})
    assert not np.array_equal(other, radiographs.draw(small[0], SMALL))


def test_write_cohort_is_byte_identical(tmp_path):
    cfg = {**SMALL, "patients": 4}
    one = radiographs.write_cohort(cfg, tmp_path / "a")
    two = radiographs.write_cohort(cfg, tmp_path / "b")
    assert list(one.columns) == radiographs.MANIFEST_COLUMNS
    for a, b in zip(one["image"], two["image"], strict=True):
        assert open(a, "rb").read() == open(b, "rb").read()
    first = one.iloc[0]
    assert first["image"] == str(tmp_path / "a" / "P0001" / "P0001-S1" / "P0001-S1-V1.png")
    array = sitk.GetArrayFromImage(sitk.ReadImage(first["image"]))
    assert array.shape == (24, 24)


@pytest.mark.parametrize("study_type", radiographs.STUDY_TYPES)
def test_every_view_of_an_abnormal_study_shows_the_finding(study_type):
    """The finding changes a small part of each view, and visibly; without contrast not at all."""
    cfg = {"patients": 6, "size": 32, "abnormal": 1.0, "views": [3, 4], "study_types": [study_type]}
    for spec in radiographs.plan_radiographs(cfg):
        difference = np.abs(
            radiographs.draw(spec, cfg).astype(int) - radiographs.draw(_normal(spec), cfg)
        )
        assert difference.max() >= 25, (spec.image_id, spec.finding)  # of 255
        assert (difference > 10).mean() < 0.25, (spec.image_id, spec.finding)
        faint = {**cfg, "finding_contrast": 0.0}
        assert np.array_equal(radiographs.draw(spec, faint), radiographs.draw(_normal(spec), faint))


def test_findings_lie_at_view_dependent_places():
    cfg = {"patients": 1, "size": 32, "abnormal": 1.0, "views": [3, 3], "study_types": ["XR_WRIST"]}
    specs = radiographs.plan_radiographs(cfg)
    places = [
        np.abs(radiographs.draw(s, cfg).astype(int) - radiographs.draw(_normal(s), cfg)) > 10
        for s in specs
    ]
    assert not np.array_equal(places[0], places[1]) and not np.array_equal(places[1], places[2])


def test_study_types_differ_in_anatomy():
    means = {}
    for study_type in radiographs.STUDY_TYPES:
        cfg = {
            "patients": 4,
            "size": 32,
            "abnormal": 0.0,
            "study_types": [study_type],
            "views": [2, 2],
        }
        means[study_type] = np.mean(
            [radiographs.draw(s, cfg).astype(float) for s in radiographs.plan_radiographs(cfg)],
            axis=0,
        )
    names = list(means)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert np.abs(means[a] - means[b]).mean() > 8, (a, b)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("patients", 0),
        ("size", 4),
        ("abnormal", 1.5),
        ("views", [3, 2]),
        ("studies", [0, 1]),
        ("study_types", ["XR_KNEE"]),
        ("study_types", []),
        ("finding_contrast", -1),
        ("labels", {"normal": 0}),
        ("colour", True),
    ],
)
def test_bad_config(key, value):
    with pytest.raises(ConfigError, match=f"data.radiographs.{key}"):
        radiographs.plan_radiographs({key: value})


def test_main_writes_manifest_relative_to_its_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = json.dumps({"patients": 3, "size": 16})
    radiographs.main(
        ["--config-json", cfg, "--out-dir", "cohort", "--out-manifest", "data/manifest.csv"]
    )
    table = pd.read_csv(tmp_path / "data" / "manifest.csv")
    assert list(table.columns) == radiographs.MANIFEST_COLUMNS
    assert table["image"].iloc[0] == "../cohort/P0001/P0001-S1/P0001-S1-V1.png"
    assert all((tmp_path / "data" / p).is_file() for p in table["image"])


def test_default_cohort_is_fast(tmp_path):
    import time

    start = time.perf_counter()
    table = radiographs.write_cohort({}, tmp_path)
    assert time.perf_counter() - start < 20
    studies = table.drop_duplicates("study_id")
    assert studies["patient_id"].nunique() == 60
    assert (studies["label"] == "abnormal").sum() == round(0.4 * len(studies))
