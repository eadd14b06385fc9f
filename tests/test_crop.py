"""Crop: joint-centre detection, window geometry, slice harmonisation, mask replay, CLI."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import ndimage

from segsweep.errors import ConfigError, InputError
from segsweep.preprocess import crop, crop_plan

LABELS = {"femur": 1, "tibia": 2, "fibula": 3}
LIP = (1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0)
_IN_PLANE_CROSS = np.zeros((3, 3, 3), bool)
_IN_PLANE_CROSS[1] = ndimage.generate_binary_structure(2, 1)


def _volume(array: np.ndarray, spacing=(1.5, 1.5, 3.0), origin=(-40.0, 10.0, 60.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(LIP)
    return image


# --- slice harmonisation ------------------------------------------------------------------------


def test_harmonise_41_to_24_pads_to_48_and_takes_every_second():
    plan = crop.harmonise_slices(41, 24)
    assert plan["step"] == 2
    assert sorted(plan["padding"]) == [3, 4] and sum(plan["padding"]) == 7
    kept = plan["kept"]
    assert len(kept) == 24
    real = [k for k in kept if k is not None]
    assert len(real) == 21  # the phase keeping most real slices: 0, 2, ..., 40
    assert real == list(range(0, 41, 2))
    assert all(b - a == 2 for a, b in zip(real, real[1:], strict=False))


def test_harmonise_equal_and_fewer_slices():
    same = crop.harmonise_slices(24, 24)
    assert same["step"] == 1 and same["padding"] == [0, 0] and same["kept"] == list(range(24))
    few = crop.harmonise_slices(10, 24)
    assert few["step"] == 1 and few["padding"] == [7, 7]
    assert few["kept"] == [None] * 7 + list(range(10)) + [None] * 7
    odd = crop.harmonise_slices(11, 24)
    assert sum(odd["padding"]) == 13 and odd["kept"].count(None) == 13


def test_harmonise_multiples():
    plan = crop.harmonise_slices(48, 24)
    assert plan["step"] == 2 and plan["padding"] == [0, 0] and None not in plan["kept"]
    plan = crop.harmonise_slices(64, 24)  # 3 * 24 = 72: pad 8, keep every 3rd
    assert plan["step"] == 3 and plan["padding"] == [4, 4]
    assert len(plan["kept"]) == 24


# --- crop_subject geometry ----------------------------------------------------------------------


def _ramp_image(n_slices=41) -> sitk.Image:
    """Voxel value = physical x (mm) + 1000 * slice index: linear in-plane, exact per slice."""
    nz, ny, nx = n_slices, 80, 90
    image = _volume(np.zeros((nz, ny, nx), np.float32))
    x = image.GetOrigin()[0] + np.arange(nx) * 1.5
    array = x[None, None, :] + 1000.0 * np.arange(nz)[:, None, None] + np.zeros((1, ny, 1))
    out = _volume(array.astype(np.float32))
    return out


def test_crop_subject_geometry_and_values():
    image = _ramp_image()
    centre = image.TransformContinuousIndexToPhysicalPoint((45.0, 40.0, 20.0))
    cropped, info = crop.crop_subject(image, centre, window_mm=60.0, size=32, slices=24)
    assert cropped.GetSize() == (32, 32, 24)
    assert cropped.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_allclose(cropped.GetSpacing(), (60 / 32, 60 / 32, 6.0))
    np.testing.assert_allclose(cropped.GetDirection(), LIP)
    # the window is centred on the centre (in-plane), and the output slices sit on kept slices
    mid = cropped.TransformContinuousIndexToPhysicalPoint((15.5, 15.5, 0))
    np.testing.assert_allclose(mid[0], centre[0], atol=1e-6)  # x (left)
    np.testing.assert_allclose(mid[2], centre[2], atol=1e-6)  # superior: the row axis
    array = sitk.GetArrayFromImage(cropped)
    kept = info["slices"]["kept"]
    for j, k in enumerate(kept):
        if k is None:
            assert np.all(array[j] == info["pad_value"])
            continue
        # no mixing across slices: the slice term is exactly 1000 * kept index
        x = [cropped.TransformIndexToPhysicalPoint((i, 0, j))[0] for i in range(32)]
        np.testing.assert_allclose(array[j, 5], np.array(x) + 1000.0 * k, atol=0.05)
        # slice j lies at the physical position of original slice k
        p_out = cropped.TransformIndexToPhysicalPoint((0, 0, j))
        p_in = image.TransformContinuousIndexToPhysicalPoint((0, 0, k))
        assert p_out[1] == pytest.approx(p_in[1])  # y: posterior, the slice axis
    assert info["centre_index"] == pytest.approx([45.0, 40.0, 20.0])
    assert info["window_mm"] == 60.0 and info["size"] == [32, 32, 24]
    assert info["slices"]["original"] == 41 and info["slices"]["step"] == 2


def test_crop_subject_pads_with_image_minimum_outside():
    array = np.full((24, 40, 40), 50.0, np.float32)
    array[0, 0, 0] = -7.0
    image = _volume(array)
    corner = image.TransformContinuousIndexToPhysicalPoint((0.0, 0.0, 12.0))
    cropped, info = crop.crop_subject(image, corner, window_mm=60.0, size=40, slices=24)
    out = sitk.GetArrayFromImage(cropped)
    assert info["pad_value"] == -7.0
    assert out[12, 0, 0] == -7.0  # top-left quadrant lies outside the image
    assert out[12, -1, -1] == pytest.approx(50.0)  # bottom-right inside


def test_crop_subject_accepts_other_orientations():
    """A PIR (sagittal) input is cropped on the canonical LIP grid."""
    image = _ramp_image(24)
    pir = sitk.DICOMOrient(image, "PIR")
    centre = image.TransformContinuousIndexToPhysicalPoint((45.0, 40.0, 12.0))
    a, _ = crop.crop_subject(image, centre, 60.0, 32, 24)
    b, _ = crop.crop_subject(pir, centre, 60.0, 32, 24)
    np.testing.assert_allclose(b.GetDirection(), LIP)
    np.testing.assert_allclose(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b), atol=1e-3)


# --- crop_mask ------------------------------------------------------------------------------


def _labelled_pair():
    """Image + mask: femur block inside the window, tibia block cut by it, no fibula."""
    nz, ny, nx = 30, 80, 80
    mask = np.zeros((nz, ny, nx), np.uint8)
    mask[5:25, 20:38, 30:50] = 1  # femur: well inside a 60 mm window around the centre
    mask[5:25, 42:78, 10:70] = 2  # tibia: reaches beyond the window
    image = _volume((mask * 40.0 + 10.0).astype(np.float32))
    return image, _volume(mask)


def test_crop_mask_values_and_kept_fraction():
    image, mask = _labelled_pair()
    centre = image.TransformContinuousIndexToPhysicalPoint((40.0, 40.0, 15.0))
    cropped, info = crop.crop_subject(image, centre, window_mm=60.0, size=47, slices=24)
    out, kept = crop.crop_mask(mask, info, LABELS)
    array = sitk.GetArrayFromImage(out)
    assert out.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(array)) <= {0, 1, 2}
    assert set(np.unique(array)) == {0, 1, 2}
    assert out.GetSize() == cropped.GetSize()
    np.testing.assert_allclose(out.GetOrigin(), cropped.GetOrigin())
    np.testing.assert_allclose(out.GetSpacing(), cropped.GetSpacing())
    assert kept["femur"] == 1.0
    # window rows 40 +- 20 px (60 mm / 1.5): tibia rows 42..60 of 42..77, columns 20..60 of 10..69
    assert kept["tibia"] == pytest.approx((19 / 36) * (41 / 60))
    assert math.isnan(kept["fibula"])


def test_crop_mask_has_no_cross_slice_interpolation():
    image, mask = _labelled_pair()
    m = sitk.GetArrayFromImage(mask)
    m[::2] = 0  # labels only on odd slices
    mask = _volume(m)
    centre = image.TransformContinuousIndexToPhysicalPoint((40.0, 40.0, 15.0))
    _, info = crop.crop_subject(image, centre, window_mm=60.0, size=40, slices=15)
    out, _ = crop.crop_mask(mask, info, LABELS)
    array = sitk.GetArrayFromImage(out)
    for j, k in enumerate(info["slices"]["kept"]):
        has_labels = bool(array[j].any())
        assert has_labels == (k is not None and k % 2 == 1 and 5 <= k < 25)


# --- joint centre ---------------------------------------------------------------------------


def _knee_phantom(centre_mm: tuple[float, float, float], seed: int = 0) -> sitk.Image:
    """Coronal T1-like knee: fat ring, femur above and tibia below a 7 mm dark gap, growth
    plates, cortex, intercondylar notch. `centre_mm` = (left, inferior, posterior) offsets of the
    joint from the image corner."""
    spacing = (1.6, 1.6, 3.0)
    nz, ny, nx = 36, 100, 100
    axes = [np.arange(n) * s for n, s in zip((nz, ny, nx), spacing[::-1], strict=True)]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    cx, cy, cz = centre_mm
    u, v, w = x - cx, y - cy, z - cz
    image = np.zeros((nz, ny, nx), np.float32)
    leg = (u / 62) ** 2 + (w / 52) ** 2 < 1
    image[leg] = 95.0  # fat
    image[(u / 54) ** 2 + (w / 45) ** 2 < 1] = 30.0  # muscle
    femur_w = np.where(v < -25, 14, 34)
    femur = (np.abs(u) < femur_w) & (v < -3.5) & (np.abs(w) < 28)
    tibia_w = np.where(v > 20, 16, 37)
    tibia = (np.abs(u) < tibia_w) & (v > 3.5) & (np.abs(w) < 26)
    bone = (femur | tibia) & leg
    image[bone] = 5.0  # cortex
    marrow = ndimage.binary_erosion(bone, _IN_PLANE_CROSS, iterations=2)
    image[marrow] = 100.0
    image[marrow & (np.abs(v + 24) < 1.5)] = 28.0  # femoral growth plate
    image[marrow & (np.abs(v - 19) < 1.5)] = 28.0  # tibial growth plate
    image[(np.abs(u) < 8) & (v < -3) & (v > -22) & (np.abs(w) < 10)] = 10.0  # notch
    rng = np.random.default_rng(seed)
    image = np.abs(image + rng.normal(0, 4.0, image.shape)).astype(np.float32)
    out = sitk.GetImageFromArray(image)
    out.SetSpacing(spacing)
    out.SetDirection(LIP)
    return out


@pytest.mark.parametrize(
    "centre", [(88.0, 70.0, 54.0), (70.0, 60.0, 50.0), (90.0, 95.0, 58.0), (95.0, 72.0, 40.0)]
)
def test_find_joint_centre_on_phantom(centre):
    image = _knee_phantom(centre)
    found = np.array(crop.find_joint_centre(image))
    truth = np.array(
        image.TransformContinuousIndexToPhysicalPoint(
            [c / s for c, s in zip(centre, image.GetSpacing(), strict=True)]
        )
    )
    error = found - truth  # physical LPS: x left, y posterior, z superior
    assert abs(error[0]) < 2.0
    assert abs(error[2]) < 2.0  # the gap row
    assert abs(error[1]) < 4.0  # the slice direction (3 mm slices)


def test_find_joint_centre_without_a_joint_falls_back_to_image_centre(caplog):
    image = _volume(np.random.default_rng(0).random((10, 40, 40)).astype(np.float32))
    with caplog.at_level("WARNING"):
        found = crop.find_joint_centre(image)
    expected = image.TransformContinuousIndexToPhysicalPoint((19.5, 19.5, 4.5))
    np.testing.assert_allclose(found, expected)
    assert "no joint gap found" in caplog.text


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> list[Path]:
    """Two synthetic subjects of each source (coronal epi/jopp, sagittal maas)."""
    cohort = pytest.importorskip("segsweep.data.cohort")
    root = tmp_path_factory.mktemp("cohort")
    cfg = {
        "seed": 5,
        "scale": 0.125,
        "sources": {s: {"n": 2, "labelled": 1.0} for s in ("epi", "jopp", "maas")},
    }
    folders = []
    for spec in cohort.plan_cohort(cfg):
        cohort.generate_subject(spec, root / spec.subject_id)
        folders.append(root / spec.subject_id)
    return folders


@pytest.mark.parametrize("bias", ["corrected", "raw"])
def test_find_joint_centre_on_generated_subjects(generated, bias):
    """Error against the generator's truth; 'corrected' divides out the true bias (ideal N4)."""
    errors = []
    for folder in generated:
        image = sitk.ReadImage(str(folder / "image.mhd"))
        if bias == "corrected":
            image = image / sitk.ReadImage(str(folder / "bias.mhd"))
        truth = json.loads((folder / "truth.json").read_text())["joint_centre_mm"]
        errors.append(np.subtract(crop.find_joint_centre(image), truth))
    distance = np.linalg.norm(errors, axis=1)
    assert distance.mean() < 6.0, distance
    assert distance.max() < 9.0, distance
    # in-plane (coronal: x left-right, z superior-inferior), what the crop window depends on
    in_plane = np.linalg.norm(np.array(errors)[:, [0, 2]], axis=1)
    assert in_plane.mean() < 4.5, in_plane


