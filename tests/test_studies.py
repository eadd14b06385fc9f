"""Tests of reading classification datasets: manifest CSV and MURA folder, one-pass validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from segsweep.data import studies
from segsweep.errors import InputError

LABELS = {"normal": 0, "abnormal": 1}


def _png(path: Path, value: int = 100, shape: tuple[int, ...] = (8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = len(shape) == 3
    array = np.full(shape, value, np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=rgb), str(path))
    return path


def _manifest(tmp_path: Path, rows: list[tuple[str, ...]], name: str = "manifest.csv") -> Path:
    table = pd.DataFrame(rows, columns=["image", "label", "study_id", "patient_id", "study_type"])
    path = tmp_path / name
    table.to_csv(path, index=False)
    return path


def test_manifest_read_relative_to_its_folder(tmp_path):
    _png(tmp_path / "img" / "a1.png")
    _png(tmp_path / "img" / "a2.png", shape=(8, 8, 3))  # RGB is fine
    _png(tmp_path / "img" / "b1.png")
    path = _manifest(
        tmp_path,
        [
            ("img/a1.png", "abnormal", "s1", "p1", "XR_WRIST"),
            ("img/a2.png", "abnormal", "s1", "p1", "XR_WRIST"),
            ("img/b1.png", "normal", "s2", "p1", "XR_ELBOW"),
        ],
    )
    dataset = studies.read_dataset(path, LABELS)
    assert dataset.layout == "manifest" and dataset.problems == []
    assert studies.check_images(dataset) == []
    images = dataset.images
    assert list(images.columns) == studies.IMAGE_COLUMNS
    assert images["image"].tolist()[0] == str(tmp_path / "img" / "a1.png")
    assert images["path"].tolist()[0] == "img/a1.png"
    assert images["image_id"].tolist() == ["s1-a1", "s1-a2", "s2-b1"]
    table = studies.studies_table(images)
    assert table["subject_id"].tolist() == ["s1", "s2"]
    assert table["n_images"].tolist() == [2, 1]
    assert table["source"].tolist() == ["XR_WRIST", "XR_ELBOW"]
    assert table["labelled"].all() and table["valid"].all()


def test_manifest_without_study_type_has_one_source(tmp_path):
    _png(tmp_path / "a.png")
    path = tmp_path / "m.csv"
    path.write_text("image,label,study_id,patient_id\na.png,normal,s1,p1\n")
    dataset = studies.read_dataset(path, LABELS)
    assert dataset.images["study_type"].tolist() == [""]
    assert studies.studies_table(dataset.images)["source"].tolist() == ["all"]


def test_manifest_missing_column_is_an_error_at_once(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("image,label,patient_id\na.png,normal,p1\n")
    with pytest.raises(InputError, match="no column study_id"):
        studies.read_dataset(path, LABELS)


def _broken_dataset(tmp_path: Path) -> Path:
    _png(tmp_path / "ok1.png")
    _png(tmp_path / "ok2.png")
    _png(tmp_path / "mixed1.png")
    _png(tmp_path / "mixed2.png")
    _png(tmp_path / "two1.png")
    _png(tmp_path / "two2.png")
    (tmp_path / "garbage.png").write_bytes(b"this is not an image")
    volume = sitk.GetImageFromArray(np.zeros((3, 8, 8), np.uint8))
    sitk.WriteImage(volume, str(tmp_path / "volume.mha"))
    flat = sitk.GetImageFromArray(np.zeros((1, 8, 8), np.uint8))  # 3D, one slice: 2D
    sitk.WriteImage(flat, str(tmp_path / "flat.mha"))
    return _manifest(
        tmp_path,
        [
            ("ok1.png", "normal", "good", "p1", "XR_WRIST"),
            ("flat.mha", "normal", "good", "p1", "XR_WRIST"),
            ("missing.png", "normal", "lost", "p2", "XR_WRIST"),
            ("ok2.png", "sick", "unknown", "p3", "XR_WRIST"),
            ("mixed1.png", "normal", "mixed", "p4", "XR_WRIST"),
            ("mixed2.png", "abnormal", "mixed", "p4", "XR_WRIST"),
            ("garbage.png", "abnormal", "broken", "p5", "XR_WRIST"),
            ("volume.mha", "abnormal", "thick", "p6", "XR_WRIST"),
            ("two1.png", "abnormal", "shared", "p7", "XR_WRIST"),
            ("two2.png", "abnormal", "shared", "p8", "XR_WRIST"),
        ],
    )


def test_every_problem_at_once(tmp_path):
    dataset = studies.read_dataset(_broken_dataset(tmp_path), LABELS)
    problems = studies.check_images(dataset)
    found = {(p.subject, p.problem.split(":")[0].split(" (")[0]) for p in problems}
    assert found == {
        ("lost", "image file not found"),
        ("unknown", "label 'sick' is not a class of data.labels ['normal', 'abnormal']"),
        ("mixed", "study has mixed labels"),
        ("broken", "unreadable image"),
        ("thick", "expected a 2D image, got 3D of size [8, 8, 3]"),
        ("shared", "study listed under patients p7, p8"),
    }
    assert "good" not in {p.subject for p in problems}


def test_main_error_lists_every_problem_and_writes_dropped(tmp_path):
    manifest = _broken_dataset(tmp_path)
    out = tmp_path / "out"
    args = _args(manifest, out, "error")
    with pytest.raises(InputError) as error:
        studies.main(args)
    message = str(error.value)
    assert "6 problems" in message
    for study in ("lost", "unknown", "mixed", "broken", "thick", "shared"):
        assert study in message
    dropped = pd.read_csv(out / "dropped.csv")
    assert list(dropped.columns) == ["subject", "file", "problem"] and len(dropped) == 6
    assert not (out / "images.csv").exists()


def _args(manifest: Path, out: Path, on_invalid: str) -> list[str]:
    return [
        "--manifest",
        str(manifest),
        "--labels-json",
        json.dumps(LABELS),
        "--on-invalid",
        on_invalid,
        "--out-images",
        str(out / "images.csv"),
        "--out-manifest",
        str(out / "manifest.csv"),
        "--out-dropped",
        str(out / "dropped.csv"),
        "--out-description",
        str(out / "dataset.json"),
    ]


def test_main_skip_keeps_the_valid_studies(tmp_path):
    out = tmp_path / "out"
    studies.main(_args(_broken_dataset(tmp_path), out, "skip"))
    images = pd.read_csv(out / "images.csv", dtype=str, keep_default_na=False)
    assert set(images["study_id"]) == {"good"} and len(images) == 2
    assert {"image", "label", "study_id", "patient_id", "study_type"} <= set(images.columns)
    manifest = pd.read_csv(out / "manifest.csv")
    assert manifest.set_index("subject_id")["valid"].to_dict() == {
        "broken": False,
        "good": True,
        "lost": False,
        "mixed": False,
        "shared": False,
        "thick": False,
        "unknown": False,
    }
    description = json.loads((out / "dataset.json").read_text())
    assert description["layout"] == "manifest" and description["channels"] is None
    assert (description["n_images"], description["n_studies"], description["n_patients"]) == (
        2,
        1,
        1,
    )
    assert len(description["problems"]) == 6


def test_main_skip_with_nothing_left_is_an_error(tmp_path):
    path = _manifest(tmp_path, [("missing.png", "normal", "s1", "p1", "")])
    with pytest.raises(InputError, match="no study is left"):
        studies.main(_args(path, tmp_path / "out", "skip"))


# ---------------------------------------------------------------------------------------------
# MURA

MURA_IMAGES = [
    ("train", "XR_WRIST", "patient00001", "study1_positive", "image1.png"),
    ("train", "XR_WRIST", "patient00001", "study1_positive", "image2.png"),
    ("train", "XR_ELBOW", "patient00001", "study1_negative", "image1.png"),
    ("train", "XR_FINGER", "patient00002", "study1_negative", "image1.png"),
    ("train", "XR_FINGER", "patient00002", "study2_positive", "image1.png"),
    ("valid", "XR_WRIST", "patient11185", "study1_negative", "image1.png"),
    ("valid", "XR_WRIST", "patient11185", "study1_negative", "image2.png"),
    ("valid", "XR_WRIST", "patient11185", "study1_negative", "image3.png"),
]


def _mura(root: Path) -> Path:
    base = root / "MURA-v1.1"
    for parts in MURA_IMAGES:
        _png(base.joinpath(*parts), shape=(8, 6, 3) if parts[-1] == "image2.png" else (6, 8))
    return base


def _csvs(base: Path, images=MURA_IMAGES) -> None:
    for split in ("train", "valid"):
        listed = [f"MURA-v1.1/{'/'.join(p)}" for p in images if p[0] == split]
        (base / f"{split}_image_paths.csv").write_text("\n".join(listed) + "\n")
        studies_listed = sorted({"/".join(p.split("/")[:-1]) + "/" for p in listed})
        lines = [f"{s},{int('positive' in s)}" for s in studies_listed]
        (base / f"{split}_labeled_studies.csv").write_text("\n".join(lines) + "\n")


def _expected_studies() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "subject_id": [
                "XR_ELBOW-patient00001-study1",
                "XR_FINGER-patient00002-study1",
                "XR_FINGER-patient00002-study2",
                "XR_WRIST-patient00001-study1",
                "XR_WRIST-patient11185-study1",
            ],
            "patient_id": [
                "patient00001",
                "patient00002",
                "patient00002",
                "patient00001",
                "patient11185",
            ],
            "study_type": ["XR_ELBOW", "XR_FINGER", "XR_FINGER", "XR_WRIST", "XR_WRIST"],
            "label": ["normal", "normal", "abnormal", "abnormal", "normal"],
            "n_images": [1, 1, 1, 2, 3],
            "source_split": ["train", "train", "train", "train", "valid"],
        }
    )


@pytest.mark.parametrize("with_csvs", [False, True])
@pytest.mark.parametrize("given", ["root", "base"])
def test_mura_folder(tmp_path, with_csvs, given):
    base = _mura(tmp_path)
    (base / "train" / "XR_WRIST" / "patient00001" / "study1_positive" / "._image1.png").write_bytes(
        b""
    )
    if with_csvs:
        _csvs(base)
    dataset = studies.read_dataset(tmp_path if given == "root" else base, LABELS)
    assert dataset.layout == "mura" and dataset.problems == []
    assert studies.check_images(dataset) == []
    table = studies.studies_table(dataset.images)
    expected = _expected_studies()
    pd.testing.assert_frame_equal(table[list(expected.columns)], expected, check_dtype=False)
    assert table["source"].tolist() == expected["study_type"].tolist()
    first = dataset.images.iloc[3]
    assert first["path"] == "MURA-v1.1/train/XR_WRIST/patient00001/study1_positive/image1.png"
    assert first["image_id"] == "XR_WRIST-patient00001-study1-image1"
    assert Path(first["image"]).is_file()


def test_mura_positive_is_the_last_class(tmp_path):
    base = _mura(tmp_path)
    dataset = studies.read_dataset(base, {"ok": 0, "fracture": 5})
    labels = studies.studies_table(dataset.images).set_index("subject_id")["label"]
    assert labels["XR_WRIST-patient00001-study1"] == "fracture"
    assert labels["XR_WRIST-patient11185-study1"] == "ok"


def test_mura_csv_lists_the_images(tmp_path):
    base = _mura(tmp_path)
    listed = [
        *MURA_IMAGES[1:],
        ("valid", "XR_WRIST", "patient11185", "study1_negative", "image9.png"),
    ]
    _csvs(base, listed)  # image1 of the first study is on disk, not listed: ignored
    dataset = studies.read_dataset(tmp_path, LABELS)
    assert "XR_WRIST/patient00001/study1_positive/image1.png" not in " ".join(
        dataset.images["path"]
    )
    problems = studies.check_images(dataset)
    assert [(p.subject, p.problem) for p in problems] == [
        ("XR_WRIST-patient11185-study1", "image file not found")
    ]


def test_mura_label_conflict_with_its_csv(tmp_path):
    base = _mura(tmp_path)
    _csvs(base)
    path = base / "valid_labeled_studies.csv"
    path.write_text(path.read_text().replace(",0", ",1"))
    problems = studies.read_dataset(base, LABELS).problems
    assert [(p.subject, p.problem) for p in problems] == [
        (
            "XR_WRIST-patient11185-study1",
            "valid_labeled_studies.csv labels the study 1, its folder says negative",
        )
    ]


def test_mura_bad_study_folder_and_no_types(tmp_path):
    base = _mura(tmp_path)
    _png(base / "train" / "XR_HAND" / "patient00003" / "study1" / "image1.png")
    problems = studies.read_dataset(base, LABELS).problems
    assert [p.subject for p in problems] == ["XR_HAND-patient00003-study1"]
    assert "study<k>_positive" in problems[0].problem
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(InputError, match="no XR_"):
        studies.read_dataset(tmp_path / "empty", LABELS)


def test_layout_detection(tmp_path):
    assert studies.detect_layout(tmp_path) == "mura"
    with pytest.raises(InputError, match="not found"):
        studies.detect_layout(tmp_path / "nothing.csv")


def test_image_listed_twice(tmp_path):
    _png(tmp_path / "a.png")
    path = _manifest(
        tmp_path,
        [
            ("a.png", "normal", "s1", "p1", ""),
            ("a.png", "normal", "s2", "p2", ""),
        ],
    )
    problems = studies.read_dataset(path, LABELS).problems
    assert [(p.subject, p.problem) for p in problems] == [
        ("s1", "image file listed twice (by studies s1, s2)"),
        ("s2", "image file listed twice (by studies s1, s2)"),
    ]
