"""Ingest: validation messages, canonical reorientation, manifests."""

from __future__ import annotations

import json
import locale
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from segsweep.data import ingest
from segsweep.errors import InputError
from segsweep.io import images

LABELS = {"femur": 1, "tibia": 2, "fibula": 3}
PIR = (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)  # sagittal: x->P, y->I, z->R


def _image(shape=(4, 5, 6), direction=PIR, dtype=np.float32, seed=0) -> sitk.Image:
    array = np.random.default_rng(seed).random(shape).astype(dtype) * 100
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.5, 0.7, 3.0))
    image.SetOrigin((10.0, -20.0, 30.0))
    image.SetDirection(direction)
    return image


def _mask_like(image: sitk.Image, values=(0, 1, 2)) -> sitk.Image:
    shape = image.GetSize()[::-1]
    array = np.resize(np.array(values, np.uint8), int(np.prod(shape))).reshape(shape)
    mask = sitk.GetImageFromArray(array)
    mask.CopyInformation(image)
    return mask


def _write(image: sitk.Image, path: Path) -> Path:
    sitk.WriteImage(image, str(path), useCompression=path.suffix != ".mha")
    return path


# --- read_image ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a.mhd", "a.mha", "a.nii", "a.nii.gz"])
def test_read_image_supported_formats(tmp_path, name):
    image = _image()
    back = images.read_image(_write(image, tmp_path / name), "s1")
    np.testing.assert_allclose(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))
    np.testing.assert_allclose(back.GetDirection(), PIR, atol=1e-6)


def test_read_image_missing_file_names_subject_and_path(tmp_path):
    with pytest.raises(InputError) as info:
        images.read_image(tmp_path / "nope.nii.gz", "s7")
    assert str(info.value) == f"subject s7: {tmp_path / 'nope.nii.gz'}: file not found"


def test_read_image_corrupt_file(tmp_path):
    path = tmp_path / "bad.nii.gz"
    path.write_bytes(b"not an image at all" * 10)
    with pytest.raises(InputError) as info:
        images.read_image(path, "s1")
    assert (
        str(info.value)
        == f"subject s1: {path}: unreadable header: Unable to determine ImageIO reader"
    )


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("DimSize = 6 5 4", "DimSize = six", "unreadable header: not a valid header of its format"),
        ("MET_FLOAT", "MET_BANANA", "unreadable header: Unknown PixelType"),
    ],
)
def test_read_image_unreadable_mhd_header_is_not_blamed_on_the_data(tmp_path, old, new, message):
    path = _write(_image(), tmp_path / "a.mhd")
    path.write_text(path.read_text().replace(old, new))
    with pytest.raises(InputError, match=f"a.mhd: {message}"):
        images.read_image(path, "s1")


@pytest.mark.parametrize("name", ["a.nii", "a.nii.gz", "a.mha"])
def test_read_image_truncated_voxels_of_single_file_formats(tmp_path, name):
    """ITK zero-fills a short NIfTI without complaint: the subject must still fail."""
    path = _write(_image(shape=(8, 30, 30)), tmp_path / name)
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 6 // 10])
    with pytest.raises(InputError, match=f"{name}: voxel data is truncated or corrupt") as info:
        images.read_image(path, "s1")
    assert "\n" not in str(info.value)


