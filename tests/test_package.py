"""A model package built from a toy trained model, without the workflow: the workflow's files
of a few CT-like scans with a bright blob (ingest, N4, crop centre, crop, made here by the
stages' own functions as the workflow's rules call them), two fold runs trained briefly to
segment the blob, and `build_package` on them. The package's predictor, given a held-out
subject's raw scan, repeats the workflow's preprocessing and predicts exactly what it predicts
from that subject's crop files; its QC passes the held-out scan and flags noise, inverted
contrast and a blank scan; its manifest and README hold what deploy/manifest.py and the
package README promise; and `python -m segsweep package` on a results tree packages the
selected checkpoints' weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch
import yaml

from segsweep import layout
from segsweep.__main__ import main as segsweep_main
from segsweep.config_schema import complete
from segsweep.data.ingest import check_subject, ingest_image, ingest_mask
from segsweep.deploy import qc
from segsweep.deploy.archive import README, open_archive
from segsweep.deploy.onnx_export import readme_snippet
from segsweep.deploy.package import Records, build_package
from segsweep.deploy.predictor import Predictor, SubjectFiles
from segsweep.io.images import read_volume, write_image
from segsweep.io.records import write_json
from segsweep.model.checkpoints import selected_checkpoints
from segsweep.preprocess.crop import centre_record, crop_mask, crop_subject
from segsweep.preprocess.n4 import n4_correct
from segsweep.preprocess.normalise import compute_stats
from segsweep.preprocess.pack import pack_split
from segsweep.train.loop import train_run

CONFIGURATION = "toy"
RUNS = [f"{CONFIGURATION}_fold-0", f"{CONFIGURATION}_fold-1"]
LABELS = {"blob": 1}
CHANNELS = ["ct"]
CONFIG_HASH = "0123abcd"
# the config's preprocess section as a user writes it (the rest from the schema's defaults)
PREPROCESS = {
    "n4": {"shrink": 2, "iterations": [4, 4]},
    "crop": {"centre": "foreground", "window_mm": 28.0, "size": 24, "slices": 8},
}
SETTINGS = {
    "labels": LABELS,
    "channels": CHANNELS,
    "n4": complete(PREPROCESS["n4"], "preprocess", "n4"),
    "crop": complete(PREPROCESS["crop"], "preprocess", "crop"),
}
HP = {
    **{"model": "unet2d", "depth": 2, "base_channels": 4, "labels": "merged", "loss": "dice"},
    **{"lr": 0.01, "batch_size": 4, "epochs": 6, "checkpoint_every": 6},
}
# subject → (blob centre offset (rows, columns) in voxels, blob radius in voxels, gain)
TRAIN = {"t0": ((0, 0), 10.0, 1.0), "t1": ((2, -3), 11.0, 1.15)}
VALIDATION = {"v0": ((-2, 2), 9.5, 1.05), "v1": ((1, 3), 10.5, 0.95), "v2": ((-1, -2), 11.5, 1.1)}
HELD_OUT = {"h0": ((2, -5), 10.0, 1.05)}  # off-centre: a flipped map misses it
# raw scans: [z, y, x] voxels, spacing (x, y, z) mm, and axes x → R, y → I, z → A ("RIA": the
# canonical LIP flips x and z), so the label map must be taken back to it
SHAPE = (16, 36, 40)
SPACING = (0.8, 0.8, 2.0)
ORIGIN = (12.0, -7.5, 30.0)
DIRECTION = (-1.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, -1.0, 0.0)


def _under(results: Path, pattern: str, **wildcards: str) -> Path:
    return layout.under(results, pattern, **wildcards)


def _on_grid(array: np.ndarray, pixel: type) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(pixel))
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    image.SetDirection(DIRECTION)
    return image


def _scan(seed: int, offset: tuple[int, int], radius: float, gain: float) -> tuple[np.ndarray, ...]:
    """A raw CT-like scan (HU times `gain`, a mild gradient) with a bright cylinder along z
    and its mask, [z, y, x]."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(SHAPE)
    centre = (SHAPE[1] / 2 + offset[0], SHAPE[2] / 2 + offset[1])
    blob = (y - centre[0]) ** 2 + (x - centre[1]) ** 2 < radius**2
    array = gain * (np.where(blob, 120.0, -400.0) + rng.normal(0, 40, SHAPE) + 2.0 * x)
    return array.astype(np.float32), blob.astype(np.uint8)


