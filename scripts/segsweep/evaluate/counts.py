"""Confusion counts and overlap metrics on the model's device, accumulated batch by batch.

Selection scores every kept checkpoint of a run on validation. Predicting on the device, copying
label maps to the CPU and building full numpy tables for each checkpoint costs a transfer and a
per-class boolean copy of the split per checkpoint; here each batch of slices is predicted, turned
into per-slice (tp, fp, fn, tn) counts per class as int64 tensors where the model lives, and only
the counts (slices × classes × 4) stay. Per-patient (3D) counts are sums of a patient's slice
counts, as in `segsweep.evaluate.tables.metrics_tables`, and the metrics are the formulas of
`segsweep.metrics.fractions` evaluated on float64 tensors, so values equal the numpy tables and
carry the same empty conventions (a zero denominator gives NaN, never a warning).

Which predicted class indices and mask channels make up each class (a merged run's `foreground`
is every data class; separate and per-class runs score each of their classes and the union) is
`segsweep.labels.class_mapping`, the mapping of the numpy tables too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from segsweep.io.splits import Split
from segsweep.labels import class_mapping
from segsweep.metrics import fractions, volumes
from segsweep.model.checkpoints import BATCH_SIZE, slices_per_batch
from segsweep.model.tensors import to_tensor


@dataclass(frozen=True)
class ClassSelectors:
    """Evaluated classes (the run's, then "foreground") and, per class, which predicted class
    indices (`labels`, bool [L, C]) and which mask channels (`channels`, bool [C, m]) it holds."""

    names: list[str]
    labels: np.ndarray
    channels: np.ndarray


@dataclass(frozen=True)
class SplitCounts:
    """Confusion counts of one model on one split, on the device: int64 [rows, classes, 4]
    with (tp, fp, fn, tn) last. Slice rows are in the split's order (`slice_id` of each);
    patient rows follow `patients` (sorted), `patient_index` maps each slice to its patient row."""

    classes: list[str]
    per_slice: torch.Tensor
    per_patient: torch.Tensor
    patients: np.ndarray
    patient_index: np.ndarray
    slice_id: np.ndarray

    def slice_order(self) -> np.ndarray:
        """Slice rows sorted by patient, then slice id: the row order of `metrics_tables`."""
        return np.lexsort((self.slice_id, self.patient_index))


def class_selectors(classes_of_run: list[str], class_names_of_data: list[str]) -> ClassSelectors:
    """The class mapping of `metrics_tables` (`segsweep.labels.class_mapping`) as boolean
    lookups."""
    mapping = class_mapping(classes_of_run, class_names_of_data)
    labels = np.zeros((len(classes_of_run) + 1, len(mapping)), dtype=bool)
    channels = np.zeros((len(mapping), len(class_names_of_data)), dtype=bool)
    for column, (_, predicted, masked) in enumerate(mapping):
        labels[predicted, column] = True
        channels[column, masked] = True
    return ClassSelectors([name for name, _, _ in mapping], labels, channels)


def batch_counts(
    labels: torch.Tensor, masks: torch.Tensor, selectors: ClassSelectors
) -> torch.Tensor:
    """(tp, fp, fn, tn) int64 [B, C, 4] of class-index labels [B, H, W] against 0/1 masks
    [B, H, W, m], on the labels' device."""
    device = labels.device
    label_lut = torch.as_tensor(selectors.labels, dtype=torch.bool, device=device)
    pred = label_lut[labels.to(torch.int64)]  # [B, H, W, C]
    masks = masks.to(device=device, dtype=torch.bool)
    ref = torch.stack(  # one class at a time: no [B, H, W, C, m] intermediate
        [masks[..., np.flatnonzero(row).tolist()].any(dim=-1) for row in selectors.channels],
        dim=-1,
    )
    tp = (pred & ref).sum(dim=(1, 2), dtype=torch.int64)
    n_pred = pred.sum(dim=(1, 2), dtype=torch.int64)
    n_ref = ref.sum(dim=(1, 2), dtype=torch.int64)
    fp, fn = n_pred - tp, n_ref - tp
    tn = labels.shape[1] * labels.shape[2] - tp - fp - fn
    return torch.stack([tp, fp, fn, tn], dim=-1)


def batch_logits(
    model: Callable[[torch.Tensor], torch.Tensor], images: np.ndarray, device: torch.device
) -> torch.Tensor:
    """Logits [B, K, H, W] on `device` of channels-last slices [B, H, W, c]: the one place an
    image batch becomes logits (where a model of another kind would be routed)."""
    return model(to_tensor(images).to(device))


@torch.no_grad()
def split_counts(
    model: Callable[[torch.Tensor], torch.Tensor],
    data: Split,
    classes_of_run: list[str],
    device: torch.device,
    batch_size: int = BATCH_SIZE,
) -> SplitCounts:
    """Per-slice and per-patient counts of the argmax of `model` on `data`, in one pass of
    batches streamed to `device` (whole volumes for a 3D run's `VolumeSlices` model); nothing
    of image size comes back to the CPU."""
    selectors = class_selectors(classes_of_run, data.classes)
    n_labels = len(selectors.labels)
    n_rows, n_classes = len(data.images), len(selectors.names)
    batch_size = slices_per_batch(model, batch_size)
    per_slice = torch.zeros((n_rows, n_classes, 4), dtype=torch.int64, device=device)
    for start in range(0, n_rows, batch_size):
        stop = min(start + batch_size, n_rows)
        logits = batch_logits(model, data.images[start:stop], device)
        if logits.shape[1] != n_labels:
            raise ValueError(
                f"model gives {logits.shape[1]} output channels; classes {classes_of_run} "
                f"need {n_labels} (background first)"
            )
        masks = torch.from_numpy(np.ascontiguousarray(data.masks[start:stop])).to(device)
        per_slice[start:stop] = batch_counts(logits.argmax(dim=1), masks, selectors)
    patients, patient_index = np.unique(np.asarray(data.patient_id, dtype=str), return_inverse=True)
    per_patient = torch.zeros((len(patients), n_classes, 4), dtype=torch.int64, device=device)
    index = torch.as_tensor(patient_index, dtype=torch.int64, device=device)
    per_patient.index_add_(0, index, per_slice)
    return SplitCounts(
        selectors.names, per_slice, per_patient, patients, patient_index, np.asarray(data.slice_id)
    )


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den as float64, NaN where den == 0 (as `segsweep.metrics._ratio`)."""
    return torch.where(den != 0, num / den, torch.full_like(num, torch.nan))


def overlap_metrics(counts: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every metric of `segsweep.metrics.METRICS` (float64) from int64 counts [..., 4]."""
    tp, fp, fn, tn = counts.to(torch.float64).unbind(dim=-1)
    return {name: _ratio(*pair) for name, pair in fractions(tp, fp, fn, tn).items()}


def volumes_ml(counts: torch.Tensor, voxel_mm3: torch.Tensor) -> dict[str, torch.Tensor]:
    """Reference and predicted volume in mL from counts [..., 4]; `voxel_mm3` (mm³) broadcasts
    against counts[..., 0], e.g. [rows, 1] for one voxel size per row."""
    scale = voxel_mm3.to(device=counts.device, dtype=torch.float64) / 1000.0
    tp, fp, fn, _ = counts.to(torch.float64).unbind(dim=-1)
    return volumes(tp, fp, fn, scale)


def table_values(counts: SplitCounts, level: str, class_name: str, metric: str) -> np.ndarray:
    """`metric` of `class_name` per patient or per slice as a float64 numpy vector, rows in the
    order of `metrics_tables` (patient, then slice id). Only this vector leaves the device."""
    column = counts.classes.index(class_name)
    rows = counts.per_patient if level == "patient" else counts.per_slice
    values = overlap_metrics(rows[:, column])[metric].cpu().numpy()
    return values if level == "patient" else values[counts.slice_order()]