def test_read_image_truncated_data(tmp_path):
    path = _write(_image(shape=(8, 30, 30)), tmp_path / "a.mhd")
    raw = tmp_path / "a.zraw"
    raw.write_bytes(raw.read_bytes()[: raw.stat().st_size // 2])
    with pytest.raises(InputError, match="data file a.zraw is truncated or corrupt"):
        images.read_image(path, "s1")


def test_read_image_missing_data_file(tmp_path):
    path = _write(_image(), tmp_path / "a.mhd")
    (tmp_path / "a.zraw").unlink()
    with pytest.raises(InputError, match="MetaImage data file a.zraw not found"):
        images.read_image(path, "s1")


def test_read_image_rejects_nan_and_inf(tmp_path):
    image = _image()
    array = sitk.GetArrayFromImage(image)
    array[0, 0, 0], array[1, 1, 1], array[2, 2, 2] = np.nan, np.inf, -np.inf
    bad = sitk.GetImageFromArray(array)
    bad.CopyInformation(image)
    with pytest.raises(InputError, match="3 NaN/inf voxels"):
        images.read_image(_write(bad, tmp_path / "a.nii.gz"), "s1")


def test_read_image_rejects_unsupported_suffix_and_2d(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(InputError, match="unsupported format"):
        images.read_image(tmp_path / "a.png", "s1")
    flat = sitk.GetImageFromArray(np.zeros((5, 6), np.float32))
    with pytest.raises(InputError, match="expected a 3D image, got 2D"):
        images.read_image(_write(flat, tmp_path / "flat.nii.gz"), "s1")


def _write_dicom_series(folder: Path, series_uid: str, n: int = 3, first: int = 0) -> None:
    """Minimal DICOM slices (int16) of one series, as a scanner export would give."""
    saved = locale.setlocale(locale.LC_ALL)  # GDCM's writer switches the process locale to C
    try:
        _write_dicom_slices(folder, series_uid, n, first)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _write_dicom_slices(folder: Path, series_uid: str, n: int, first: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(n):
        slice_ = sitk.GetImageFromArray(np.full((1, 6, 5), k + first, np.int16))
        slice_.SetSpacing((0.8, 0.8, 2.0))
        tags = {
            "0008|0060": "MR",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
            "0020|000e": series_uid,
            "0020|0013": str(k + 1),
            "0020|0032": f"0\\0\\{2.0 * k}",
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0008|0018": f"{series_uid}.{k + 1}",
            "0028|0030": "0.8\\0.8",
        }
        for tag, value in tags.items():
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{series_uid[-3:]}_{k:03d}.dcm"))
        writer.Execute(slice_)


def test_read_dicom_series_folder(tmp_path):
    _write_dicom_series(tmp_path / "dcm", "1.2.826.0.1.3680043.2.1125.101")
    image = images.read_image(tmp_path / "dcm", "s1")
    assert image.GetSize() == (5, 6, 3)
    assert sitk.GetArrayFromImage(image)[:, 0, 0].tolist() == [0, 1, 2]


def test_read_dicom_folder_with_two_series_or_none_fails(tmp_path):
    _write_dicom_series(tmp_path / "dcm", "1.2.826.0.1.3680043.2.1125.101")
    _write_dicom_series(tmp_path / "dcm", "1.2.826.0.1.3680043.2.1125.202", first=10)
    with pytest.raises(InputError, match="holds 2 DICOM series"):
        images.read_image(tmp_path / "dcm", "s1")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no DICOM series"):
        images.read_image(tmp_path / "empty", "s1")


# --- ingest_image / ingest_mask ----------------------------------------------------------------


def test_ingest_image_reorients_to_lip_and_records_geometry(tmp_path):
    image = _image(dtype=np.int16)
    src = _write(image, tmp_path / "in.mhd")
    record = ingest.ingest_image(
        "s1",
        src,
        tmp_path / "out" / "image.nii.gz",
        tmp_path / "out" / "ingest.json",
        source="maas",
        perspective="sagittal",
        mask_path="m.mhd",
    )
    out = sitk.ReadImage(str(tmp_path / "out" / "image.nii.gz"))
    assert out.GetPixelID() == sitk.sitkFloat32
    assert images.orientation(out) == "LIP"
    # PIR -> LIP: x (L) was the reversed z axis, y stays I, z (P) was x
    assert out.GetSize() == (4, 5, 6)
    np.testing.assert_allclose(out.GetSpacing(), (3.0, 0.7, 0.5), atol=1e-6)
    # same voxel value at the same physical point
    point = image.TransformIndexToPhysicalPoint((2, 3, 1))
    index = out.TransformPhysicalPointToIndex(point)
    assert out[index] == pytest.approx(float(image[2, 3, 1]))
    saved = json.loads((tmp_path / "out" / "ingest.json").read_text())
    assert saved == json.loads(json.dumps(record))
    assert saved["original"]["orientation"] == "PIR"
    assert saved["original"]["size"] == [6, 5, 4]
    assert saved["canonical"]["orientation"] == "LIP"
    assert saved["labelled"] is True and saved["valid"] is True
    assert saved["source"] == "maas" and saved["perspective"] == "sagittal"


def test_ingest_mask_ok_writes_uint8_lip(tmp_path):
    image = _image()
    src = _write(image, tmp_path / "image.mhd")
    msk = _write(_mask_like(image, (0, 1, 2, 3)), tmp_path / "mask.mhd")
    info = ingest.ingest_mask("s1", src, msk, tmp_path / "mask.nii.gz", LABELS)
    out = sitk.ReadImage(str(tmp_path / "mask.nii.gz"))
    assert out.GetPixelID() == sitk.sitkUInt8
    assert images.orientation(out) == "LIP"
    assert set(np.unique(sitk.GetArrayFromImage(out))) == {0, 1, 2, 3}
    assert info["voxels"] == {"femur": 30, "tibia": 30, "fibula": 30}


def test_ingest_mask_shape_mismatch(tmp_path):
    src = _write(_image(), tmp_path / "image.mhd")
    msk = _write(_mask_like(_image(shape=(4, 5, 7))), tmp_path / "mask.mhd")
    with pytest.raises(InputError, match=r"shape mismatch: mask size \[7, 5, 4\] != image"):
        ingest.ingest_mask("s1", src, msk, tmp_path / "m.nii.gz", LABELS)


def test_ingest_mask_geometry_mismatch_names_property_and_amount(tmp_path):
    image = _image()
    src = _write(image, tmp_path / "image.mhd")
    mask = _mask_like(image)
    mask.SetSpacing((0.5, 0.7, 3.5))
    msk = _write(mask, tmp_path / "mask.mhd")
    with pytest.raises(InputError, match="geometry mismatch: spacing differs by 0.5") as info:
        ingest.ingest_mask("s1", src, msk, tmp_path / "m.nii.gz", LABELS)
    assert "origin" not in str(info.value)
    mask = _mask_like(image)
    mask.SetOrigin((10.0, -20.0, 30.0002))  # within tolerance
    ingest.ingest_mask("s1", src, _write(mask, tmp_path / "ok.mhd"), tmp_path / "m.nii.gz", LABELS)
    mask.SetOrigin((12.0, -20.0, 30.0))
    with pytest.raises(InputError, match="origin differs by 2"):
        ingest.ingest_mask(
            "s1", src, _write(mask, tmp_path / "o.mhd"), tmp_path / "m.nii.gz", LABELS
        )


def test_ingest_mask_rejects_unknown_and_non_integer_labels(tmp_path):
    image = _image()
    src = _write(image, tmp_path / "image.mhd")
    msk = _write(_mask_like(image, (0, 1, 5, 7)), tmp_path / "mask.mhd")
    with pytest.raises(InputError, match=r"label values \[5, 7\] not in data.labels"):
        ingest.ingest_mask("s1", src, msk, tmp_path / "m.nii.gz", LABELS)
    frac = _mask_like(image)
    frac = sitk.Cast(frac, sitk.sitkFloat32) * 0.5
    with pytest.raises(InputError, match=r"non-integer label values \[0.5\]"):
        ingest.ingest_mask(
            "s1", src, _write(frac, tmp_path / "f.nii.gz"), tmp_path / "m.nii.gz", LABELS
        )


def test_ingest_mask_empty_warns_but_keeps(tmp_path):
    image = _image()
    src = _write(image, tmp_path / "image.mhd")
    msk = _write(_mask_like(image, (0,)), tmp_path / "mask.mhd")
    with pytest.warns(UserWarning, match="mask is empty"):
        ingest.ingest_mask("s1", src, msk, tmp_path / "m.nii.gz", LABELS)
    assert (tmp_path / "m.nii.gz").exists()


# --- manifests -------------------------------------------------------------------------------


def test_write_data_manifest_columns_and_relative_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    records = [
        ingest.invalid_record("b", "results/cohort/b/image.mhd", "file not found", "jopp"),
        {
            "subject_id": "a",
            "source": "epi",
            "perspective": "coronal",
            "image": "results/cohort/a/image.mhd",
            "mask": "results/cohort/a/mask.mhd",
            "roi": None,
            "labelled": True,
            "valid": True,
            "problem": None,
        },
    ]
    ingest.write_data_manifest(records, "results/data/manifest.csv")
    table = pd.read_csv(tmp_path / "results/data/manifest.csv", keep_default_na=False)
    assert table.columns.tolist() == [*ingest.MANIFEST_COLUMNS, *ingest.AUDIT_COLUMNS]
    assert table["subject_id"].tolist() == ["a", "b"]
    assert table["image"].tolist() == ["../cohort/a/image.mhd", "../cohort/b/image.mhd"]
    assert table["mask"].tolist() == ["../cohort/a/mask.mhd", ""]
    assert table["valid"].tolist() == [True, False]
    assert table["problem"].tolist() == ["", "file not found"]


# --- command line ----------------------------------------------------------------------------


def test_main_image_mask_manifest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    image = _image()
    _write(image, tmp_path / "image.mhd")
    _write(_mask_like(image), tmp_path / "mask.mhd")
    ingest.main(
        [
            "image",
            "--subject",
            "s1",
            "--image",
            "image.mhd",
            "--source",
            "epi",
            "--perspective",
            "coronal",
            "--mask",
            "mask.mhd",
            "--out-image",
            "d/s1/image.nii.gz",
            "--out-json",
            "d/s1/ingest.json",
        ]
    )
    ingest.main(
        [
            "mask",
            "--subject",
            "s1",
            "--image",
            "image.mhd",
            "--mask",
            "mask.mhd",
            "--labels-json",
            json.dumps(LABELS),
            "--out-mask",
            "d/s1/mask.nii.gz",
        ]
    )
    ingest.main(
        [
            "image",
            "--subject",
            "s2",
            "--image",
            "missing.mhd",
            "--on-invalid",
            "skip",
            "--out-image",
            "d/s2/image.nii.gz",
            "--out-json",
            "d/s2/ingest.json",
        ]
    )
    with pytest.raises(InputError, match="subject s3: missing.mhd: file not found"):
        ingest.main(
            [
                "image",
                "--subject",
                "s3",
                "--image",
                "missing.mhd",
                "--out-image",
                "d/s3/image.nii.gz",
                "--out-json",
                "d/s3/ingest.json",
            ]
        )
    (tmp_path / "records.txt").write_text("d/s2/ingest.json\n\n")
    ingest.main(
        [
            "manifest",
            "--records",
            "d/s1/ingest.json",
            "--records-file",
            "records.txt",
            "--out",
            "d/manifest.csv",
        ]
    )
    assert (tmp_path / "d/s1/mask.nii.gz").exists()
    assert not (tmp_path / "d/s2/image.nii.gz").exists()
    table = pd.read_csv(tmp_path / "d/manifest.csv", keep_default_na=False)
    assert table["subject_id"].tolist() == ["s1", "s2"]
    assert table["valid"].tolist() == [True, False]
    assert table["labelled"].tolist() == [True, False]
    assert table["image"].tolist() == ["../image.mhd", "../missing.mhd"]
    assert table["problem"].tolist() == ["", "file not found"]


def test_ingest_of_generated_subject_keeps_values_at_physical_points(tmp_path):
    """A sagittal synthetic subject ends up LIP with unchanged voxel values."""
    cohort = pytest.importorskip("segsweep.data.cohort")
    spec = next(
        s for s in cohort.plan_cohort({"seed": 1, "scale": 0.0625, "sources": {"maas": {"n": 1}}})
    )
    cohort.generate_subject(spec, tmp_path / "subj")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ingest.ingest_image(
            "m", tmp_path / "subj/image.mhd", tmp_path / "i.nii.gz", tmp_path / "i.json"
        )
    raw = sitk.ReadImage(str(tmp_path / "subj/image.mhd"))
    out = sitk.ReadImage(str(tmp_path / "i.nii.gz"))
    assert images.orientation(raw) == "PIR" and images.orientation(out) == "LIP"
    np.testing.assert_allclose(
        np.sort(sitk.GetArrayFromImage(out).ravel()), np.sort(sitk.GetArrayFromImage(raw).ravel())
    )
    for index in [(0, 0, 0), (3, 7, 2), (raw.GetSize()[0] - 1, 5, raw.GetSize()[2] - 1)]:
        point = raw.TransformIndexToPhysicalPoint(index)
        assert out[out.TransformPhysicalPointToIndex(point)] == pytest.approx(raw[index])


# --- check: the validation catalogue, one record per subject ---------------------------------


def _check(tmp_path, subject, *args, on_invalid="skip") -> dict:
    out = tmp_path / "d" / subject / "ingest.json"
    ingest.main(
        [
            "check",
            "--subject",
            subject,
            *args,
            "--labels-json",
            json.dumps(LABELS),
            "--on-invalid",
            on_invalid,
            "--out-json",
            str(out),
        ]
    )
    return json.loads(out.read_text())


def test_check_records_valid_subject_with_voxels_and_extra_columns(tmp_path):
    image = _image()
    src = _write(image, tmp_path / "image.nii.gz")
    msk = _write(_mask_like(image, (0, 1, 3)), tmp_path / "mask.nii.gz")
    record = _check(
        tmp_path, "a", "--image", str(src), "--mask", str(msk), "--extra-json", '{"site": "x"}'
    )
    assert record["valid"] is True and record["problem"] is None
    assert record["voxels"] == {"femur": 40, "tibia": 0, "fibula": 40}
    assert record["extra"] == {"site": "x"}
    assert record["original"]["orientation"] == "PIR"
    assert record["warnings"] == []
    # the same voxels in another orientation and format hash the same
    same = _write(sitk.DICOMOrient(image, "LIP"), tmp_path / "same.mha")
    assert _check(tmp_path, "b", "--image", str(same))["content_hash"] == record["content_hash"]


def test_check_skip_records_problem_and_file_and_dropped_csv_lists_it(tmp_path):
    image = _image()
    src = _write(image, tmp_path / "image.mhd")
    bad = _mask_like(_image(shape=(4, 5, 7)))
    msk = _write(bad, tmp_path / "mask.mhd")
    empty = _write(_mask_like(image, (0,)), tmp_path / "empty.mhd")
    shape = _check(tmp_path, "shape", "--image", str(src), "--mask", str(msk))
    assert shape["valid"] is False
    assert shape["file"] == str(msk)
    assert shape["problem"].startswith("shape mismatch: mask size [7, 5, 4]")
    missing = _check(tmp_path, "missing", "--image", str(tmp_path / "nope.nii.gz"))
    assert missing["problem"] == "file not found"
    with pytest.warns(UserWarning, match="mask is empty"):
        kept = _check(tmp_path, "empty", "--image", str(src), "--mask", str(empty))
    assert kept["valid"] is True
    assert kept["warnings"] == [f"{empty}: mask is empty (no labelled voxels)"]
    with pytest.raises(InputError, match=r"subject shape: .*mask.mhd: shape mismatch"):
        _check(tmp_path, "shape", "--image", str(src), "--mask", str(msk), on_invalid="error")

    records = [str(tmp_path / "d" / s / "ingest.json") for s in ("shape", "missing", "empty")]
    ingest.main(
        [
            "manifest",
            "--records",
            *records,
            "--out",
            str(tmp_path / "m.csv"),
            "--dropped",
            str(tmp_path / "dropped.csv"),
        ]
    )
    dropped = pd.read_csv(tmp_path / "dropped.csv", keep_default_na=False)
    assert dropped.columns.tolist() == ["subject_id", "source", "file", "problem"]
    assert dropped["subject_id"].tolist() == ["missing", "shape"]
    assert dropped["file"].tolist() == [str(tmp_path / "nope.nii.gz"), str(msk)]
    table = pd.read_csv(tmp_path / "m.csv", keep_default_na=False)
    assert table["valid"].tolist() == [True, False, False]
    assert table["warning"].tolist()[0].endswith("mask is empty (no labelled voxels)")


def test_check_dicom_folder_with_two_series_is_dropped(tmp_path):
    _write_dicom_series(tmp_path / "dcm", "1.2.826.0.1.3680043.2.1125.101")
    _write_dicom_series(tmp_path / "dcm", "1.2.826.0.1.3680043.2.1125.202", first=10)
    record = _check(tmp_path, "d1", "--image", str(tmp_path / "dcm"))
    assert record["valid"] is False
    assert record["problem"].startswith("folder holds 2 DICOM series")


def test_one_mask_file_per_class_is_combined_with_label_values(tmp_path):
    image = _image()
    src = _write(image, tmp_path / "image.nii.gz")
    femur = _write(_mask_like(image, (0, 1, 0)), tmp_path / "femur.nii.gz")
    fibula = _write(_mask_like(image, (0, 0, 1)), tmp_path / "fibula.nii.gz")
    info = ingest.ingest_mask(
        "s1",
        src,
        None,
        tmp_path / "mask.nii.gz",
        LABELS,
        class_masks={"femur": femur, "fibula": fibula},
    )
    assert info["voxels"] == {"femur": 40, "tibia": 0, "fibula": 40}
    out = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "mask.nii.gz")))
    assert sorted(np.unique(out).tolist()) == [0, 1, 3]
    with pytest.raises(InputError, match="class 'fibula' overlaps class 'femur' in 40 voxels"):
        ingest.read_label_map("s1", image, LABELS, class_masks={"femur": femur, "fibula": femur})
    labels = _write(_mask_like(image, (0, 2)), tmp_path / "two.nii.gz")
    with pytest.raises(InputError, match=r"two.nii.gz: class mask of 'tibia' is not binary"):
        ingest.read_label_map("s1", image, LABELS, class_masks={"tibia": labels})


def test_channels_are_stacked_and_must_share_geometry(tmp_path):
    pet = _write(_image(seed=1), tmp_path / "pet.nii.gz")
    ct = _write(_image(seed=2), tmp_path / "ct.mha")
    record = ingest.ingest_image("s1", [pet, ct], tmp_path / "out.nii.gz")
    out = sitk.ReadImage(str(tmp_path / "out.nii.gz"))
    assert out.GetNumberOfComponentsPerPixel() == 2
    assert record["canonical"]["orientation"] == "LIP"
    point = out.TransformIndexToPhysicalPoint((1, 2, 3))
    ct_image = sitk.ReadImage(str(ct))
    assert out[(1, 2, 3)][1] == pytest.approx(
        ct_image[ct_image.TransformPhysicalPointToIndex(point)]
    )
    shifted = _image(seed=2)
    shifted.SetOrigin((11.0, -20.0, 30.0))
    bad = _write(shifted, tmp_path / "bad.mha")
    with pytest.raises(InputError, match="bad.mha: channel geometry mismatch: origin differs by 1"):
        ingest.read_channels([pet, bad], "s1")
