"""Checkpoint selection on validation, metric tables and the export of predictions."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch
from test_train import CLASSES, HP, write_toy_h5

from segsweep.errors import ConfigError, InputError
from segsweep.evaluate import predict, select, tables
from segsweep.evaluate.distances import surface_distances
from segsweep.evaluate.select import (
    LEVELS,
    aggregate_score,
    best_entry,
    best_fold,
    score_checkpoints,
)
from segsweep.evaluate.tables import DISTANCES, evaluate_model, metrics_tables
from segsweep.io.splits import read_split
from segsweep.labels import label_values
from segsweep.metrics import METRICS, confusion_counts, overlap_metrics
from segsweep.model.checkpoints import load_checkpoint
from segsweep.train.loop import train_run

COLUMNS = ["run_id", "split", "space", "patient_id", "class", "tp", "fp", "fn", "tn", *METRICS]
VOLUMES = ["volume_ref_ml", "volume_pred_ml"]
SLICE_COLUMNS = [*COLUMNS[:4], "slice_id", *COLUMNS[4:], *VOLUMES]
COLUMNS = [*COLUMNS, *VOLUMES, *DISTANCES]
CPU = torch.device("cpu")
ONE_MM = {"p": (1.0, 1.0, 1.0), "q": (1.0, 1.0, 1.0)}  # the toy patients' spacing
TAU = 1.0  # the NSD's tolerance (mm)


def index_of(run_dir):
    return run_dir / "checkpoints" / "index.json"


def checkpoint_tables(checkpoint, h5, run_id, split):
    """(per_slice, per_patient) of one checkpoint on one split, through the numpy tables."""
    model, meta = load_checkpoint(checkpoint, CPU)
    per_slice, per_patient, _ = evaluate_model(model, meta, read_split(h5), run_id, split, CPU, TAU)
    return per_slice, per_patient


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 3-epoch run with separate labels, checkpoints every epoch, and its val.h5."""
    root = tmp_path_factory.mktemp("select")
    train_h5 = write_toy_h5(root / "train.h5", ("a", "b", "c"), seed=1)
    val_h5 = write_toy_h5(root / "val.h5", ("d", "e"), seed=2)
    hp = {**HP, "labels": "separate", "epochs": 3, "lr": 0.02}
    train_run(hp, train_h5, val_h5, root / "runs" / "sep", device=CPU, threads=1)
    return root / "runs" / "sep", val_h5


def _toy_case():
    """Two patients, 2 slices of 2x3 pixels, classes femur/tibia/fibula."""
    masks = np.zeros((4, 2, 3, 3), np.uint8)
    masks[0, 0, :2, 0] = 1  # femur
    masks[0, 1, :, 1] = 1  # tibia
    masks[1, 0, 2, 2] = 1  # fibula
    masks[2, :, 0, 0] = 1
    masks[3, 1, 1, 1] = 1
    pred = np.array(
        [
            [[1, 0, 0], [2, 2, 2]],
            [[0, 1, 3], [0, 0, 0]],
            [[0, 0, 0], [0, 0, 0]],
            [[0, 0, 0], [0, 2, 0]],
        ],
        np.uint8,
    )
    patient = np.array(["q", "p", "q", "p"])
    slice_id = np.array([3, 1, 1, 0])
    return pred, masks, patient, slice_id


