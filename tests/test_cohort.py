"""Tests of the synthetic knee cohort: plan, anatomy shares, geometry, acquisition, files."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import yaml

from segsweep.data import cohort
from segsweep.errors import ConfigError

SMALL = {
    "seed": 3,
    "scale": 0.125,
    "sources": {
        "epi": {"n": 2, "labelled": 0.5},
        "jopp": {"n": 2, "labelled": 0.5},
        "maas": {"n": 1, "labelled": 0.0},
    },
}


def _spec(subject_id: str, cfg: dict = cohort.DEFAULT_SYNTHETIC) -> cohort.SubjectSpec:
    return next(s for s in cohort.plan_cohort(cfg) if s.subject_id == subject_id)


def test_plan_counts_sizes_and_labelled_fraction():
    specs = cohort.plan_cohort(cohort.DEFAULT_SYNTHETIC)
    by_source = {src: [s for s in specs if s.source == src] for src in ("epi", "jopp", "maas")}
    assert [len(v) for v in by_source.values()] == [12, 10, 2]
    assert [sum(s.labelled for s in v) for v in by_source.values()] == [9, 9, 0]
    assert [s.subject_id for s in by_source["jopp"]] == [f"jopp-{i:03d}" for i in range(10)]
    assert {s.size for s in by_source["epi"]} == {(100, 100, 41)}
    assert {s.size for s in by_source["jopp"]} == {(64, 64, 24)}
    assert {s.perspective for s in by_source["maas"]} == {"sagittal"}
    assert {s.perspective for s in by_source["epi"] + by_source["jopp"]} == {"coronal"}
    for s in specs:
        assert 14.0 <= s.age <= 21.0
        assert s.size[0] * s.spacing[0] == pytest.approx(cohort.SOURCES[s.source].fov_mm)
        assert 3.0 <= s.spacing[2] <= 4.5
    assert len({s.seed for s in specs}) == len(specs)
    assert cohort.plan_cohort(dict(cohort.DEFAULT_SYNTHETIC)) == specs  # deterministic
    other = cohort.plan_cohort({**cohort.DEFAULT_SYNTHETIC, "seed": 43})
    assert [s.seed for s in other] != [s.seed for s in specs]


def test_plan_scale_and_several_sagittal_resolutions():
    cfg = {"seed": 1, "scale": 0.25, "sources": {"maas": {"n": 12, "labelled": 0.25}}}
    specs = cohort.plan_cohort(cfg)
    assert sum(s.labelled for s in specs) == 3
    assert len({s.size for s in specs}) > 1  # maas: several native matrices
    epi = cohort.plan_cohort({"seed": 1, "scale": 0.25, "sources": {"epi": {"n": 1}}})[0]
    assert epi.size == (200, 200, 41) and epi.spacing[:2] == (0.8, 0.8)


def test_plan_rejects_unknown_source_and_bad_scale():
    with pytest.raises(ConfigError, match="epi, jopp, maas"):
        cohort.plan_cohort({"seed": 0, "scale": 0.125, "sources": {"foo": {"n": 1}}})
    with pytest.raises(ConfigError, match="scale"):
        cohort.plan_cohort({**cohort.DEFAULT_SYNTHETIC, "scale": 0})


def test_class_shares_in_label_window():
    cfg = {
        "seed": 11,
        "scale": 0.125,
        "sources": {"epi": {"n": 4, "labelled": 1.0}, "jopp": {"n": 4, "labelled": 1.0}},
    }
    shares = []
    for spec in cohort.plan_cohort(cfg):
        counts = np.bincount(cohort.render(spec).mask.ravel(), minlength=4)[1:]
        shares.append(counts / counts.sum())
    femur, tibia, fibula = np.mean(shares, axis=0)
    assert 0.50 <= femur <= 0.62
    assert 0.35 <= tibia <= 0.47
    assert 0.015 <= fibula <= 0.06


@pytest.mark.parametrize("subject_id", ["epi-001", "maas-000"])
def test_labels_only_inside_square_window(subject_id):
    spec = _spec(subject_id)
    r = cohort.render(spec)
    assert set(np.unique(r.mask)) == {0, 1, 2, 3}
    assert not r.mask[r.roi == 0].any()
    assert (r.roi == r.roi[0]).all()  # the window spans all slices
    rows, cols = np.nonzero(r.roi[0])
    for extent, step in ((cols, spec.spacing[0]), (rows, spec.spacing[1])):
        assert (extent.max() - extent.min() + 1) * step == pytest.approx(100.0, abs=step)
    centre = np.array(r.truth["joint_centre_index"][:2])
    assert np.allclose([cols.mean(), rows.mean()], centre, atol=1.0)


def test_joint_centre_lies_between_femur_and_tibia():
    spec = _spec("epi-003")
    r = cohort.render(spec)
    i, j, k = np.round(r.truth["joint_centre_index"]).astype(int)
    sl = r.mask[k]  # coronal slice through the joint centre; rows run inferior
    assert sl[j, i] == 0  # the centre sits in the joint space, above the tibial spines
    for column in (i - 10, i + 10):  # lateral and medial compartments, 16 mm off centre
        femur_bottom = np.nonzero(sl[:, column] == 1)[0].max()
        tibia_top = np.nonzero(sl[:, column] == 2)[0].min()
        assert femur_bottom < j < tibia_top
        assert 3.0 <= (tibia_top - femur_bottom) * spec.spacing[1] <= 12.0
    # the fibula is lateral: patient right, i.e. low x index for a right knee in LIP
    fib_cols = np.nonzero(r.mask == 3)[2]
    assert fib_cols.mean() < i - 10


def _read(path):
    img = sitk.ReadImage(str(path))
    return img, sitk.GetArrayFromImage(img)


@pytest.mark.parametrize(("subject_id", "orientation"), [("jopp-001", "LIP"), ("maas-001", "PIR")])
def test_geometry_round_trip(tmp_path, subject_id, orientation):
    spec = _spec(subject_id)
    cohort.generate_subject(spec, tmp_path)
    r = cohort.render(spec)
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["joint_centre_mm"] == r.truth["joint_centre_mm"]
    assert truth["age"] == spec.age and truth["source"] == spec.source
    for name, dtype in (
        ("image", np.float32),
        ("mask", np.uint8),
        ("roi", np.uint8),
        ("bias", np.float32),
    ):
        assert (tmp_path / f"{name}.zraw").is_file()
        img, arr = _read(tmp_path / f"{name}.mhd")
        assert arr.dtype == dtype
        assert img.GetSize() == spec.size
        assert np.allclose(img.GetSpacing(), spec.spacing)
        assert np.allclose(img.GetOrigin(), r.origin, atol=1e-4)
        assert np.allclose(img.GetDirection(), cohort.DIRECTIONS[spec.perspective])
        assert np.array_equal(arr, getattr(r, name))
        orient = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(img.GetDirection())
        assert orient == orientation
    index = img.TransformPhysicalPointToContinuousIndex(truth["joint_centre_mm"])
    assert np.allclose(index, truth["joint_centre_index"], atol=1e-3)
    assert all(0 <= c < n for c, n in zip(index, spec.size, strict=True))


def test_same_anatomy_in_both_orientations():
    """A coronal and a sagittal rendering of one knee agree on bone volumes in mm^3."""
    coronal = dataclasses.replace(_spec("epi-002"), labelled=True)
    sagittal = dataclasses.replace(
        coronal, perspective="sagittal", size=(100, 100, 41), spacing=(1.6, 1.6, 3.0)
    )
    volumes = []
    for spec in (coronal, sagittal):
        r = cohort.render(spec)
        voxel = float(np.prod(spec.spacing))
        volumes.append([(r.mask == c).sum() * voxel for c in (1, 2, 3)])
    assert np.allclose(volumes[0], volumes[1], rtol=0.12)


def test_deterministic_and_subjects_differ():
    spec = _spec("jopp-003")
    a, b = cohort.render(spec), cohort.render(spec)
    for name in ("image", "mask", "roi", "bias"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert a.truth == b.truth
    other = cohort.render(_spec("jopp-004"))
    assert not np.array_equal(a.mask, other.mask)
    assert a.truth["joint_centre_mm"] != other.truth["joint_centre_mm"]


def test_bias_field_and_rician_noise():
    spec = _spec("epi-000")
    r = cohort.render(spec)
    ratio = r.bias.max() / r.bias.min()
    assert 1.2 < ratio < 2.5
    assert abs(np.mean(np.log(r.bias))) < 1e-3  # geometric mean 1
    assert np.abs(np.diff(np.log(r.bias), axis=2)).max() < 0.05  # smooth between voxels
    sigma = r.truth["noise_sigma"]
    bright = r.clean > 0.5 * cohort.SOURCES["epi"].intensity_scale
    residual = (r.image - r.clean * r.bias)[bright]
    assert abs(np.median(residual)) < 0.2 * sigma
    assert np.std(residual) == pytest.approx(sigma, rel=0.2)
    air = r.clean == 0
    assert air.sum() > 1000
    assert np.mean(r.image[air]) == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.1)  # Rayleigh


def test_source_intensity_scales_differ():
    medians = {}
    for subject_id in ("epi-000", "jopp-000", "maas-000"):
        r = cohort.render(_spec(subject_id))
        medians[subject_id] = np.median(r.image[r.clean > 0])
    assert medians["jopp-000"] < 0.6 * medians["epi-000"] < 0.6 * medians["maas-000"]


def test_growth_plate_fades_with_age():
    """Young knees show a dark physeal band inside the bone; closed plates nearly vanish."""
    base = _spec("epi-001")
    dark = []
    for age in (14.5, 20.5):
        r = cohort.render(dataclasses.replace(base, age=age))
        bone = np.isin(r.mask, (1, 2))
        marrow = r.truth["tissue_intensity"]["marrow_metaphysis"]
        dark.append(np.mean(r.clean[bone] < 0.6 * marrow))
    assert dark[0] > dark[1] + 0.02


def test_cli_all_writes_cohort_and_manifest(tmp_path):
    cohort.main(["all", "--config-json", json.dumps(SMALL), "--out", str(tmp_path)])
    with (tmp_path / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == cohort.MANIFEST_COLUMNS
    assert [r["subject_id"] for r in rows] == [
        "epi-000",
        "epi-001",
        "jopp-000",
        "jopp-001",
        "maas-000",
    ]
    specs = {s.subject_id: s for s in cohort.plan_cohort(SMALL)}
    for row in rows:
        spec = specs[row["subject_id"]]
        assert row["image"] == f"{spec.subject_id}/image.mhd"
        assert (tmp_path / row["image"]).is_file()
        assert (tmp_path / spec.subject_id / "mask.mhd").is_file()  # written even if unlabelled
        if spec.labelled:
            assert row["mask"] == f"{spec.subject_id}/mask.mhd"
            assert row["roi"] == f"{spec.subject_id}/roi.mhd"
        else:
            assert row["mask"] == row["roi"] == ""
        assert float(row["age"]) == spec.age and row["perspective"] == spec.perspective
    assert sum(bool(r["mask"]) for r in rows) == 2


def test_cli_subject_and_manifest(tmp_path):
    cfg = json.dumps(SMALL)
    out = tmp_path / "cohort" / "jopp-001"
    cohort.main(["subject", "--config-json", cfg, "--subject", "jopp-001", "--out", str(out)])
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{n}.{e}" for n in ("image", "mask", "roi", "bias") for e in ("mhd", "zraw")]
        + ["truth.json"]
    )
    cohort.main(["manifest", "--config-json", cfg, "--out", str(tmp_path / "cohort" / "m.csv")])
    assert (tmp_path / "cohort" / "m.csv").read_text().startswith(",".join(cohort.MANIFEST_COLUMNS))
    with pytest.raises(ConfigError, match="jopp-000"):
        cohort.main(["subject", "--config-json", cfg, "--subject", "jopp-009", "--out", str(out)])


def test_default_config_matches_schema_and_config_yaml():
    """The CLI's defaults are the workflow's: schema default and config/config.yaml agree."""
    repo = Path(__file__).resolve().parents[1]
    schema = yaml.safe_load((repo / "workflow/schemas/config.schema.yaml").read_text())
    synthetic = schema["properties"]["data"]["properties"]["synthetic"]["properties"]
    defaults = {key: spec["default"] for key, spec in synthetic.items()}
    config = yaml.safe_load((repo / "config/config.yaml").read_text())["data"]["synthetic"]
    assert cohort.DEFAULT_SYNTHETIC == defaults == config