def test_crop_mask_on_generated_subject_keeps_the_bones(generated):
    folder = generated[0]
    image = sitk.ReadImage(str(folder / "image.mhd")) / sitk.ReadImage(str(folder / "bias.mhd"))
    mask = sitk.ReadImage(str(folder / "mask.mhd"))
    cropped, info = crop.crop_subject(image, crop.find_joint_centre(image), 90.0, 64, 24)
    out, kept = crop.crop_mask(mask, info, LABELS)
    assert cropped.GetSize() == out.GetSize() == (64, 64, 24)
    assert set(np.unique(sitk.GetArrayFromImage(out))) == {0, 1, 2, 3}
    assert kept["femur"] > 0.85 and kept["tibia"] > 0.85 and 0 < kept["fibula"] <= 1


# --- command line ------------------------------------------------------------------------------


def test_main_image_and_mask(tmp_path):
    image, mask = _labelled_pair()
    sitk.WriteImage(image, str(tmp_path / "n4.nii.gz"))
    sitk.WriteImage(mask, str(tmp_path / "mask.nii.gz"))
    out = tmp_path / "crop"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # matplotlib font cache etc.
        crop.main(
            [
                "image",
                "--image",
                str(tmp_path / "n4.nii.gz"),
                "--config-json",
                json.dumps({"window_mm": 60.0, "size": 32, "slices": 24}),
                "--out-image",
                str(out / "image.nii.gz"),
                "--out-json",
                str(out / "crop.json"),
                "--out-qc",
                str(out / "qc.png"),
            ]
        )
    crop.main(
        [
            "mask",
            "--mask",
            str(tmp_path / "mask.nii.gz"),
            "--crop-json",
            str(out / "crop.json"),
            "--labels-json",
            json.dumps(LABELS),
            "--out-mask",
            str(out / "mask.nii.gz"),
            "--out-json",
            str(out / "mask.json"),
        ]
    )
    info = json.loads((out / "crop.json").read_text())
    assert set(info) >= {"centre_mm", "centre_index", "window_mm", "size", "slices"}
    assert info["size"] == [32, 32, 24]
    assert (out / "qc.png").stat().st_size > 1000
    assert (out / "qc.png").read_bytes()[:4] == b"\x89PNG"
    cropped = sitk.ReadImage(str(out / "image.nii.gz"))
    cropped_mask = sitk.ReadImage(str(out / "mask.nii.gz"))
    assert cropped.GetSize() == cropped_mask.GetSize() == (32, 32, 24)
    assert cropped_mask.GetPixelID() == sitk.sitkUInt8
    kept = json.loads((out / "mask.json").read_text())["kept_fraction"]
    assert set(kept) == set(LABELS) and kept["fibula"] is None


