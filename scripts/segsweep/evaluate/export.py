"""The scores of predictions in each subject's original geometry (`native_tables`): the
exported prediction (`segsweep.deploy.predictor`, back in original geometry by
`segsweep.deploy.native.to_native`) against the original mask (a label map, a DICOM series or
one file per class), restricted to the labelled region (`roi`) when the subject has one — per
patient only, with the metrics of `segsweep.metrics` and the surface metrics of
`segsweep.evaluate.distances` (HD95, ASSD, and the NSD at the config's τ in mm) on the original
spacing.
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
from segsweep.io.images import read_image, read_volume
from segsweep.io.records import read_json
from segsweep.labels import FOREGROUND
from segsweep.metrics import METRICS, confusion_counts, overlap_metrics, volumes_ml


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
    nsd_tolerance_mm: float,
) -> list[dict[str, Any]]:
    """Per-class and foreground rows of one subject's native-space scores (within the roi),
    the NSD at `nsd_tolerance_mm` on the original grid."""
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
                **surface_distances(p, r, spacing_zyx, nsd_tolerance_mm),
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
    nsd_tolerance_mm: float,
) -> pd.DataFrame:
    """Native-space per-patient rows of every exported native prediction {subject}.nii.gz of a
    labelled subject (its ingest.json names the original mask and roi), the NSD at
    `nsd_tolerance_mm`."""
    rows = []
    for path in sorted(map(str, predictions)):
        subject = Path(path).name[: -len(".nii.gz")]
        (ingest_info,) = _records(subject, ingest_records)
        prediction = read_volume(path, subject)
        for row in native_rows(prediction, ingest_info, classes, labels, nsd_tolerance_mm):
            rows.append(
                {"run_id": run_id, "split": split, "space": "native", "patient_id": subject, **row}
            )
    return pd.DataFrame(rows)
