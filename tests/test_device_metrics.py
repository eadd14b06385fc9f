"""Device-side confusion counts and metrics equal the numpy tables of `metrics_tables`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_train import CLASSES, HP, write_toy_h5
from torch import nn

from segsweep.config_schema import complete
from segsweep.devices import choose_device
from segsweep.evaluate import counts as dm
from segsweep.evaluate.tables import COUNTS, evaluate_model, metrics_tables
from segsweep.io.splits import Split, read_split
from segsweep.metrics import METRICS, overlap_metrics
from segsweep.model.checkpoints import VolumeSlices
from segsweep.model.unet import build_model

DEVICE = choose_device("auto")  # the CPU here; the same tests run on a GPU when one is visible
RUN_CLASSES = {
    "merged": ["foreground"],
    "separate": CLASSES,
    "subset-reordered": ["fibula", "femur"],
}
SPACING = {"p0": (0.5, 0.8, 2.0), "p1": (1.0, 1.0, 1.0), "p2": (0.7, 0.7, 3.0), "p3": (2, 1, 1)}


class LabelEcho(nn.Module):
    """A "model" whose logits are one-hot of the label map stored in image channel 0."""

    def __init__(self, n_labels: int) -> None:
        super().__init__()
        self.n_labels = n_labels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        labels = x[:, 0].round().to(torch.int64)
        return F.one_hot(labels, self.n_labels).permute(0, 3, 1, 2).to(torch.float32)


def _random_case(n_labels: int, seed: int) -> Split:
    """Four patients in shuffled rows with gaps in their slice ids: p0/p1 random, with an empty
    slice (reference and prediction) and a slice whose reference covers every voxel; p2 empty
    throughout; p3 with false positives only."""
    rng = np.random.default_rng(seed)
    sizes = {"p0": 6, "p1": 5, "p2": 3, "p3": 3}
    patient = np.repeat(list(sizes), list(sizes.values()))
    slice_id = np.concatenate([rng.choice(9, n, replace=False) for n in sizes.values()])
    n, shape = len(patient), (7, 9)
    density = rng.choice([0.0, 0.05, 0.3], size=(n, 1, 1, 1))
    masks = (rng.random((n, *shape, len(CLASSES))) < density).astype(np.uint8)
    drawn = rng.integers(1, n_labels, size=(n, *shape))
    pred = np.where(rng.random((n, *shape)) < rng.choice([0.0, 0.1, 0.4], (n, 1, 1)), drawn, 0)
    masks[[0, 7]] = 0
    pred[[0, 7]] = 0
    masks[3] = 1  # reference covers the slice: specificity undefined
    masks[patient == "p2"] = 0
    pred[patient == "p2"] = 0
    masks[patient == "p3"] = 0
    pred[np.flatnonzero(patient == "p3")[0], 2:4, 1:6] = n_labels - 1
    order = rng.permutation(n)
    return Split(
        images=pred[order, ..., None].astype(np.float32),
        masks=masks[order],
        patient_id=patient[order],
        slice_id=slice_id[order],
        classes=list(CLASSES),
    )


def _assert_table_equal(counts: torch.Tensor, table, voxel_mm3: np.ndarray) -> None:
    """Device counts [rows, classes, 4] (rows in table order) against a metrics_tables table."""
    assert counts.dtype == torch.int64 and counts.device.type == DEVICE.type
    np.testing.assert_array_equal(counts.cpu().numpy().reshape(-1, 4), table[list(COUNTS)])
    metrics = dm.overlap_metrics(counts)
    assert list(metrics) == list(METRICS)
    voxel = torch.as_tensor(voxel_mm3, dtype=torch.float64, device=DEVICE)[:, None]
    for name, values in {**metrics, **dm.volumes_ml(counts, voxel)}.items():
        assert values.dtype == torch.float64, name
        expected = table[name].to_numpy(dtype=np.float64)
        actual = values.cpu().numpy().reshape(-1)
        np.testing.assert_allclose(
            actual, expected, rtol=0, atol=1e-6, equal_nan=True, err_msg=name
        )


@pytest.mark.parametrize("mode", list(RUN_CLASSES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_device_tables_equal_metrics_tables_on_random_cases(mode, seed):
    run_classes = RUN_CLASSES[mode]
    data = _random_case(len(run_classes) + 1, seed)
    counts = dm.split_counts(LabelEcho(len(run_classes) + 1), data, run_classes, DEVICE, 4)
    per_slice, per_patient = metrics_tables(
        data.images[..., 0].astype(np.uint8),
        data.masks,
        data.patient_id,
        data.slice_id,
        run_classes,
        CLASSES,
        run_id="r",
        split="val",
        spacing=SPACING,
        nsd_tolerance_mm=1.0,
    )
    assert counts.classes == list(per_slice["class"].iloc[: len(counts.classes)])
    assert counts.classes[-1] == "foreground" and len(counts.classes) == len(set(counts.classes))
    order = counts.slice_order()
    slice_voxels = [np.prod(SPACING[p]) for p in data.patient_id[order]]
    _assert_table_equal(counts.per_slice[order], per_slice, slice_voxels)
    assert list(counts.patients) == list(dict.fromkeys(per_patient["patient_id"]))
    _assert_table_equal(
        counts.per_patient, per_patient, [np.prod(SPACING[p]) for p in counts.patients]
    )
    # the empty patient: Dice undefined for every class; false positives only: Dice 0
    dice = dm.overlap_metrics(counts.per_patient)["dice"].cpu().numpy()
    assert np.isnan(dice[2]).all() and dice[3, -1] == 0.0
    for level, table in (("slice", per_slice), ("patient", per_patient)):
        for name in run_classes[-1:] + ["foreground"]:
            expected = table.loc[table["class"] == name, "f2"].to_numpy()
            np.testing.assert_array_equal(dm.table_values(counts, level, name, "f2"), expected)


@pytest.mark.parametrize("labels", ["merged", "separate", "per_class"])
def test_device_counts_of_real_models_equal_evaluate_model(labels, tmp_path):
    """The logits path: an untrained network of each label mode, batches of 3 slices."""
    data = read_split(write_toy_h5(tmp_path / "val.h5", ("a", "b", "c"), seed=4))
    run_classes = ["foreground"] if labels == "merged" else CLASSES
    torch.manual_seed(0)
    hp = complete({**HP, "labels": labels}, "train")
    model = build_model(hp, 1, len(run_classes) + 1).to(DEVICE).eval()
    counts = dm.split_counts(model, data, run_classes, DEVICE, batch_size=3)
    meta = {"classes": run_classes}
    per_slice, per_patient, _ = evaluate_model(model, meta, data, "r", "val", DEVICE, 1.0)
    voxel = np.prod(data.spacing_of("a"))  # the toy split's common spacing, 1 × 1 × 2 mm
    assert voxel == 2.0
    _assert_table_equal(
        counts.per_slice[counts.slice_order()], per_slice, np.full(len(data.images), voxel)
    )
    _assert_table_equal(counts.per_patient, per_patient, np.full(3, voxel))


def test_a_3d_model_gets_whole_volumes(tmp_path):
    """Batches of 6 slices are cut to whole volumes of 4 for a `VolumeSlices` model."""
    data = read_split(write_toy_h5(tmp_path / "val.h5", ("a", "b", "c"), seed=5))
    torch.manual_seed(0)
    model = VolumeSlices(nn.Conv3d(1, len(CLASSES) + 1, 3, padding=1), 4).to(DEVICE).eval()
    counts = dm.split_counts(model, data, CLASSES, DEVICE, batch_size=6)
    meta = {"classes": CLASSES}
    per_slice, per_patient, _ = evaluate_model(model, meta, data, "r", "val", DEVICE, 1.0)
    assert per_slice["fp"].sum() > 0 and per_slice["tp"].sum() > 0
    voxel = np.prod(data.spacing_of("a"))  # the toy split's common spacing, 1 × 1 × 2 mm
    assert voxel == 2.0
    _assert_table_equal(
        counts.per_slice[counts.slice_order()], per_slice, np.full(len(data.images), voxel)
    )
    _assert_table_equal(counts.per_patient, per_patient, np.full(3, voxel))


def test_class_selectors_are_the_mapping_of_metrics_tables():
    merged = dm.class_selectors(["foreground"], CLASSES)
    assert merged.names == ["foreground"]
    assert merged.labels.tolist() == [[False], [True]]
    assert merged.channels.tolist() == [[True, True, True]]
    subset = dm.class_selectors(["fibula", "femur"], CLASSES)
    assert subset.names == ["fibula", "femur", "foreground"]
    assert subset.labels.tolist() == [
        [False, False, False],
        [True, False, True],
        [False, True, True],
    ]
    assert subset.channels.tolist() == [
        [False, False, True],
        [True, False, False],
        [True, False, True],
    ]
    with pytest.raises(ValueError, match="patella"):
        dm.class_selectors(["patella"], CLASSES)


def test_overlap_metrics_follow_the_empty_conventions_of_metrics():
    """Both empty, false positives only, missed, no negatives, zero voxels, and ordinary."""
    counts = np.array(
        [[0, 0, 0, 10], [0, 3, 0, 7], [0, 0, 2, 8], [4, 0, 0, 0], [0, 0, 0, 0], [5, 1, 4, 3]]
    )
    ours = dm.overlap_metrics(torch.as_tensor(counts, dtype=torch.int64, device=DEVICE))
    theirs = overlap_metrics(*counts.T)
    for name in METRICS:
        np.testing.assert_array_equal(ours[name].cpu().numpy(), theirs[name], err_msg=name)


def test_logit_channels_must_match_the_run_classes():
    data = _random_case(3, 0)
    with pytest.raises(ValueError, match="3 output channels.*need 4"):
        dm.split_counts(LabelEcho(3), data, CLASSES, DEVICE)


def test_volumes_broadcast_one_voxel_size_per_row():
    counts = torch.tensor([[[2, 1, 3, 4]], [[0, 5, 0, 5]]], dtype=torch.int64, device=DEVICE)
    volumes = dm.volumes_ml(counts, torch.tensor([[2.0], [0.5]], dtype=torch.float64))
    np.testing.assert_allclose(volumes["volume_ref_ml"].cpu().numpy(), [[0.01], [0.0]])
    np.testing.assert_allclose(volumes["volume_pred_ml"].cpu().numpy(), [[0.006], [0.0025]])
    assert set(volumes) == {"volume_ref_ml", "volume_pred_ml"}