# --- centre methods, mask-derived centre, cohort tables -----------------------------------------


def _blob_image() -> sitk.Image:
    """Bright box off-centre in a dark LIP volume: foreground centroid known."""
    array = np.zeros((10, 40, 50), np.float32)
    array[2:8, 10:20, 30:40] = 100.0  # centre index (34.5, 14.5, 4.5)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0, 2.0, 3.0))
    image.SetOrigin((5.0, 0.0, -10.0))
    image.SetDirection((1, 0, 0, 0, 0, -1, 0, 1, 0))
    return image


def test_centre_methods():
    image = _blob_image()
    expected = image.TransformContinuousIndexToPhysicalPoint((34.5, 14.5, 4.5))
    np.testing.assert_allclose(crop.find_centre(image, "foreground"), expected, atol=1e-6)
    grid_centre = image.TransformContinuousIndexToPhysicalPoint((24.5, 19.5, 4.5))
    np.testing.assert_allclose(crop.find_centre(image, "image"), grid_centre, atol=1e-6)
    assert crop.find_centre(image, "fixed", [1, 2, 3]) == (1.0, 2.0, 3.0)
    with pytest.raises(ConfigError, match="centre_mm"):
        crop.find_centre(image, "fixed")
    with pytest.raises(ConfigError, match="joint | foreground | image | fixed"):
        crop.find_centre(image, "nose")