def test_metrics_tables_separate_run_agree_with_direct_counts():
    pred, masks, patient, slice_id = _toy_case()
    per_slice, per_patient = metrics_tables(
        pred,
        masks,
        patient,
        slice_id,
        CLASSES,
        CLASSES,
        run_id="r",
        split="val",
        spacing=ONE_MM,
        nsd_tolerance_mm=TAU,
    )
    assert list(per_slice.columns) == SLICE_COLUMNS
    assert list(per_patient.columns) == COLUMNS
    assert set(per_slice[["run_id", "split", "space"]].itertuples(index=False)) == {
        ("r", "val", "processed")
    }
    # sorted by patient then slice, classes in the run's order then foreground
    assert per_slice[["patient_id", "slice_id"]].drop_duplicates().values.tolist() == [
        ["p", 0],
        ["p", 1],
        ["q", 1],
        ["q", 3],
    ]
    assert per_slice["class"].tolist()[:4] == [*CLASSES, "foreground"]
    assert len(per_slice) == 16 and len(per_patient) == 8
    refs = {c: masks[..., i] > 0 for i, c in enumerate(CLASSES)} | {"foreground": masks.any(-1)}
    preds = {c: pred == i + 1 for i, c in enumerate(CLASSES)} | {"foreground": pred > 0}
    for row in per_slice.to_dict("records"):
        i = np.flatnonzero((patient == row["patient_id"]) & (slice_id == row["slice_id"]))[0]
        counts = confusion_counts(preds[row["class"]][i], refs[row["class"]][i])
        assert (row["tp"], row["fp"], row["fn"], row["tn"]) == tuple(counts)
        expected = overlap_metrics(*counts)
        for name in METRICS:
            np.testing.assert_equal(row[name], expected[name])
    for row in per_patient.to_dict("records"):
        rows = patient == row["patient_id"]
        counts = confusion_counts(preds[row["class"]][rows], refs[row["class"]][rows])
        assert (row["tp"], row["fp"], row["fn"], row["tn"]) == tuple(counts)
        for name in METRICS:
            np.testing.assert_equal(row[name], overlap_metrics(*counts)[name])
        assert row["volume_ref_ml"] == pytest.approx((counts[0] + counts[2]) / 1000)
        depth = slice_id[rows].max() + 1
        volumes = [np.zeros((depth, *pred.shape[1:]), bool) for _ in range(2)]
        volumes[0][slice_id[rows]] = preds[row["class"]][rows]
        volumes[1][slice_id[rows]] = refs[row["class"]][rows]
        expected = surface_distances(*volumes, (1.0, 1.0, 1.0), TAU)
        for name in DISTANCES:
            np.testing.assert_equal(row[name], expected[name])
    # fibula: q has none in reference or prediction → NaN dice; p has it predicted exactly
    fibula = per_patient[per_patient["class"] == "fibula"].set_index("patient_id")
    assert math.isnan(fibula.loc["q", "dice"]) and fibula.loc["p", "dice"] == 1.0


def test_metrics_tables_merged_run_has_only_foreground():
    pred, masks, patient, slice_id = _toy_case()
    merged = (pred > 0).astype(np.uint8)
    per_slice, per_patient = metrics_tables(
        merged,
        masks,
        patient,
        slice_id,
        ["foreground"],
        CLASSES,
        run_id="m",
        split="test",
        spacing=ONE_MM,
        nsd_tolerance_mm=TAU,
    )
    assert set(per_slice["class"]) == set(per_patient["class"]) == {"foreground"}
    p = per_patient.set_index("patient_id")
    rows = patient == "q"
    expected = confusion_counts(pred[rows] > 0, masks[rows].any(-1))
    assert tuple(p.loc["q", ["tp", "fp", "fn", "tn"]]) == tuple(expected)
    assert per_slice["tp"].sum() == per_patient["tp"].sum() == np.sum((pred > 0) & masks.any(-1))


def test_metrics_tables_reject_unknown_run_classes():
    pred, masks, patient, slice_id = _toy_case()
    with pytest.raises(ValueError, match="patella"):
        metrics_tables(
            pred,
            masks,
            patient,
            slice_id,
            ["patella"],
            CLASSES,
            run_id="",
            split="",
            spacing=ONE_MM,
            nsd_tolerance_mm=TAU,
        )


