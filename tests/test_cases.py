"""The cases `segsweep predict --input` finds: files, folders, nnU-Net channels, DICOM series,
manifests and the problems of each."""

from __future__ import annotations

import locale
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from segsweep.deploy.cases import Case, find_cases


def _image(path: Path) -> str:
    """A tiny image at `path` (ITK writes only lower-case extensions: renamed after)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lower = path.with_name(path.name.lower())
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 4), np.float32)), str(lower))
    lower.rename(path)
    return str(path)


def _dicom(folder: Path, series_uid: str = "1.2.826.0.1.3680043.2.1125.101") -> str:
    """Two int16 slices of one DICOM series (GDCM's writer switches the locale: put it back)."""
    saved = locale.setlocale(locale.LC_ALL)
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    try:
        for k in range(2):
            slice_ = sitk.GetImageFromArray(np.full((1, 3, 4), k, np.int16))
            tags = {
                "0008|0060": "MR",
                "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
                "0020|000e": series_uid,
                "0020|0013": str(k + 1),
                "0020|0032": f"0\\0\\{2.0 * k}",
                "0020|0037": "1\\0\\0\\0\\1\\0",
                "0008|0018": f"{series_uid}.{k + 1}",
            }
            for tag, value in tags.items():
                slice_.SetMetaData(tag, value)
            writer.SetFileName(str(folder / f"{series_uid[-3:]}_{k:03d}.dcm"))
            writer.Execute(slice_)
    finally:
        locale.setlocale(locale.LC_ALL, saved)
    return str(folder)


def _reasons(problems: list[tuple[str, str]]) -> dict[str, str]:
    return dict(problems)


@pytest.mark.parametrize(
    "name", ["a.nii", "a.nii.gz", "a.mha", "a.mhd", "a.NII.GZ", "a.MHA", "a_0000.nii.gz"]
)
def test_single_image_file_is_a_case_named_without_extension(tmp_path, name):
    path = _image(tmp_path / name)
    assert find_cases([path]) == ([Case("a", (path,))], [])


def test_folder_mixing_formats_and_dicom_sorted_by_name(tmp_path):
    folder = tmp_path / "scans"
    c = _image(folder / "c.nii")
    a = _image(folder / "a.mhd")  # its .zraw data file is not a case
    b = _image(folder / "b.mha")
    d = _image(folder / "d_0000.nii.gz")
    series = _dicom(folder / "e")
    (folder / "notes.txt").write_text("not an image")
    (folder / "empty").mkdir()
    cases, problems = find_cases([folder])
    assert problems == []
    assert cases == [
        Case("a", (a,)),
        Case("b", (b,)),
        Case("c", (c,)),
        Case("d", (d,)),
        Case("e", (series,)),
    ]


def test_nnunet_channels_grouped_from_a_folder_and_from_files(tmp_path):
    folder = tmp_path / "scans"
    ct = _image(folder / "p1_0001.nii.gz")
    pet = _image(folder / "p1_0000.nii.gz")
    expected = ([Case("p1", (pet, ct))], [])
    assert find_cases([folder], channels=2) == expected
    assert find_cases([ct, pet], channels=2) == expected


def test_channels_grouped_across_inputs(tmp_path):
    pet = _image(tmp_path / "pet" / "p1_0000.nii.gz")
    ct = _image(tmp_path / "ct" / "p1_0001.mha")
    assert find_cases([tmp_path / "ct", pet], channels=2) == ([Case("p1", (pet, ct))], [])


def test_dicom_folder_given_directly_is_named_after_it(tmp_path, monkeypatch):
    series = _dicom(tmp_path / "patient7")
    assert find_cases([series]) == ([Case("patient7", (series,))], [])
    monkeypatch.chdir(series)
    assert find_cases(["."]) == ([Case("patient7", (".",))], [])


def test_dicom_folder_with_two_series_is_a_problem(tmp_path):
    folder = _dicom(tmp_path / "mixed")
    _dicom(tmp_path / "mixed", "1.2.826.0.1.3680043.2.1125.202")
    good = _image(tmp_path / "good.nii.gz")
    cases, problems = find_cases([folder, good])
    assert cases == [Case("good", (good,))]
    assert "2 DICOM series" in _reasons(problems)[folder]


def test_manifest_one_channel_relative_and_absolute_paths(tmp_path):
    a = _image(tmp_path / "data" / "images" / "a.nii.gz")
    series = _dicom(tmp_path / "data" / "b_dicom")
    manifest = tmp_path / "data" / "cases.csv"
    manifest.write_text(f"subject_id,image,mask\ns1,images/a.nii.gz,\ns2,{series}\n")
    assert find_cases([manifest]) == ([Case("s1", (a,)), Case("s2", (series,))], [])


def test_manifest_two_channels_in_the_order_of_names(tmp_path):
    pet = _image(tmp_path / "pet.nii.gz")
    ct = _image(tmp_path / "ct.mha")
    manifest = tmp_path / "cases.CSV"
    manifest.write_text("subject_id,ct,pet,image\ns1,ct.mha,pet.nii.gz,\n")
    expected = ([Case("s1", (pet, ct))], [])
    assert find_cases([manifest], channels=2, names=["pet", "ct"]) == expected


def test_manifest_missing_column_empty_cell_missing_file_and_duplicate_id(tmp_path):
    _image(tmp_path / "a.nii.gz")
    manifest = tmp_path / "cases.csv"
    manifest.write_text("subject_id,pet\ns1,a.nii.gz\n")
    cases, problems = find_cases([manifest], channels=2, names=["pet", "ct"])
    assert cases == []
    assert _reasons(problems)[str(manifest)].startswith("manifest lacks required column 'ct'")

    manifest.write_text(
        "subject_id,image\ns1,a.nii.gz\ns2,\ns3,gone.nii.gz\ns4,a.nii.gz\ns4,a.nii.gz\n"
    )
    cases, problems = find_cases([manifest])
    reasons = _reasons(problems)
    assert cases == [Case("s1", (str(tmp_path / "a.nii.gz"),))]
    assert "no image in column 'image'" in reasons["s2"]
    assert reasons[str(tmp_path / "gone.nii.gz")] == f"not found (case s3 of {manifest})"
    assert "duplicate subject id (lines 5, 6)" in reasons["s4"]


def test_missing_path_other_file_type_and_unusable_folder(tmp_path):
    good = _image(tmp_path / "good.nii.gz")
    other = tmp_path / "scan.png"
    other.write_bytes(b"")
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "readme.txt").write_text("")
    gone = tmp_path / "gone.nii.gz"
    cases, problems = find_cases([gone, other, empty, good])
    reasons = _reasons(problems)
    assert cases == [Case("good", (good,))]
    assert reasons[str(gone)] == "not found"
    assert reasons[str(other)].startswith("not an image file (.mhd, .mha, .nii, .nii.gz)")
    assert reasons[str(empty)] == "holds no image file and no DICOM series"