def test_mask_centre_is_where_two_classes_meet():
    array = np.zeros((10, 40, 50), np.uint8)
    array[:, 0:20, 10:30] = 1  # femur above
    array[:, 20:40, 10:30] = 2  # tibia below: contact at rows 19/20
    array[:, 30:40, 40:45] = 3  # fibula far away from both
    mask = sitk.GetImageFromArray(array)
    mask.SetDirection((1, 0, 0, 0, 0, -1, 0, 1, 0))
    centre = crop.mask_centre(mask, {"femur": 1, "tibia": 2, "fibula": 3})
    index = mask.TransformPhysicalPointToContinuousIndex(centre)
    np.testing.assert_allclose(index, (19.5, 19.5, 4.5), atol=1e-6)
    only = sitk.GetImageFromArray((array == 3).astype(np.uint8))
    index = crop.mask_centre(only, {"fibula": 1})
    np.testing.assert_allclose(index, (42.0, 34.5, 4.5), atol=1e-6)
    assert crop.mask_centre(only * 0, {"fibula": 1}) is None


def test_multichannel_crop_keeps_channels():
    image = _blob_image()
    vector = sitk.Compose([image, image * 2.0])
    cropped, info = crop.crop_subject(vector, crop.find_centre(vector, "foreground"), 20.0, 8, 4)
    assert cropped.GetNumberOfComponentsPerPixel() == 2
    array = sitk.GetArrayFromImage(cropped)
    np.testing.assert_allclose(array[..., 1], 2 * array[..., 0], rtol=1e-5)


