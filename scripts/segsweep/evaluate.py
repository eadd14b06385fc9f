"""Per-slice and per-patient metrics of a run's selected checkpoint on one split, and optionally
the predictions as one NIfTI label map per patient on the grid of its cropped image.

Tables are in the long format of the workflow: one row per (slice or patient, class) with the
confusion counts and every metric of `segsweep.metrics`. Classes are those the run predicts plus
"foreground", the union of the run's classes, present for every run so that runs with merged and
separate labels compare on one class. Per-patient metrics come from the counts summed over the
patient's slices (a 3D metric), not from averaging slice metrics. Volumes (mL) use the grid's
voxel size; per-patient tables also carry HD95 and ASSD in mm (`segsweep.distances`, computed on
the patient's volume with its spacing). Space is "processed": the cropped, slice-harmonised grid
the network sees.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import SimpleITK as sitk
import torch
from torch import nn

from segsweep.devices import choose_device
from segsweep.distances import surface_distances
from segsweep.errors import InputError
from segsweep.export import export_native, native_tables
from segsweep.metrics import METRICS, confusion_counts, overlap_metrics, volumes_ml
from segsweep.predict import load_checkpoint, predict_labels
from segsweep.train import Split, read_split

COUNTS = ("tp", "fp", "fn", "tn")
VOLUMES = ("volume_ref_ml", "volume_pred_ml")
DISTANCES = ("hd95", "assd")


Spacing = tuple[float, float, float] | dict[str, tuple[float, float, float]]


def read_spacing(path: Path) -> Spacing:
    """Voxel spacing (x, y, z) in mm of a packed split: per patient when the file records it,
    else the common spacing (1 mm where unknown)."""
    with h5py.File(path, "r") as h5:
        per_subject = h5.attrs.get("subject_spacing")
        common = h5.attrs.get("spacing")
    if per_subject is not None:
        return {k: tuple(float(v) for v in s) for k, s in json.loads(per_subject).items()}
    if common is None:
        return (1.0, 1.0, 1.0)
    return tuple(1.0 if v is None else float(v) for v in json.loads(common))


def _spacing_of(spacing: Spacing, patient: str) -> tuple[float, float, float]:
    return spacing.get(patient, (1.0, 1.0, 1.0)) if isinstance(spacing, dict) else spacing


def class_mapping(
    classes_of_run: list[str], class_names_of_data: list[str]
) -> list[tuple[str, list[int], list[int]]]:
    """(class, predicted class indices, mask channels) for each class of the run and the
    foreground: what every evaluation (here and on the device, `segsweep.device_metrics`)
    compares with what."""
    all_channels = list(range(len(class_names_of_data)))
    if list(classes_of_run) == ["foreground"]:  # merged labels: one class, all data classes
        return [("foreground", [1], all_channels)]
    unknown = [c for c in classes_of_run if c not in class_names_of_data]
    if unknown:
        raise ValueError(f"run classes {unknown} are not in the data's {class_names_of_data}")
    channels = [class_names_of_data.index(c) for c in classes_of_run]
    pairs = [
        (name, [index], [channel])
        for index, (name, channel) in enumerate(zip(classes_of_run, channels, strict=True), 1)
    ]
    return [*pairs, ("foreground", list(range(1, len(channels) + 1)), channels)]


def _class_pairs(
    pred: np.ndarray, masks: np.ndarray, classes_of_run: list[str], class_names_of_data: list[str]
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(class, predicted mask, reference mask) for each class of the run and the foreground."""
    return [
        (name, np.isin(pred, labels), masks[..., channels].any(axis=-1))
        for name, labels, channels in class_mapping(classes_of_run, class_names_of_data)
    ]


def _with_metrics(table: pd.DataFrame, spacing: Spacing) -> pd.DataFrame:
    counts = [table[c].to_numpy() for c in COUNTS]
    voxel_mm3 = np.array([np.prod(_spacing_of(spacing, p)) for p in table["patient_id"]])
    metrics = overlap_metrics(*counts)
    return table.assign(
        **{name: metrics[name] for name in METRICS}, **volumes_ml(*counts[:3], voxel_mm3)
    )


def _patient_distances(
    pairs: list[tuple[str, np.ndarray, np.ndarray]],
    patient_id: np.ndarray,
    slice_id: np.ndarray,
    spacing: Spacing,
) -> pd.DataFrame:
    """HD95 and ASSD per (patient, class) on each patient's volume; absent slices are empty."""
    rows = []
    for patient in np.unique(patient_id):
        rows_of = np.flatnonzero(patient_id == patient)
        depth = int(slice_id[rows_of].max()) + 1
        for name, pred, ref in pairs:
            volumes = []
            for source in (pred, ref):
                volume = np.zeros((depth, *source.shape[1:]), dtype=bool)
                volume[slice_id[rows_of]] = source[rows_of]
                volumes.append(volume)
            rows.append(
                {
                    "patient_id": patient,
                    "class": name,
                    **surface_distances(*volumes, _spacing_of(spacing, patient)[::-1]),
                }
            )
    return pd.DataFrame(rows, columns=["patient_id", "class", *DISTANCES])


