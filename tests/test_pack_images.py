"""Tests of packing radiographs into image sets and of the example figure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from segsweep.data import radiographs
from segsweep.errors import InputError
from segsweep.io.image_sets import read_image_set
from segsweep.preprocess import images as pack

CLASSES = ["normal", "abnormal"]


def _write(path: Path, array: np.ndarray, vector: bool = False) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=vector), str(path))
    return str(path)


def _row(image: str, label: str, study: str, patient: str, study_type: str = "XR_WRIST"):
    return {
        "image": image,
        "label": label,
        "study_id": study,
        "patient_id": patient,
        "study_type": study_type,
    }


def test_fit_square_keeps_the_aspect_and_pads_with_the_minimum():
    wide = np.tile(np.linspace(10.0, 20.0, 40), (20, 1))  # 20 rows × 40 columns
    fitted = pack.fit_square(wide, 16)
    assert fitted.shape == (16, 16)
    assert np.all(fitted[:4] == 10.0) and np.all(fitted[12:] == 10.0)  # 8 rows of content
    content = fitted[4:12]
    assert np.allclose(content, content[0]) and np.all(np.diff(content[0]) > 0)
    tall = pack.fit_square(np.ones((9, 3)), 9)
    assert np.array_equal(tall[:, 3:6], np.ones((9, 3)))
    grown = pack.fit_square(np.arange(16.0).reshape(4, 4), 8)  # enlarged: no padding
    assert grown.shape == (8, 8) and grown.min() >= 0 and grown.max() <= 15


def test_z_score_and_constant_image():
    array = pack.z_score(np.arange(16.0).reshape(4, 4))
    assert array.dtype == np.float32
    assert abs(array.mean()) < 1e-6 and abs(array.std() - 1) < 1e-5
    assert np.array_equal(pack.z_score(np.full((4, 4), 7.0)), np.zeros((4, 4), np.float32))


def test_read_grey_formats(tmp_path):
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 30, 60, 90
    grey = pack.read_grey(_write(tmp_path / "rgb.png", rgb, vector=True))
    assert grey.shape == (6, 8) and np.allclose(grey, 60.0)
    rgba = np.concatenate([rgb, np.full((6, 8, 1), 255, np.uint8)], axis=-1)
    assert np.allclose(pack.read_grey(_write(tmp_path / "rgba.png", rgba, vector=True)), 60.0)
    array = np.arange(48, dtype=np.int16).reshape(6, 8)
    assert np.array_equal(pack.read_grey(_write(tmp_path / "a.mha", array)), array)
    flat = np.arange(48, dtype=np.int16).reshape(1, 6, 8)
    assert np.array_equal(pack.read_grey(_write(tmp_path / "flat.nii.gz", flat)), array)
    dicom = pack.read_grey(_write(tmp_path / "a.dcm", array))
    assert np.array_equal(dicom, array)
    with pytest.raises(InputError, match="2D"):
        pack.read_grey(_write(tmp_path / "thick.mha", np.zeros((2, 6, 8), np.uint8)))
    (tmp_path / "bad.png").write_bytes(b"garbage")
    with pytest.raises(InputError, match="unreadable"):
        pack.read_grey(tmp_path / "bad.png")


def _images(tmp_path: Path) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [
        _row(
            _write(tmp_path / "b2.png", rng.integers(0, 255, (30, 20), np.uint8)),
            "normal",
            "s2",
            "p2",
        ),
        _row(
            _write(tmp_path / "a1.png", rng.integers(0, 255, (16, 16), np.uint8)),
            "abnormal",
            "s1",
            "p1",
        ),
        _row(_write(tmp_path / "c.mha", np.full((12, 24), 5, np.int16)), "normal", "s3", "p1", ""),
        _row(
            _write(tmp_path / "b1.png", rng.integers(0, 255, (10, 10, 3), np.uint8), vector=True),
            "normal",
            "s2",
            "p2",
        ),
    ]
    return pd.DataFrame(rows)


def test_pack_split(tmp_path):
    images = _images(tmp_path)
    splits = pd.DataFrame({"subject_id": ["s1", "s2", "s3"], "split": ["train", "train", "val"]})
    n = pack.pack_split(images, splits, "train", 16, CLASSES, tmp_path / "train.h5")
    assert n == 3
    packed = read_image_set(tmp_path / "train.h5")
    assert packed.images.shape == (3, 16, 16) and packed.images.dtype == np.float32
    assert np.allclose(packed.images.mean(axis=(1, 2)), 0, atol=1e-5)
    assert np.allclose(packed.images.std(axis=(1, 2)), 1, atol=1e-4)
    assert packed.study_id.tolist() == ["s1", "s2", "s2"]  # grouped: patient, study, image
    assert packed.image_id.tolist() == ["a1", "b1", "b2"]
    assert packed.label.tolist() == [1, 0, 0] and packed.classes == CLASSES
    assert packed.path.tolist() == [str(tmp_path / f) for f in ("a1.png", "b1.png", "b2.png")]
    b2 = packed.images[2]  # 30 × 20 → 16 × 11 (rounded), padded left and right
    assert np.all(b2[:, :2] == b2.min()) and np.all(b2[:, -3:] == b2.min())
    pack.pack_split(images, splits, "val", 16, CLASSES, tmp_path / "val.h5")
    val = read_image_set(tmp_path / "val.h5")
    assert np.array_equal(val.images, np.zeros((1, 16, 16), np.float32))  # a constant image
    assert val.study_type.tolist() == [""]


def test_pack_empty_split_and_unknown_label(tmp_path):
    images = _images(tmp_path)
    splits = pd.DataFrame({"subject_id": ["s1"], "split": ["train"]})
    assert pack.pack_split(images, splits, "test", 8, CLASSES, tmp_path / "test.h5") == 0
    empty = read_image_set(tmp_path / "test.h5")
    assert len(empty) == 0 and empty.images.shape == (0, 8, 8)
    with pytest.raises(InputError, match="label 'abnormal' not in"):
        pack.pack_split(images, splits, "train", 8, ["normal", "other"], tmp_path / "x.h5")


def test_main_packs_the_cohort_and_draws_examples(tmp_path, monkeypatch):
    from segsweep.data import studies

    monkeypatch.chdir(tmp_path)
    cfg = {"patients": 6, "size": 16, "study_types": ["XR_WRIST", "XR_CHEST"]}
    radiographs.main(["--config-json", json.dumps(cfg), "--out-dir", "cohort"])
    labels = json.dumps({"normal": 0, "abnormal": 1})
    studies.main(
        ["--manifest", "cohort/manifest.csv", "--labels-json", labels]
        + ["--out-images", "data/images.csv", "--out-manifest", "data/manifest.csv"]
        + ["--out-dropped", "data/dropped.csv", "--out-description", "data/dataset.json"]
    )
    manifest = pd.read_csv("data/manifest.csv")
    splits = pd.DataFrame({"subject_id": manifest["subject_id"], "split": "train"})
    splits.to_csv("splits.csv", index=False)
    pack.main(
        ["split", "--images", "data/images.csv", "--splits", "splits.csv", "--split", "train"]
        + ["--size", "12", "--labels-json", labels, "--out", "datasets/train.h5"]
    )
    packed = read_image_set("datasets/train.h5")
    images = pd.read_csv("data/images.csv")
    assert len(packed) == len(images) and packed.images.shape[1:] == (12, 12)
    assert packed.image_id[0] == "P0001-S1-V1" and packed.study_type[0] == "XR_WRIST"
    pack.main(
        ["examples", "--images", "data/images.csv", "--labels-json", labels]
        + ["--per-cell", "2", "--out", "data/examples.png"]
    )
    for suffix in (".png", ".svg", ".pdf"):
        assert (tmp_path / "data" / f"examples{suffix}").stat().st_size > 0


def test_example_figure_with_an_empty_cell(tmp_path):
    images = _images(tmp_path)
    pack.example_figure(images, CLASSES + ["other"], tmp_path / "ex.png")
    assert (tmp_path / "ex.png").is_file()