def test_main_mask_records_centre_error_and_tables(tmp_path):
    image = _blob_image()
    array = np.zeros((10, 40, 50), np.uint8)
    array[2:8, 10:15, 30:40] = 1
    array[2:8, 15:20, 30:40] = 2
    mask = sitk.GetImageFromArray(array)
    mask.CopyInformation(image)
    for name, img in (("image", image), ("mask", mask)):
        sitk.WriteImage(img, str(tmp_path / f"{name}.nii.gz"))
    out = tmp_path / "crop" / "s1"
    cfg = {"centre": "foreground", "window_mm": 30.0, "size": 8, "slices": 4}
    crop.main(
        ["image", "--image", str(tmp_path / "image.nii.gz"), "--config-json", json.dumps(cfg)]
        + ["--out-image", str(out / "image.nii.gz"), "--out-json", str(out / "crop.json")]
        + ["--out-qc", str(out / "qc.png")]
    )
    labels = {"femur": 1, "tibia": 2, "fibula": 3}
    crop.main(
        ["mask", "--mask", str(tmp_path / "mask.nii.gz"), "--crop-json", str(out / "crop.json")]
        + ["--labels-json", json.dumps(labels), "--out-mask", str(out / "mask.nii.gz")]
        + ["--out-json", str(out / "mask.json")]
    )
    record = json.loads((out / "mask.json").read_text())
    # contact zone rows 14/15 vs the box centroid row 14.5: 0 mm apart in y (2 mm rows), 0 else
    assert record["centre_error_mm"] == pytest.approx(0.0, abs=1e-6)
    assert record["kept_fraction"] == {"femur": 1.0, "tibia": 1.0, "fibula": None}
    crop.main(
        ["tables", "--crop-dir", str(tmp_path / "crop"), "--subjects", "s1"]
        + ["--out-centre", str(tmp_path / "c.csv"), "--out-kept", str(tmp_path / "k.csv")]
    )
    centre = pd.read_csv(tmp_path / "c.csv")
    assert centre.columns.tolist() == crop.TABLE_CENTRE
    assert centre.loc[0, "method"] == "foreground"
    kept = pd.read_csv(tmp_path / "k.csv")
    assert kept.columns.tolist() == ["subject_id", "femur", "tibia", "fibula"]
    assert kept.loc[0, "femur"] == 1.0 and np.isnan(kept.loc[0, "fibula"])


