"""Predictions go back to the original geometry exactly where the crop kept them, and native-space
scores count only the labelled region."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

from segsweep.deploy.native import to_native
from segsweep.evaluate.export import native_rows
from segsweep.preprocess.crop import CANONICAL, _output_grid, crop_mask, harmonise_slices


def _sagittal_subject() -> tuple[sitk.Image, dict, dict]:
    """A label map acquired sagittally (PIR), its crop record and its ingest record."""
    array = np.zeros((9, 30, 26), dtype=np.uint8)  # (z, y, x) in PIR
    array[2:7, 5:15, 4:12], array[2:7, 15:25, 4:12], array[2:7, 5:25, 12:20] = 1, 2, 3
    mask = sitk.GetImageFromArray(array)
    mask.SetSpacing((1.2, 0.9, 3.0))
    mask.SetOrigin((10.0, -5.0, 30.0))
    mask.SetDirection(sitk.DICOMOrientImageFilter.GetDirectionCosinesFromOrientation("PIR"))
    lip = sitk.DICOMOrient(mask, CANONICAL)
    centre = lip.TransformContinuousIndexToPhysicalPoint([s / 2 for s in lip.GetSize()])
    slices = harmonise_slices(lip.GetSize()[2], 14)
    info = {
        "centre_mm": list(centre),
        "window_mm": 20.0,
        "input": {
            "size": list(lip.GetSize()),
            "spacing": list(lip.GetSpacing()),
            "origin": list(lip.GetOrigin()),
            "direction": list(lip.GetDirection()),
        },
        "output": _output_grid(lip, centre, 20.0, 16, slices),
        "slices": slices,
    }
    ingest = {
        "subject_id": "s",
        "original": {
            "size": list(mask.GetSize()),
            "spacing": list(mask.GetSpacing()),
            "origin": list(mask.GetOrigin()),
            "direction": list(mask.GetDirection()),
            "orientation": "PIR",
        },
    }
    return mask, json.loads(json.dumps(info)), ingest


def test_round_trip_restores_the_original_geometry_and_kept_voxels():
    mask, info, ingest = _sagittal_subject()
    cropped, _ = crop_mask(mask, info)
    native = to_native(cropped, info, ingest)
    assert native.GetSize() == mask.GetSize()
    np.testing.assert_allclose(native.GetOrigin(), mask.GetOrigin())
    np.testing.assert_allclose(native.GetDirection(), mask.GetDirection())
    # back on the canonical grid: every kept slice equals the original inside the window
    lip_native = sitk.GetArrayFromImage(sitk.DICOMOrient(native, CANONICAL))
    lip_mask = sitk.GetArrayFromImage(sitk.DICOMOrient(mask, CANONICAL))
    kept = [k for k in info["slices"]["kept"] if k is not None]
    assert kept and lip_native.any()
    back = sitk.GetArrayFromImage(cropped)
    for k_out, k_in in enumerate(info["slices"]["kept"]):
        if k_in is None:
            continue
        shown = np.unique(back[k_out])
        assert set(np.unique(lip_native[k_in])) <= set(shown) | {0}
    # in plane the crop resampled (1.25 mm pixels): the round trip agrees up to edge voxels
    agree = lip_native[kept] == lip_mask[kept]
    inside = lip_native[kept] > 0
    assert agree[inside].mean() > 0.9
    # slices the crop skipped take the nearest kept slice, never a blend of labels
    assert set(np.unique(lip_native)) <= {0, 1, 2, 3}


def test_native_scores_only_count_the_roi(tmp_path):
    shape = (4, 10, 10)
    ref = np.zeros(shape, np.uint8)
    ref[1:3, 2:6, 2:6] = 1
    pred = ref.copy()
    pred[1:3, 7:9, 7:9] = 1  # false positives outside the roi
    roi = np.zeros(shape, np.uint8)
    roi[:, :, :6] = 1
    paths = {}
    for name, array in {"mask": ref, "roi": roi}.items():
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((0.5, 0.5, 2.0))
        paths[name] = str(tmp_path / f"{name}.nii.gz")
        sitk.WriteImage(image, paths[name])
    prediction = sitk.GetImageFromArray(pred)
    prediction.SetSpacing((0.5, 0.5, 2.0))
    (row,) = native_rows(prediction, paths, ["foreground"], {"femur": 1}, 1.0)
    assert row["dice"] == 1.0 and row["fp"] == 0 and row["tn"] == roi.sum() - ref.sum()
    assert row["hd95"] == 0.0 and row["volume_ref_ml"] == pytest.approx(32 * 0.5 / 1000)
    assert row["nsd"] == 1.0
    without_roi = native_rows(prediction, {"mask": paths["mask"]}, ["foreground"], {}, 1.0)[0]
    assert (
        without_roi["fp"] == 8 and without_roi["dice"] < 1 and not math.isnan(without_roi["hd95"])
    )


def test_unlabelled_predictions_are_drawn(tmp_path):
    from segsweep.evaluate.unlabelled import overlay_figure

    slices = np.ones((4, 6, 6, 1), np.float32)
    labels = np.zeros((4, 6, 6), np.uint8)
    labels[2, 1:4, 1:4] = 1
    out = tmp_path / "overlay.png"
    overlay_figure([("u", slices[..., 0], labels)], out, "title")
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_native_scores_read_class_mask_files_and_dicom_series(tmp_path):
    """A subject brought with one mask file per class, or with a DICOM series as its mask, is
    scored against the label map ingest combined from them."""
    from test_data_workflow import write_dicom

    shape = (4, 10, 12)
    labels = {"vertebra": 2, "disc": 5}
    ref = np.zeros(shape, np.uint8)
    ref[1:3, 2:6, 2:6], ref[1:3, 2:6, 6:10] = 2, 5
    like = sitk.GetImageFromArray(ref)
    like.SetSpacing((0.7, 0.7, 4.0))
    files = {}
    for name, value in labels.items():
        image = sitk.GetImageFromArray((ref == value).astype(np.uint8))
        image.CopyInformation(like)
        files[name] = str(tmp_path / f"{name}.nii.gz")
        sitk.WriteImage(image, files[name])
    write_dicom(like, tmp_path / "mask")
    prediction = sitk.GetImageFromArray(np.where(ref == 5, 0, ref).astype(np.uint8))
    prediction.CopyInformation(like)
    records = [
        {"subject_id": "s", "mask": ";".join(files.values()), "class_masks": files},
        {"subject_id": "s", "mask": str(tmp_path / "mask")},
    ]
    for record in records:
        rows = {r["class"]: r for r in native_rows(prediction, record, [*labels], labels, 1.0)}
        assert rows["vertebra"]["dice"] == 1.0 and rows["disc"]["fn"] == ref.astype(bool).sum() / 2
        assert rows["foreground"]["tp"] == 32 and rows["foreground"]["fn"] == 32