def metrics_tables(
    pred: np.ndarray,
    masks: np.ndarray,
    patient_id: np.ndarray,
    slice_id: np.ndarray,
    classes_of_run: list[str],
    class_names_of_data: list[str],
    *,
    run_id: str,
    split: str,
    spacing: Spacing = (1.0, 1.0, 1.0),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per_slice, per_patient) tables of class-index predictions [n, H, W] against one-hot
    masks [n, H, W, m], rows sorted by patient, slice, then class in the run's order.
    `spacing` is the grid's (x, y, z) voxel size in mm, or one per patient."""
    pairs = _class_pairs(pred, masks, list(classes_of_run), list(class_names_of_data))
    names = [name for name, _, _ in pairs]
    # counts [n, classes, 4]: per slice, per class, (tp, fp, fn, tn)
    counts = np.stack(
        [np.stack(confusion_counts(p, r, axis=(1, 2)), axis=-1) for _, p, r in pairs], axis=1
    )
    patient_id, slice_id = np.asarray(patient_id, dtype=str), np.asarray(slice_id)
    order = np.lexsort((slice_id, patient_id))
    counts = counts[order].reshape(-1, 4)
    per_slice = pd.DataFrame(
        {
            "run_id": run_id,
            "split": split,
            "space": "processed",
            "patient_id": np.repeat(patient_id[order], len(names)),
            "slice_id": np.repeat(slice_id[order], len(names)),
            "class": np.tile(names, len(order)),
            **{c: counts[:, i] for i, c in enumerate(COUNTS)},
        }
    )
    keys = ["run_id", "split", "space", "patient_id", "class"]
    per_patient = per_slice.groupby(keys, sort=False)[list(COUNTS)].sum().reset_index()
    distances = _patient_distances(pairs, patient_id, slice_id, spacing)
    per_patient = _with_metrics(per_patient, spacing).merge(
        distances, on=["patient_id", "class"], how="left", validate="one_to_one"
    )
    return _with_metrics(per_slice, spacing), per_patient