# --- the reference centre across a joint gap, label extents, the crop plan ----------------------


def test_mask_centre_is_the_widest_interface_across_a_gap():
    """Femur and tibia 8 mm apart (cartilage and fluid between them) meet over a wide plateau;
    the fibula nearly touches the tibia over a small area. The reference centre is midway
    across the femur-tibia gap, not at the small tibiofibular contact."""
    array = np.zeros((10, 60, 60), np.uint8)  # 2 mm pixels in-plane
    array[:, 5:25, 10:50] = 1  # femur: rows 5..24
    array[:, 29:55, 12:48] = 2  # tibia: rows 29..54, 4 rows (8 mm) below the femur
    array[:, 35:50, 49:55] = 3  # fibula: one column from the tibia, over a short stretch
    mask = _volume(array, spacing=(2.0, 2.0, 3.0))
    centre = crop.mask_centre(mask, LABELS)
    index = mask.TransformPhysicalPointToContinuousIndex(centre)
    np.testing.assert_allclose(index[:2], (29.5, 26.5), atol=0.5)  # column, row: mid-gap


def test_label_extents_around_the_centre():
    array = np.zeros((4, 30, 40), np.uint8)
    array[1:3, 5:10, 20:31] = 1  # femur: columns 20..30, rows 5..9
    mask = _volume(array, spacing=(2.0, 1.0, 3.0))
    centre = mask.TransformContinuousIndexToPhysicalPoint((25.0, 10.0, 1.0))
    extents = crop.label_extents(mask, centre, LABELS)
    assert extents["femur"] == pytest.approx([-10.0, 10.0, -5.0, -1.0])
    assert extents["tibia"] is None and extents["fibula"] is None
    assert crop_plan.half_extent(extents) == pytest.approx(10.0)
    # a window of 2 * half-extent around the centre keeps every voxel
    image = _volume(array.astype(np.float32), spacing=(2.0, 1.0, 3.0))
    _, info = crop.crop_subject(image, centre, window_mm=20.0, size=20, slices=4)
    assert crop.crop_mask(mask, info, LABELS)[1]["femur"] == 1.0


def test_resolve_centre():
    assert crop_plan.resolve_centre("auto", "synthetic") == "joint"
    assert crop_plan.resolve_centre("auto", "manifest") == "foreground"
    assert crop_plan.resolve_centre("image", "synthetic") == "image"


def _record(half: float, method: str = "joint") -> dict:
    return {"centre_method": method, "extent_mm": {"a": [-half, half / 2, -1.0, 1.0], "b": None}}