def _raw(root: Path, subject: str, array: np.ndarray, mask: np.ndarray | None = None) -> Path:
    """The raw scan (and its mask beside it) as NIfTI files in {root}/raw/{subject}."""
    folder = root / "raw" / subject
    folder.mkdir(parents=True)
    sitk.WriteImage(_on_grid(array, np.float32), str(folder / "image.nii.gz"))
    if mask is not None:
        sitk.WriteImage(_on_grid(mask, np.uint8), str(folder / "mask.nii.gz"))
    return folder / "image.nii.gz"


def _workflow_subject(results: Path, subject: str, image: Path, mask: Path) -> None:
    """The workflow's files of one labelled subject, as its rules write them: ingest
    (ingest.json with the scan's original geometry, the canonical image and mask), n4, the
    crop centre (from the N4 image), the crop and crop.json, and the cropped mask."""
    record = check_subject(subject, image, LABELS, mask_path=mask)
    write_json(_under(results, layout.INGEST_RECORD, subject=subject), record)
    ingest_image(subject, image, _under(results, layout.DATA_IMAGE, subject=subject))
    ingest_mask(subject, image, mask, _under(results, layout.DATA_MASK, subject=subject), LABELS)
    # rule n4 (segsweep.preprocess.n4.main)
    n4 = SETTINGS["n4"]
    ingested = read_volume(_under(results, layout.DATA_IMAGE, subject=subject))
    ingested = sitk.Cast(ingested, sitk.sitkFloat32)
    corrected, _ = n4_correct(
        ingested, int(n4["shrink"]), n4["iterations"], float(n4["convergence"]), n4["mask"]
    )
    write_image(corrected, _under(results, layout.N4_IMAGE, subject=subject))
    # rules crop_centre and crop_image (segsweep.preprocess.crop.main centre / image)
    crop = SETTINGS["crop"]
    source = read_volume(_under(results, layout.N4_IMAGE, subject=subject))
    labelled = read_volume(_under(results, layout.DATA_MASK, subject=subject))
    centre = centre_record(source, crop, labelled, LABELS)
    write_json(_under(results, layout.CROP_CENTRE, subject=subject), centre)
    source = read_volume(_under(results, layout.N4_IMAGE, subject=subject))
    cropped, info = crop_subject(
        source, tuple(centre["centre_mm"]), crop["window_mm"], crop["size"], crop["slices"]
    )
    info["centre_method"] = centre["centre_method"]
    info["window"] = "config"
    write_image(cropped, _under(results, layout.CROP_IMAGE, subject=subject))
    write_json(_under(results, layout.CROP_RECORD, subject=subject), info)
    # rule crop_mask
    cropped_mask, _ = crop_mask(labelled, info, LABELS)
    write_image(cropped_mask, _under(results, layout.CROP_MASK, subject=subject))


def _files(results: Path, subjects: list[str]) -> SubjectFiles:
    return SubjectFiles(
        {s: _under(results, layout.CROP_IMAGE, subject=s) for s in subjects},
        {s: _under(results, layout.CROP_RECORD, subject=s) for s in subjects},
        {s: _under(results, layout.INGEST_RECORD, subject=s) for s in subjects},
    )