def test_best_entry_argmax_ties_and_nan():
    scores = [
        {"file": "a", "score": math.nan},
        {"file": "b", "score": 0.5},
        {"file": "c", "score": 0.7},
        {"file": "d", "score": 0.7},
        {"file": "e", "score": 0.2},
    ]
    assert best_entry(scores, True)["file"] == "c"
    assert best_entry(scores, False)["file"] == "e"
    assert best_entry([{"file": "x", "score": math.nan}] * 2, True)["file"] == "x"


def test_best_fold_ties_to_the_earliest_and_a_missing_score_loses():
    def fold(score):
        return {"selected": {"score": score}}

    folds = {"f0": fold(None), "f1": fold(0.5), "f2": fold(0.7), "f3": fold(0.7), "f4": fold(0)}
    assert best_fold(folds, True) == "f2"
    assert best_fold(folds, False) == "f4"
    assert best_fold({"f0": fold(None), "f1": {"selected": None}}, True) == "f0"


def test_selection_scores_every_checkpoint_and_picks_the_best(run):
    run_dir, val_h5 = run
    cfg = {"metric": "dice", "aggregate": "median", "level": "slice", "class": "tibia"}
    selection = score_checkpoints(index_of(run_dir), val_h5, cfg, CPU)
    assert {k: selection[k] for k in ("metric", "aggregate", "level", "class")} == cfg
    assert selection["higher_is_better"] is True
    assert [s["file"] for s in selection["scores"]] == [f"epoch-000{e}.pt" for e in (1, 2, 3)]
    assert [s["step"] for s in selection["scores"]] == [3, 6, 9]
    for entry in selection["scores"]:
        per_slice, _ = checkpoint_tables(
            run_dir / "checkpoints" / entry["file"], val_h5, "sep", "val"
        )
        values = per_slice.loc[per_slice["class"] == "tibia", "dice"]
        assert entry["score"] == pytest.approx(np.nanmedian(values), abs=1e-12)
    best = max(selection["scores"], key=lambda s: s["score"])
    assert selection["selected"] == best
    lowest = score_checkpoints(index_of(run_dir), val_h5, {**cfg, "higher_is_better": False}, CPU)
    assert lowest["selected"] == min(selection["scores"], key=lambda s: s["score"])


@pytest.fixture(scope="module", params=["separate", "merged", "per_class"])
def run_of_each_mode(request, run, tmp_path_factory):
    """The separate run above, and 3-epoch merged and per-class runs on the same data."""
    if request.param == "separate":
        return run
    run_dir, val_h5 = run
    hp = {**HP, "labels": request.param, "epochs": 3, "lr": 0.02}
    out = run_dir.parent / request.param
    train_run(hp, val_h5.parent / "train.h5", val_h5, out, device=CPU, threads=1)
    return out, val_h5


def _numpy_selections(run_dir, val_h5, cfgs):
    """selection.json per config as computed before device scoring: numpy tables of every
    checkpoint (evaluate_model), then the same aggregate and choice."""
    index = json.loads((run_dir / "checkpoints" / "index.json").read_text())
    data = read_split(val_h5)
    found = []
    for entry in index["checkpoints"]:
        model, meta = load_checkpoint(run_dir / "checkpoints" / entry["file"], CPU)
        per_slice, per_patient, _ = evaluate_model(model, meta, data, "r", "val", CPU, TAU)
        found.append((entry, {"slice": per_slice, "patient": per_patient}))
    selections = []
    for cfg in cfgs:
        cfg = select.selection_config(cfg)
        scores = []
        for entry, by_level in found:
            table = by_level[cfg["level"]]
            values = table.loc[table["class"] == cfg["class"], cfg["metric"]].to_numpy()
            score = aggregate_score(values, cfg["aggregate"])
            scores.append({**{k: entry[k] for k in ("file", "epoch", "step")}, "score": score})
        selected = best_entry(scores, cfg["higher_is_better"])
        selections.append(
            {
                **cfg,
                "scores": [select._json_score(s) for s in scores],
                "selected": select._json_score(selected),
            }
        )
    return selections