def test_plan_rests_on_train_and_val_subjects_only():
    records = {"s1": _record(40.0), "s2": _record(50.0), "s3": _record(80.0), "u1": _record(0)}
    records["u1"]["extent_mm"] = None  # unlabelled
    splits = pd.DataFrame(
        {"subject_id": ["s1", "s2", "s3", "u1"], "split": ["train", "val", "test", "unlabelled"]}
    )
    plan = crop_plan.plan_crop(records, splits, "auto", margin=0.1)
    assert plan["window_mm"] == 110.0  # 2 * 50 * 1.1, s3 (test) never counts
    assert plan["half_extent_mm"] == {"s1": 40.0, "s2": 50.0}
    assert plan["widest"] == "s2" and plan["subjects"] == 2 and plan["window"] == "auto"
    assert plan["centre_method"] == "joint"
    assert crop_plan.plan_crop(records, splits, "auto", margin=0.0)["window_mm"] == 100.0
    assert crop_plan.planned_window(50.2, 0.1) == 111.0  # rounded up to a whole millimetre
    fixed = crop_plan.plan_crop(records, splits, 90.0)
    assert fixed["window_mm"] == 90.0 and fixed["window"] == "config"
    none = splits.assign(split=["test", "test", "test", "unlabelled"])
    with pytest.raises(InputError, match="window_mm: auto needs train or val subjects"):
        crop_plan.plan_crop(records, none, "auto")


def test_cut_classes_lists_every_class_below_99_percent():
    kept = pd.DataFrame(
        {"subject_id": ["a", "b"], "femur": [1.0, 0.5], "tibia": [0.995, 0.9899], "x": [None] * 2}
    )
    cut = crop_plan.cut_classes(kept)
    assert cut.values.tolist() == [["b", "femur", 0.5], ["b", "tibia", 0.9899]]


def test_main_centre_plan_and_image_with_a_planned_window(tmp_path):
    """The stages as the workflow runs them: centre.json per subject, plan.json from the train
    and val subjects, the crop with the planned window."""
    image, mask = _labelled_pair()
    sitk.WriteImage(image, str(tmp_path / "image.nii.gz"))
    sitk.WriteImage(mask, str(tmp_path / "mask.nii.gz"))
    crop_dir = tmp_path / "crop"
    cfg = json.dumps({"centre": "image", "window_mm": "auto", "size": 16, "slices": 8})
    for subject in ("s1", "s2"):
        crop.main(
            ["centre", "--image", str(tmp_path / "image.nii.gz"), "--config-json", cfg]
            + ["--mask", str(tmp_path / "mask.nii.gz"), "--labels-json", json.dumps(LABELS)]
            + ["--out-json", str(crop_dir / subject / "centre.json")]
        )
    record = json.loads((crop_dir / "s1" / "centre.json").read_text())
    assert record["centre_method"] == "image"
    # grid centre (39.5, 39.5) of 1.5 mm pixels; the tibia reaches column 69 and row 77
    assert record["half_extent_mm"] == pytest.approx((77 - 39.5) * 1.5)
    splits = tmp_path / "splits.csv"
    pd.DataFrame({"subject_id": ["s1", "s2"], "split": ["train", "test"]}).to_csv(splits)
    crop.main(
        ["plan", "--splits", str(splits), "--crop-dir", str(crop_dir), "--subjects", "s1", "s2"]
        + ["--config-json", cfg, "--out-json", str(crop_dir / "plan.json")]
    )
    plan = json.loads((crop_dir / "plan.json").read_text())
    assert plan["window_mm"] == math.ceil(2 * 37.5 * 1.5 * 1.1)
    assert plan["half_extent_mm"] == {"s1": pytest.approx(56.25)}
    out = crop_dir / "s2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        crop.main(
            ["image", "--image", str(tmp_path / "image.nii.gz"), "--config-json", cfg]
            + [
                "--centre-json",
                str(out / "centre.json"),
                "--plan-json",
                str(crop_dir / "plan.json"),
            ]
            + ["--out-image", str(out / "image.nii.gz"), "--out-json", str(out / "crop.json")]
            + ["--out-qc", str(out / "qc.png")]
        )
    info = json.loads((out / "crop.json").read_text())
    assert info["window_mm"] == plan["window_mm"] and info["window"] == "auto"
    assert info["centre_method"] == "image"
    _, kept = crop.crop_mask(mask, info, LABELS)
    assert kept["femur"] == kept["tibia"] == 1.0
    with pytest.raises(ConfigError, match="window_mm"):
        crop.main(
            ["image", "--image", str(tmp_path / "image.nii.gz"), "--config-json", cfg]
            + ["--out-image", str(out / "x.nii.gz"), "--out-json", str(out / "x.json")]
            + ["--out-qc", str(out / "x.png")]
        )