def _trained_run(results: Path, run: str, seed: int, val: list[str]) -> None:
    """A fold run trained briefly on the training split (so that it segments the blob), its
    selection (the last checkpoint) and its validation table (`val`'s patients)."""
    split = _under(results, layout.DATASET, split="train")
    run_dir = _under(results, layout.RUN_DIR, run=run)
    train_run({**HP, "seed": seed}, split, split, run_dir, device="cpu", threads=1)
    last = json.loads(_under(results, layout.RUN_INDEX, run=run).read_text())["checkpoints"][-1]
    write_json(_under(results, layout.SELECTION, run=run), {"selected": last})
    write_json(_under(results, layout.RUN_PROVENANCE, run=run), {"config_hash": CONFIG_HASH})
    table = _under(results, layout.VAL_PER_PATIENT, run=run)
    table.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"patient_id": val, "dice": 0.9}).to_csv(table, index=False)


class Toy:
    """The results tree, the raw scans and the package built from them."""

    def __init__(self, root: Path) -> None:
        self.root, self.results = root, root / "results"
        self.subjects = {**TRAIN, **VALIDATION, **HELD_OUT}
        self.raw, self.masks = {}, {}
        for seed, (subject, (offset, radius, gain)) in enumerate(self.subjects.items()):
            array, mask = _scan(seed, offset, radius, gain)
            self.raw[subject] = _raw(root, subject, array, mask)
            self.masks[subject] = mask
            _workflow_subject(
                self.results, subject, self.raw[subject], self.raw[subject].with_name("mask.nii.gz")
            )
        self.files = _files(self.results, list(self.subjects))
        train, val = list(TRAIN), list(VALIDATION)
        self.stats = compute_stats([self.files.crops[s] for s in train], "zscore", None, CHANNELS)
        self.stats["subjects"] = train
        write_json(_under(self.results, layout.NORMALISATION), self.stats)
        masks = {s: _under(self.results, layout.CROP_MASK, subject=s) for s in self.subjects}
        for split, subjects in (("train", train), ("val", val)):
            out = _under(self.results, layout.DATASET, split=split)
            pack_split(subjects, self.files.crops, masks, self.stats, LABELS, out)
        _trained_run(self.results, RUNS[0], 0, val[:2])
        _trained_run(self.results, RUNS[1], 1, val[2:])
        self.runs = {
            run: (
                _under(self.results, layout.SELECTION, run=run),
                _under(self.results, layout.RUN_INDEX, run=run),
            )
            for run in RUNS
        }
        self.val_tables = [_under(self.results, layout.VAL_PER_PATIENT, run=r) for r in RUNS]
        self.package = root / "package" / f"{CONFIGURATION}.zip"
        self.manifest = build_package(
            self.package,
            CONFIGURATION,
            self.runs,
            self.val_tables,
            SETTINGS,
            self.stats,
            None,
            [_under(self.results, layout.DATASET, split=split) for split in ("train", "val")],
            Records(self.files.crop_records, self.files.ingest_records),
            CONFIG_HASH,
        )


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Toy:
    return Toy(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="module")
def predictor(toy: Toy) -> Predictor:
    return Predictor.load(toy.package, "cpu")


def _array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


def _grid(image: sitk.Image) -> tuple:
    return image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def _json(value: Any) -> Any:
    """`value` as a JSON file holds it (tuples as lists), to compare records."""
    return json.loads(json.dumps(value))


def test_a_raw_scan_is_predicted_as_its_workflow_crop_files_are(toy: Toy, predictor: Predictor):
    raw = predictor.read([toy.raw["h0"]], "h0")
    assert _grid(raw)[3] == pytest.approx(DIRECTION)  # not canonical: the map is reoriented back
    from_raw = predictor.prepare(raw)
    from_files = toy.files.prepared("h0")
    np.testing.assert_array_equal(_array(from_raw.cropped), _array(from_files.cropped))
    assert _grid(from_raw.cropped) == _grid(from_files.cropped)
    recorded = {k: v for k, v in from_files.crop.items() if k != "window"}  # the rule's alone
    assert _json(from_raw.crop) == recorded
    assert _json(from_raw.original) == from_files.original

    predicted = predictor.predict(raw)
    expected = predictor.predict_prepared(from_files)
    np.testing.assert_array_equal(_array(predicted.labels), _array(expected.labels))
    np.testing.assert_array_equal(_array(predicted.uncertainty), _array(expected.uncertainty))
    np.testing.assert_array_equal(predicted.classes, expected.classes)
    assert predicted.qc == expected.qc
    for image in (predicted.labels, predicted.uncertainty):
        assert _grid(image) == _grid(raw)
    # the networks segment the blob where it lies in the raw scan
    labels = _array(predicted.labels)
    assert set(np.unique(labels)) == {0, 1}
    blob = toy.masks["h0"].astype(bool)
    dice = 2 * np.count_nonzero(blob & (labels == 1)) / (blob.sum() + np.count_nonzero(labels))
    assert dice > 0.7, f"Dice {dice:.3f} of the held-out blob"
    uncertainty = _array(predicted.uncertainty)
    assert 0.0 <= uncertainty.min() and uncertainty.max() <= 1.0 and uncertainty.max() > 0.0