def test_device_selection_equals_the_numpy_tables_path(run_of_each_mode):
    run_dir, val_h5 = run_of_each_mode
    classes = json.loads((run_dir / "checkpoints" / "index.json").read_text())["classes"]
    classes = list(dict.fromkeys([*classes, "foreground"]))
    cfgs = [
        {
            "metric": metric,
            "level": level,
            "aggregate": aggregate,
            "class": classes[i % 4 % len(classes)],
        }
        for i, (metric, level, aggregate) in enumerate(
            itertools.product(METRICS, LEVELS, ("mean", "median"))
        )
    ]
    cfgs.append({"metric": "dice", "higher_is_better": False})
    # the NSD, from the label maps on the CPU: the per-patient tables' column
    cfgs += [{"metric": "nsd", "aggregate": "mean", "class": name} for name in classes]
    for cfg, expected in zip(cfgs, _numpy_selections(run_dir, val_h5, cfgs), strict=True):
        selection = score_checkpoints(index_of(run_dir), val_h5, cfg, CPU, nsd_tolerance_mm=TAU)
        assert json.dumps(selection) == json.dumps(expected), cfg


def test_scoring_builds_no_label_maps_or_numpy_tables(run, monkeypatch):
    """Selection counts on the device: the CPU path of the evaluation tables is never taken."""

    def forbidden(*args, **kwargs):
        raise AssertionError("selection used the CPU tables path")

    monkeypatch.setattr(predict, "predict_labels", forbidden)
    for name in ("predict_labels", "metrics_tables", "evaluate_model"):
        monkeypatch.setattr(tables, name, forbidden)
    run_dir, val_h5 = run
    selection = score_checkpoints(index_of(run_dir), val_h5, {"level": "slice"}, CPU)
    assert len(selection["scores"]) == 3


def test_select_main_writes_selection_json(run, tmp_path):
    run_dir, val_h5 = run
    out = tmp_path / "selection.json"
    argv = ["--run-dir", str(run_dir), "--val", str(val_h5), "--out", str(out)]
    select.main([*argv, "--config-json", json.dumps({"level": "patient"}), "--device", "cpu"])
    selection = json.loads(out.read_text())
    assert selection["level"] == "patient" and selection["class"] == "foreground"
    assert len(selection["scores"]) == 3 and selection["selected"] in selection["scores"]


def test_selection_config_is_checked(run):
    run_dir, val_h5 = run
    with pytest.raises(ConfigError, match="selection.aggregate"):
        score_checkpoints(index_of(run_dir), val_h5, {"aggregate": "max"}, CPU)
    with pytest.raises(ConfigError, match="selection.class.*patella"):
        score_checkpoints(index_of(run_dir), val_h5, {"class": "patella"}, CPU)
    with pytest.raises(ConfigError, match="'selection.metric'.*'nsd'.*at level slice"):
        select.selection_config({"metric": "nsd", "level": "slice"})
    with pytest.raises(ValueError, match="metrics.nsd_tolerance_mm"):
        score_checkpoints(index_of(run_dir), val_h5, {"metric": "nsd"}, CPU)


def test_select_main_selects_on_the_nsd_at_the_tolerance_given(run, tmp_path):
    run_dir, val_h5 = run
    out = tmp_path / "selection.json"
    cfg = {"metric": "nsd", "class": "tibia"}
    argv = ["--run-dir", str(run_dir), "--val", str(val_h5), "--out", str(out)]
    select.main([*argv, "--config-json", json.dumps(cfg), "--nsd-tolerance-mm", "2.5"])
    expected = score_checkpoints(index_of(run_dir), val_h5, cfg, CPU, nsd_tolerance_mm=2.5)
    assert json.loads(out.read_text()) == json.loads(json.dumps(expected))
    assert expected["metric"] == "nsd" and expected["level"] == "patient"