# --- the default knee cohort: centre error and kept fractions of the default crop ---------------


@pytest.fixture(scope="module")
def default_knee() -> list[dict]:
    """Three labelled subjects of the default cohort (config data.synthetic, scale 0.125), as
    the workflow sees them: canonical, N4-corrected with the default settings, centre and label
    extents by the default crop settings (centre auto on the synthetic cohort: the joint)."""
    from segsweep.config_schema import defaults
    from segsweep.data import cohort
    from segsweep.io.images import canonical
    from segsweep.preprocess import n4

    cfg = {
        **defaults("preprocess", "crop"),
        "centre": crop_plan.resolve_centre("auto", "synthetic"),
    }
    n4_cfg = defaults("preprocess", "n4")
    specs = [s for s in cohort.plan_cohort(cohort.DEFAULT_SYNTHETIC) if s.labelled][:3]
    subjects = []
    for spec in specs:
        rendered = cohort.render(spec)
        image = sitk.Cast(canonical(cohort._to_image(rendered.image, rendered)), sitk.sitkFloat32)
        mask = canonical(cohort._to_image(rendered.mask, rendered))
        corrected, _ = n4.n4_correct(
            image, n4_cfg["shrink"], n4_cfg["iterations"], n4_cfg["convergence"]
        )
        subjects.append(
            {
                "id": spec.subject_id,
                "image": corrected,
                "mask": mask,
                "record": crop.centre_record(corrected, cfg, mask, cohort.LABELS),
                "cfg": cfg,
            }
        )
    return subjects


def test_default_knee_crop_centre_is_within_a_few_mm_of_the_mask_centre(default_knee):
    """The detected joint centre and the mask-derived one agree (the reference used to be the
    small tibiofibular contact, ~40 mm away, because the femur-tibia gap is wider than 4 mm)."""
    for subject in default_knee:
        reference = crop.mask_centre(subject["mask"], LABELS)
        error = crop.centre_error({"centre_mm": subject["record"]["centre_mm"]}, reference)
        assert subject["record"]["centre_method"] == "joint"
        assert error["centre_error_mm"] < 4.0, (subject["id"], error)


def test_default_knee_crop_keeps_every_class(default_knee):
    """The default window (auto), planned on two subjects, keeps >= 99 % of every class of a
    third subject it never saw, and of the two (the 90 mm window kept ~77 % of the fibula: the
    cohort labels a 100 mm window around the joint)."""
    assert default_knee[0]["cfg"]["window_mm"] == "auto"
    records = {s["id"]: s["record"] for s in default_knee}
    ids = list(records)
    splits = pd.DataFrame({"subject_id": ids, "split": ["train", "val", "test"]})
    plan = crop_plan.plan_crop(records, splits, "auto", default_knee[0]["cfg"]["margin"])
    assert 100.0 < plan["window_mm"] <= 125.0, plan
    for subject in default_knee:
        _, info = crop.crop_subject(
            subject["image"], tuple(subject["record"]["centre_mm"]), plan["window_mm"], 64, 24
        )
        _, kept = crop.crop_mask(subject["mask"], info, LABELS)
        assert min(kept.values()) >= crop_plan.KEPT_MINIMUM, (subject["id"], kept)