def _like(raw: sitk.Image, array: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.CopyInformation(raw)
    return image


def test_qc_passes_the_held_out_scan_and_flags_scans_unlike_the_training_data(
    toy: Toy, predictor: Predictor
):
    raw = predictor.read([toy.raw["h0"]], "h0")
    array = _array(raw).astype(np.float64)
    rng = np.random.default_rng(7)
    scans = {
        "held-out": raw,
        "uniform noise": _like(raw, rng.uniform(array.min(), array.max(), array.shape)),
        "gaussian noise": _like(raw, rng.normal(array.mean(), array.std(), array.shape)),
        "inverted": _like(raw, array.max() - array),
        "constant": _like(raw, np.full(array.shape, np.median(array))),
    }
    rows = {name: predictor.predict(scan).qc for name, scan in scans.items()}
    shown = f"calibration {toy.manifest['qc']['calibration']}\n{pd.DataFrame(rows).T}"
    assert rows["held-out"]["flag"] is False and rows["held-out"]["reason"] == "", shown
    for name in ("uniform noise", "gaussian noise", "inverted"):
        assert rows[name]["flag"] is True, f"{name} not flagged\n{shown}"
        assert "intensity_distance" in rows[name]["reason"], f"{name}\n{shown}"
    assert rows["constant"]["flag"] is True and rows["constant"]["reason"], shown
    calibration = predictor.manifest["qc"]["calibration"]
    for row in rows.values():  # each reason is the calibration's verdict on the row's measures
        assert (row["flag"], row["reason"]) == qc.flag(row, calibration)


def test_qc_is_calibrated_on_the_validation_patients_by_the_packaged_networks(
    toy: Toy, predictor: Predictor
):
    manifest = open_archive(toy.package).manifest
    calibration = manifest["qc"]["calibration"]
    validation = manifest["qc"]["validation"]
    assert [row["case"] for row in validation] == sorted(VALIDATION)
    for row in validation:  # the loaded package measures each patient (from its crop file)
        measured = predictor.predict_prepared(toy.files.prepared(row["case"])).qc
        assert {k: measured[k] for k in row if k != "case"} == pytest.approx(  # as packaging did
            {k: v for k, v in row.items() if k != "case"},
            rel=1e-6,  # from its packed slices
        )
    assert calibration == qc.calibrate(pd.DataFrame(validation))
    assert calibration["patients"] == len(VALIDATION)
    for measure, sides in qc.SIDES.items():  # three patients that differ: fences on each side
        fences = calibration["thresholds"][measure]
        values = [row[measure] for row in validation]
        assert max(values) > min(values), measure
        assert all(fences[side] is not None for side in sides), (measure, fences)
    reference = manifest["qc"]["reference"]
    assert reference["subjects"] == len(TRAIN)
    assert np.asarray(reference["quantiles"]).shape == (1, qc.QUANTILES)


def test_the_manifest_and_readme_hold_what_a_user_needs(toy: Toy):
    archive = open_archive(toy.package)
    manifest = archive.manifest
    keys = {"format", "segsweep_version", "task", "configuration", "runs", "config_hash"}
    keys |= {"classes", "labels", "label_values", "channels", "normalisation", "n4", "crop"}
    keys |= {"target_grid", "networks", "ensemble", "metrics", "qc"}
    assert keys <= set(manifest), keys - set(manifest)
    assert manifest["task"] == "segmentation"
    assert (manifest["configuration"], manifest["runs"]) == (CONFIGURATION, RUNS)
    assert manifest["config_hash"] == CONFIG_HASH
    assert (manifest["classes"], manifest["labels"], manifest["label_values"]) == (
        ["foreground"],  # labels: merged
        LABELS,
        [0, 1],
    )
    assert manifest["channels"] == CHANNELS
    assert manifest["normalisation"] == _json(toy.stats)
    assert manifest["n4"] == SETTINGS["n4"]
    crop = {k: manifest["crop"][k] for k in ("centre", "window_mm", "size", "slices", "window")}
    assert crop == {"centre": "foreground", "window_mm": 28.0, "size": 24, "slices": 8} | {
        "window": "config"
    }
    assert manifest["target_grid"]["size"] == [24, 24, 8]
    assert manifest["ensemble"]["rule"] == "mean"
    assert {"dice", "iou"} <= set(manifest["metrics"])
    assert {"reference", "calibration", "validation"} <= set(manifest["qc"])
    assert len(manifest["networks"]) == len(RUNS)
    for fold, (network, run) in enumerate(zip(manifest["networks"], RUNS, strict=True)):
        assert network["run_id"] == run
        assert network["weights"] == f"weights/fold-{fold}.safetensors"
        assert network["onnx"]["file"] == f"onnx/fold-{fold}.onnx"
        assert network["onnx"]["input_shape"] == [None, 1, 24, 24]
        assert archive.read(network["onnx"]["file"])  # listed and present

    readme = archive.read(README).decode()
    calibration = manifest["qc"]["calibration"]
    assert f"# segsweep model package: {CONFIGURATION}" in readme
    assert calibration["rule"] in readme and "nothing is segmented" in readme
    for measure, fences in calibration["thresholds"].items():
        for side, value in fences.items():
            if value is not None:
                assert f"{measure} {side} {value:.4g}" in readme
    assert readme_snippet() in readme


def test_segsweep_package_on_a_results_tree_packages_the_selected_checkpoints(toy: Toy):
    results = toy.results
    write_json(_under(results, layout.DATA_DESCRIPTION), {"labels": LABELS, "channels": CHANNELS})
    config = toy.root / "config.yaml"
    config.write_text(yaml.safe_dump({"preprocess": PREPROCESS}))
    out = toy.root / "cli" / f"{CONFIGURATION}.zip"
    segsweep_main(
        ["package", "--run", CONFIGURATION, "--results", str(results), "--config", str(config)]
        + ["--out", str(out), "--device", "cpu"]
    )
    archive = open_archive(out)
    checkpoints = selected_checkpoints(*map(list, zip(*toy.runs.values(), strict=True)))
    assert [c.parent.parent.name for c in checkpoints] == RUNS
    for fold, checkpoint in enumerate(checkpoints):
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
        packaged = archive.weights(fold)
        assert set(packaged) == set(state)
        for key, tensor in state.items():
            assert torch.equal(packaged[key], tensor), key
    # the settings it read from the config and dataset.json are those the package was built with
    assert archive.manifest == _json(toy.manifest)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_the_package_predicts_on_cuda_as_on_the_cpu(toy: Toy, predictor: Predictor):
    """The device is chosen at run time: the same scan on CUDA gets the CPU's labels (up to
    voxels where two classes tie within float error) and nearly its uncertainty."""
    raw = predictor.read([toy.raw["h0"]], "h0")
    on_cpu = predictor.predict(raw)
    on_cuda = Predictor.load(toy.package, "cuda").predict(raw)
    assert (_array(on_cuda.labels) == _array(on_cpu.labels)).mean() > 0.999
    np.testing.assert_allclose(_array(on_cuda.uncertainty), _array(on_cpu.uncertainty), atol=1e-4)
    assert on_cuda.qc["flag"] == on_cpu.qc["flag"]
