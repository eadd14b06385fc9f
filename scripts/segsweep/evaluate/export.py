"""Predictions as label maps: on the cropped grid (`export_predictions`), back in each subject's
original geometry (`to_native`, `export_native`), and their scores in native space.

The crop stage resampled the canonical (LIP) volume with nearest neighbour onto the cropped grid
recorded in crop.json ("output": origin, spacing, direction, size; every `step`-th canonical slice).
`to_native` undoes it: the label map on the cropped grid is resampled with nearest neighbour onto
the canonical grid ("input"), so each canonical slice takes its nearest predicted slice and voxels
outside the crop window are background; it is then reoriented to the orientation ingest.json
recorded and given the original origin, spacing and direction, so it overlays on the raw image.

Native scores (`native_tables`): the exported prediction against the original mask (a label map,
a DICOM series or one file per class), restricted to the labelled region (`roi`) when the subject
has one — per patient only, with the metrics of `segsweep.metrics` and the surface distances of
`segsweep.evaluate.distances` on the original spacing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from segsweep.errors import InputError
from segsweep.evaluate.distances import surface_distances
from segsweep.io.images import blank, read_image, read_volume, write_image
from segsweep.io.records import read_json
from segsweep.io.splits import Split
from segsweep.labels import FOREGROUND, label_values
from segsweep.metrics import METRICS, confusion_counts, overlap_metrics, volumes_ml


def export_predictions(
    pred: np.ndarray,
    data: Split,
    classes_of_run: list[str],
    labels: dict[str, int],
    grids: Mapping[str, str | Path],
    out_dir: Path,
) -> list[Path]:
    """One uint8 label map per patient, {out_dir}/{patient}.nii.gz, with the geometry of its
    cropped image (`grids`: patient → path); slices absent from the split stay background."""
    lut = label_values(classes_of_run, labels)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    written = []
    for patient in np.unique(data.patient_id):
        if patient not in grids:
            raise InputError(patient, None, "no cropped image given for its predictions")
        grid_path = grids[patient]
        grid = read_volume(grid_path, patient)
        volume = np.zeros(grid.GetSize()[::-1], dtype=np.uint8)  # (z, y, x)
        rows = data.patient_id == patient
        slices = data.slice_id[rows]
        if pred.shape[1:] != volume.shape[1:] or slices.min() < 0 or slices.max() >= len(volume):
            raise InputError(
                patient,
                str(grid_path),
                f"grid {volume.shape} does not hold slices {sorted(set(slices.tolist()))} of "
                f"shape {pred.shape[1:]}",
            )
        volume[slices] = lut[pred[rows]]
        image = sitk.GetImageFromArray(volume)
        image.CopyInformation(grid)
        path = Path(out_dir) / f"{patient}.nii.gz"
        write_image(image, path)
        written.append(path)
    return written


def to_native(
    cropped: sitk.Image,
    crop_info: dict[str, Any],
    ingest_info: dict[str, Any],
    interpolator: int = sitk.sitkNearestNeighbor,
    outside: float = 0.0,
) -> sitk.Image:
    """A map on the cropped grid in the subject's original geometry: a label map (uint8,
    nearest neighbour), or with `interpolator` linear a float32 map (uncertainty, a class's
    probability) that is `outside` beyond the crop window. It holds two maps of the original
    grid at once (the resampled canonical one and its reoriented copy)."""
    pixel = sitk.sitkUInt8 if interpolator == sitk.sitkNearestNeighbor else sitk.sitkFloat32
    canonical = sitk.Resample(
        sitk.Cast(cropped, pixel),
        blank(crop_info["input"], pixel),
        sitk.Transform(),
        interpolator,
        outside,
        pixel,
    )
    original = ingest_info["original"]
    native = sitk.DICOMOrient(canonical, original["orientation"])
    if list(native.GetSize()) != [int(s) for s in original["size"]]:
        raise InputError(
            ingest_info.get("subject_id"),
            "ingest.json",
            f"reoriented size {native.GetSize()} is not the original {original['size']}",
        )
    native.SetOrigin([float(v) for v in original["origin"]])
    native.SetSpacing([float(v) for v in original["spacing"]])
    native.SetDirection([float(v) for v in original["direction"]])
    return native


def export_native(
    predictions: list[Path],
    crop_records: Mapping[str, str | Path],
    ingest_records: Mapping[str, str | Path],
    out_dir: Path,
) -> list[Path]:
    """Each cropped-grid prediction {subject}.nii.gz (from `export_predictions`) in original
    geometry as {out_dir}/{subject}.nii.gz, undoing the crop its crop.json records and the
    reorientation its ingest.json records; returned in the order of their paths."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(map(str, predictions)):
        subject = Path(path).name[: -len(".nii.gz")]
        crop_info, ingest_info = _records(subject, crop_records, ingest_records)
        native = to_native(read_volume(path, subject), crop_info, ingest_info)
        target = Path(out_dir) / Path(path).name
        write_image(native, target)
        written.append(target)
    return written