def evaluate_model(
    model: nn.Module,
    meta: dict,
    data: Split,
    run_id: str,
    split: str,
    device: torch.device,
    spacing: Spacing = (1.0, 1.0, 1.0),
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Tables of a loaded model on an in-memory split, and its class-index predictions."""
    pred = predict_labels(model, data.images, device)
    tables = metrics_tables(
        pred,
        data.masks,
        data.patient_id,
        data.slice_id,
        meta["classes"],
        data.classes,
        run_id=run_id,
        split=split,
        spacing=spacing,
    )
    return *tables, pred


def evaluate_checkpoint(
    checkpoint: Path, h5: Path, run_id: str, split: str, device: torch.device
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per_slice, per_patient) tables of one checkpoint on one HDF5 split."""
    model, meta = load_checkpoint(checkpoint, device)
    per_slice, per_patient, _ = evaluate_model(
        model, meta, read_split(h5), run_id, split, device, read_spacing(h5)
    )
    return per_slice, per_patient


def label_values(classes_of_run: list[str], labels: dict[str, int]) -> np.ndarray:
    """Lookup table class index → label value of the data (merged foreground → 1)."""
    if list(classes_of_run) == ["foreground"]:
        return np.array([0, 1], dtype=np.uint8)
    missing = [c for c in classes_of_run if c not in labels]
    if missing:
        raise ValueError(f"classes {missing} have no label value in {labels}")
    return np.array([0, *(labels[c] for c in classes_of_run)], dtype=np.uint8)


def export_predictions(
    pred: np.ndarray,
    data: Split,
    classes_of_run: list[str],
    labels: dict[str, int],
    crop_dir: Path,
    out_dir: Path,
) -> list[Path]:
    """One uint8 label map per patient, {out_dir}/{patient}.nii.gz, with the geometry of
    {crop_dir}/{patient}/image.nii.gz; slices absent from the split stay background."""
    lut = label_values(classes_of_run, labels)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for patient in np.unique(data.patient_id):
        grid_path = Path(crop_dir) / patient / "image.nii.gz"
        if not grid_path.is_file():
            raise InputError(patient, str(grid_path), "cropped image not found")
        grid = sitk.ReadImage(str(grid_path))
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
        path = out_dir / f"{patient}.nii.gz"
        sitk.WriteImage(image, str(path), useCompression=True)
        written.append(path)
    return written


def _processed_dice(per_patient: pd.DataFrame) -> pd.Series:
    """Foreground Dice per patient in the processed space (the grid the outlines are drawn on)."""
    rows = per_patient["class"] == "foreground"
    if "space" in per_patient:
        rows &= per_patient["space"] == "processed"
    return per_patient[rows].set_index("patient_id")["dice"]


def shown_patients(per_patient: pd.DataFrame, wanted: list[str]) -> list[tuple[str, str]]:
    """(tag, patient) to draw: "best", "median" and "worst" by per-patient foreground Dice
    (processed space, defined values), or patient ids as given; unknown ids are skipped and a
    patient chosen twice is drawn once ("best-median")."""
    dice = _processed_dice(per_patient)
    ranked = dice.dropna().sort_values(ascending=False, kind="stable")
    chosen: dict[str, list[str]] = {}  # patient → tags, so a patient is drawn once
    for tag in wanted:
        if tag in ("best", "median", "worst") and len(ranked):
            position = {"best": 0, "median": (len(ranked) - 1) // 2, "worst": len(ranked) - 1}[tag]
            chosen.setdefault(str(ranked.index[position]), []).append(tag)
        elif tag in dice.index:
            chosen.setdefault(tag, []).append("patient")
    return [("-".join(tags), patient) for patient, tags in chosen.items()]


def draw_outlines(
    pred: np.ndarray, data: Split, per_patient: pd.DataFrame, wanted: list[str], out_dir: Path
) -> list[Path]:
    """Twelve slices with reference and predicted outlines for each shown patient."""
    from segsweep.figures import slice_outlines

    dice = _processed_dice(per_patient)
    written = []
    for index, (tag, patient) in enumerate(shown_patients(per_patient, wanted), 1):
        rows = np.flatnonzero(data.patient_id == patient)
        rows = rows[np.argsort(data.slice_id[rows], kind="stable")]
        path = Path(out_dir) / f"outlines_{index}_{tag}_{patient}.png"
        title = f"{patient} ({tag}, Dice {dice[patient]:.3f})"
        image, reference = data.images[rows, ..., 0], data.masks[rows].any(axis=-1)
        slice_outlines(image, reference, pred[rows] > 0, path, title)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="segsweep evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", required=True, type=Path, help="results/runs/{run}")
    parser.add_argument("--selection", required=True, type=Path, help="selection.json")
    parser.add_argument("--data", required=True, type=Path, help="HDF5 split to evaluate on")
    parser.add_argument("--split", required=True, help="name of the split (val | test)")
    parser.add_argument("--out-dir", required=True, type=Path, help="for per_slice/per_patient")
    parser.add_argument("--predictions-dir", type=Path, help="export predictions here")
    parser.add_argument("--crop-dir", type=Path, help="results/crop (grids of the predictions)")
    parser.add_argument("--labels-json", help="label values of the data, e.g. '{\"femur\": 1}'")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--figures-dir", type=Path, help="draw outlines of shown patients here")
    parser.add_argument(
        "--native-dir",
        type=Path,
        help="also export predictions in original geometry and score "
        "them in native space (needs --predictions-dir and --data-dir)",
    )
    parser.add_argument("--data-dir", type=Path, help="results/data (ingest.json per subject)")
    parser.add_argument(
        "--patients", nargs="*", default=["best", "median", "worst"], help="best|median|worst|id"
    )
    args = parser.parse_args(argv)
    if args.predictions_dir and not (args.crop_dir and args.labels_json):
        parser.error("--predictions-dir needs --crop-dir and --labels-json")
    if args.native_dir and not (args.predictions_dir and args.data_dir):
        parser.error("--native-dir needs --predictions-dir and --data-dir")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = choose_device(args.device)
    selection = json.loads(args.selection.read_text())
    if selection.get("status") == "failed":  # header-only tables: the run is listed, not scored
        if args.predictions_dir:
            raise InputError(None, str(args.selection), "a failed run has nothing to predict")
        empty = np.zeros((0, 1, 1), dtype=np.int64)
        tables = metrics_tables(
            empty,
            empty[..., None],
            empty[:, 0, 0],
            empty[:, 0, 0],
            ["foreground"],
            [],
            run_id=args.run_dir.name,
            split=args.split,
        )
        args.out_dir.mkdir(parents=True, exist_ok=True)
        for name, table in zip(("per_slice", "per_patient"), tables, strict=True):
            table.to_csv(args.out_dir / f"{name}.csv", index=False)
        return
    selected = selection["selected"]
    model, meta = load_checkpoint(args.run_dir / "checkpoints" / selected["file"], device)
    data = read_split(args.data)
    per_slice, per_patient, pred = evaluate_model(
        model, meta, data, args.run_dir.name, args.split, device, read_spacing(args.data)
    )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if args.predictions_dir:
        labels = json.loads(args.labels_json)
        export_predictions(pred, data, meta["classes"], labels, args.crop_dir, args.predictions_dir)
        if args.native_dir:
            export_native(args.predictions_dir, args.crop_dir, args.data_dir, args.native_dir)
            native = native_tables(
                args.native_dir,
                args.data_dir,
                meta["classes"],
                labels,
                args.run_dir.name,
                args.split,
            )
            per_patient = pd.concat([per_patient, native], ignore_index=True)[per_patient.columns]
    per_slice.to_csv(args.out_dir / "per_slice.csv", index=False)
    per_patient.to_csv(args.out_dir / "per_patient.csv", index=False)
    if args.figures_dir:
        args.figures_dir.mkdir(parents=True, exist_ok=True)
        draw_outlines(pred, data, per_patient, args.patients, args.figures_dir)


if __name__ == "__main__":
    main()