def test_wrong_channel_count_and_gaps_name_the_missing_channels(tmp_path):
    folder = tmp_path / "scans"
    _image(folder / "one_0000.nii.gz")
    _image(folder / "gap_0000.nii.gz")
    _image(folder / "gap_0002.nii.gz")
    for k in range(3):
        _image(folder / f"three_{k:04d}.nii.gz")
    _image(folder / "plain.nii.gz")
    both = [_image(folder / f"ok_{k:04d}.mha") for k in range(2)]
    cases, problems = find_cases([folder], channels=2)
    assert cases == [Case("ok", tuple(both))]
    assert _reasons(problems) == {
        "gap": "channel(s) _0000, _0002 found; missing _0001",
        "one": "channel(s) _0000 found; expected 2; missing _0001",
        "plain": "1 channel(s) found; expected 2",
        "three": "channel(s) _0000, _0001, _0002 found; expected 2",
    }


def test_lone_channel_other_than_first_is_a_gap(tmp_path):
    path = _image(tmp_path / "x_0001.nii.gz")
    assert find_cases([path]) == ([], [("x", "channel(s) _0001 found; missing _0000")])


def test_two_inputs_making_one_case_name(tmp_path):
    first = _image(tmp_path / "a" / "x.nii.gz")
    second = _image(tmp_path / "b" / "x.mha")
    channel = _image(tmp_path / "c" / "y_0000.nii.gz")
    again = _image(tmp_path / "d" / "y_0000.mha")
    series = _dicom(tmp_path / "e" / "z")
    same = _image(tmp_path / "z.nii")
    cases, problems = find_cases([tmp_path / "a", second, channel, again, tmp_path / "e", same])
    assert cases == []
    assert _reasons(problems) == {
        "x": f"made by several inputs: {first}, {second}",
        "y": f"made by several inputs: {channel}, {again}",
        "z": f"made by several inputs: {series}, {same}",
    }