def _records(subject: str, *records: Mapping[str, str | Path]) -> list[dict[str, Any]]:
    """The subject's JSON record from each of `records` (subject → path)."""
    for found in records:
        if subject not in found:
            raise InputError(subject, None, "no crop or ingest record given for it")
    return [read_json(found[subject]) for found in records]


def _read_like(path: str, like: sitk.Image, subject: str | None = None) -> np.ndarray:
    """An original file (or DICOM series folder) as an array on the prediction's grid."""
    image = read_image(path, subject)
    if image.GetSize() != like.GetSize():
        raise InputError(
            subject, path, f"size {image.GetSize()} is not the prediction's {like.GetSize()}"
        )
    return sitk.GetArrayFromImage(image)


def reference_labels(
    ingest_info: dict[str, Any], labels: dict[str, int], like: sitk.Image
) -> np.ndarray:
    """The subject's original label map: its mask, or its one-file-per-class masks (non-zero =
    that class) given the label values of data.labels, as ingest combined them."""
    subject = ingest_info.get("subject_id")
    class_masks = ingest_info.get("class_masks") or {}
    if not class_masks:
        return _read_like(ingest_info["mask"], like, subject)
    missing = [name for name in class_masks if name not in labels]
    if missing:
        raise InputError(subject, "ingest.json", f"classes {missing} not in data.labels {labels}")
    reference = np.zeros(like.GetSize()[::-1], dtype=np.uint8)
    for name, path in class_masks.items():
        reference[_read_like(path, like, subject) != 0] = labels[name]
    return reference


def native_rows(
    prediction: sitk.Image,
    ingest_info: dict[str, Any],
    classes: list[str],
    labels: dict[str, int],
) -> list[dict[str, Any]]:
    """Per-class and foreground rows of one subject's native-space scores (within the roi)."""
    if not ingest_info.get("mask"):
        return []
    pred = sitk.GetArrayFromImage(prediction)
    ref = reference_labels(ingest_info, labels, prediction)
    roi = (
        _read_like(ingest_info["roi"], prediction, ingest_info.get("subject_id")) > 0
        if ingest_info.get("roi")
        else np.ones(ref.shape, dtype=bool)
    )
    spacing_zyx = tuple(float(s) for s in prediction.GetSpacing()[::-1])
    voxel_mm3 = float(np.prod(prediction.GetSpacing()))
    if list(classes) == [FOREGROUND]:
        pairs = [(FOREGROUND, pred > 0, ref > 0)]
    else:
        values = [labels[c] for c in classes]
        pairs = [(c, pred == labels[c], ref == labels[c]) for c in classes]
        pairs.append((FOREGROUND, pred > 0, np.isin(ref, values)))
    rows = []
    for name, p, r in pairs:
        p, r = p & roi, r & roi
        tp, fp, fn, _ = confusion_counts(p, r)
        tn = int(np.count_nonzero(roi)) - int(tp + fp + fn)
        metrics = overlap_metrics(tp, fp, fn, tn)
        rows.append(
            {
                "class": name,
                "tp": int(tp),
                "fp": int(fp),
                "fn": int(fn),
                "tn": tn,
                **{m: float(metrics[m]) for m in METRICS},
                **{k: float(v) for k, v in volumes_ml(tp, fp, fn, voxel_mm3).items()},
                **surface_distances(p, r, spacing_zyx),
            }
        )
    return rows


def native_tables(
    predictions: list[Path],
    ingest_records: Mapping[str, str | Path],
    classes: list[str],
    labels: dict[str, int],
    run_id: str,
    split: str,
) -> pd.DataFrame:
    """Native-space per-patient rows of every exported native prediction {subject}.nii.gz of a
    labelled subject (its ingest.json names the original mask and roi)."""
    rows = []
    for path in sorted(map(str, predictions)):
        subject = Path(path).name[: -len(".nii.gz")]
        (ingest_info,) = _records(subject, ingest_records)
        for row in native_rows(read_volume(path, subject), ingest_info, classes, labels):
            rows.append(
                {"run_id": run_id, "split": split, "space": "native", "patient_id": subject, **row}
            )
    return pd.DataFrame(rows)