def _crop_images(crop_dir, patients, n_slices=4, size=16):
    """Cropped-image grids with non-trivial geometry, as results/crop/{patient}/image.nii.gz."""
    for i, patient in enumerate(patients):
        image = sitk.Image([size, size, n_slices], sitk.sitkFloat32)
        image.SetSpacing((0.5 + i, 0.7, 2.5))
        image.SetOrigin((10.0, -3.0 * i, 7.5))
        image.SetDirection((1, 0, 0, 0, 0, 1, 0, -1, 0))  # LIP
        (crop_dir / patient).mkdir(parents=True)
        sitk.WriteImage(image, str(crop_dir / patient / "image.nii.gz"))


def test_evaluate_main_writes_tables_and_predictions_on_the_crop_grid(run, tmp_path):
    run_dir, val_h5 = run
    selection = tmp_path / "selection.json"
    selection.write_text(json.dumps({"selected": {"file": "epoch-0002.pt", "epoch": 2}}))
    crop_dir, pred_dir, out_dir = tmp_path / "crop", tmp_path / "pred", tmp_path / "test"
    _crop_images(crop_dir, ["d", "e"])
    labels = {"femur": 1, "tibia": 5, "fibula": 7}
    tables.main(
        ["--run-dir", str(run_dir), "--selection", str(selection), "--data", str(val_h5)]
        + ["--split", "test", "--out-dir", str(out_dir), "--predictions-dir", str(pred_dir)]
        + ["--crop-dir", str(crop_dir), "--labels-json", json.dumps(labels), "--device", "cpu"]
    )
    per_slice = pd.read_csv(out_dir / "per_slice.csv")
    per_patient = pd.read_csv(out_dir / "per_patient.csv")
    assert list(per_patient.columns) == COLUMNS and "slice_id" in per_slice.columns
    assert set(per_patient["run_id"]) == {"sep"} and set(per_patient["split"]) == {"test"}
    expected, _ = checkpoint_tables(
        run_dir / "checkpoints" / "epoch-0002.pt", val_h5, "sep", "test"
    )
    pd.testing.assert_frame_equal(per_slice, expected, check_dtype=False)

    for patient in ("d", "e"):
        grid = sitk.ReadImage(str(crop_dir / patient / "image.nii.gz"))
        exported = sitk.ReadImage(str(pred_dir / f"{patient}.nii.gz"))
        assert exported.GetSize() == grid.GetSize()
        np.testing.assert_allclose(exported.GetSpacing(), grid.GetSpacing())
        np.testing.assert_allclose(exported.GetOrigin(), grid.GetOrigin())
        np.testing.assert_allclose(exported.GetDirection(), grid.GetDirection())
        volume = sitk.GetArrayFromImage(exported)
        assert volume.dtype == np.uint8 and set(np.unique(volume)) <= {0, 1, 5, 7}
        # label values back to per-class counts: exported tibia voxels = predicted tibia (tp+fp)
        tibia = per_slice[(per_slice["patient_id"] == patient) & (per_slice["class"] == "tibia")]
        assert (volume == 5).sum() == (tibia["tp"] + tibia["fp"]).sum()

    # a crop that is not what the split holds (another slice count) is one clear error
    longer = tmp_path / "longer"
    _crop_images(longer, ["d", "e"], n_slices=5)
    with pytest.raises(InputError, match="subject d: .*its split holds slices \\[0, 1, 2, 3\\]"):
        tables.main(
            ["--run-dir", str(run_dir), "--selection", str(selection), "--data", str(val_h5)]
            + ["--split", "test", "--out-dir", str(out_dir), "--predictions-dir", str(pred_dir)]
            + ["--crop-dir", str(longer), "--labels-json", json.dumps(labels), "--device", "cpu"]
        )


def test_label_values_of_runs():
    labels = {"femur": 1, "tibia": 2, "fibula": 3}
    assert label_values(["foreground"], labels).tolist() == [0, 1]
    assert label_values(["tibia", "femur"], labels).tolist() == [0, 2, 1]
    with pytest.raises(ValueError, match="patella"):
        label_values(["patella"], labels)
