"""Per-slice and per-patient metrics of a run's selected checkpoint on one split, and for a final
model its predictions as label maps, their native-space scores and outline figures.

Tables are in the long format of the workflow: one row per (slice or patient, class) with the
confusion counts and every metric of `segsweep.metrics`. Classes (`segsweep.labels`) are those
the run predicts plus "foreground", the union of the run's classes, present for every run so that
runs with merged and separate labels compare on one class. Per-patient metrics come from the
counts summed over the patient's slices (a 3D metric), not from averaging slice metrics. Volumes
(mL) use the grid's voxel size; per-patient tables also carry HD95 and ASSD in mm and the NSD
at the config's `metrics.nsd_tolerance_mm` (`segsweep.evaluate.distances`, computed on the
patient's volume with the spacing the split records: an unknown spacing is an error, never
1 mm). Space is "processed": the cropped, slice-harmonised grid the network sees.

A split is evaluated one patient at a time (`segsweep.evaluate.chunks`): every metric is per
slice or per patient, so the patients' tables, concatenated in sorted patient order, are the
tables of the whole split, and each patient's prediction is exported as soon as it is made. A
split that does not fit the run's memory budget (a split can be larger than memory) is thus
streamed from its file, holding one patient at a time, with the same tables and predictions as
when it is resident. Native-space scores read the exported files back one subject at a time; the
outline figures predict their few shown patients again, as no patient's predictions are kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from segsweep import layout
from segsweep.cli import (
    add_nsd_tolerance_option,
    add_run_options,
    add_split_options,
    checkpoint_index,
    split_subjects,
)
from segsweep.deploy import qc
from segsweep.deploy.predictor import (
    Prediction,
    Predictor,
    Prepared,
    SubjectFiles,
    packed_volume,
)
from segsweep.devices import choose_device
from segsweep.errors import InputError
from segsweep.evaluate.chunks import SplitChunks
from segsweep.evaluate.distances import patient_volume, surface_distances
from segsweep.evaluate.export import native_tables
from segsweep.evaluate.outlines import draw_outlines_of
from segsweep.evaluate.predict import predict_labels
from segsweep.evaluate.select import best_fold
from segsweep.io.images import read_volume, write_image
from segsweep.io.records import read_json, write_csv, write_json
from segsweep.io.splits import Spacing, Split
from segsweep.io.stream import list_patients
from segsweep.labels import FOREGROUND, class_mapping
from segsweep.metrics import METRICS, confusion_counts, overlap_metrics, volumes_ml
from segsweep.model.checkpoints import load_models, selected_checkpoints

COUNTS = ("tp", "fp", "fn", "tn")
DISTANCES = ("hd95", "assd", "nsd")


def _spacing_of(spacing: Mapping[str, Spacing], patient: str) -> Spacing:
    """A patient's (x, y, z) voxel spacing in mm; unknown spacing is an error, never 1 mm."""
    if patient not in spacing:
        raise InputError(patient, None, "no voxel spacing known: metrics in mm need it")
    return spacing[patient]


def _class_pairs(
    pred: np.ndarray, masks: np.ndarray, classes_of_run: list[str], class_names_of_data: list[str]
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(class, predicted mask, reference mask) for each class of the run and the foreground."""
    return [
        (name, np.isin(pred, labels), masks[..., channels].any(axis=-1))
        for name, labels, channels in class_mapping(classes_of_run, class_names_of_data)
    ]


def _with_metrics(table: pd.DataFrame, spacing: Mapping[str, Spacing]) -> pd.DataFrame:
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
    spacing: Mapping[str, Spacing],
    nsd_tolerance_mm: float,
) -> pd.DataFrame:
    """HD95, ASSD and NSD (at `nsd_tolerance_mm`) per (patient, class) on each patient's
    volume; absent slices are empty."""
    rows = []
    for patient in np.unique(patient_id):
        rows_of = np.flatnonzero(patient_id == patient)
        zyx = _spacing_of(spacing, patient)[::-1]
        for name, pred, ref in pairs:
            volumes = [patient_volume(source[rows_of], slice_id[rows_of]) for source in (pred, ref)]
            rows.append(
                {
                    "patient_id": patient,
                    "class": name,
                    **surface_distances(*volumes, zyx, nsd_tolerance_mm),
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
    spacing: Mapping[str, Spacing],
    nsd_tolerance_mm: float,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per_slice, per_patient) tables of class-index predictions [n, H, W] against one-hot
    masks [n, H, W, m], rows sorted by patient, slice, then class in the run's order.
    `spacing` maps each patient to its grid's (x, y, z) voxel size in mm (an unknown spacing is
    an error), `nsd_tolerance_mm` is the NSD's τ; no slices give the tables' header only."""
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
    distances = _patient_distances(pairs, patient_id, slice_id, spacing, nsd_tolerance_mm)
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
    nsd_tolerance_mm: float,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Tables of a loaded model on an in-memory split (`evaluate_split`: one patient's slices),
    with the NSD at `nsd_tolerance_mm`, and its class-index predictions."""
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
        spacing=data.spacing,
        nsd_tolerance_mm=nsd_tolerance_mm,
    )
    return *tables, pred


@dataclass(frozen=True)
class FinalExport:
    """What scoring a final model on the test set adds to its tables: its predictions made by
    the one inference path of `segsweep predict` (`predictor`: the model's package; None: one
    made of the checkpoints, without QC) on the cropped grid (`grids`: patient → cropped
    image), in original geometry (undoing what `crop_records` and `ingest_records` record) with
    native-space scores, the QC of each patient (`qc_csv`), and outlines."""

    labels: dict[str, int]
    grids: Mapping[str, str | Path]
    crop_records: Mapping[str, str | Path]
    ingest_records: Mapping[str, str | Path]
    predictions_dir: Path
    native_dir: Path | None = None
    figures_dir: Path | None = None
    patients: tuple[str, ...] = ("best", "median", "worst")
    predictor: Predictor | None = None
    qc_csv: Path | None = None

    def prepared(self, patient: str) -> Prepared:
        """The patient's crop, crop record and original geometry, as the predictor takes them
        (the crop alone when nothing is exported in original geometry)."""
        if self.native_dir is None:
            if patient not in self.grids:
                raise InputError(patient, None, "no cropped image given for its predictions")
            return Prepared(read_volume(self.grids[patient], patient))
        return SubjectFiles(self.grids, self.crop_records, self.ingest_records).prepared(patient)


def failed_tables(
    run_id: str, split: str, nsd_tolerance_mm: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Header-only tables of a run whose training failed: it is listed, not scored."""
    empty = np.zeros((0, 1, 1), dtype=np.int64)
    return metrics_tables(
        empty,
        empty[..., None],
        empty[:, 0, 0],
        empty[:, 0, 0],
        [FOREGROUND],
        [],
        run_id=run_id,
        split=split,
        spacing={},
        nsd_tolerance_mm=nsd_tolerance_mm,
    )


def evaluate_split(
    checkpoints: list[Path] | None,
    data_h5: Path | list[Path],
    split: str,
    run_id: str,
    per_slice_csv: Path,
    per_patient_csv: Path,
    device: torch.device,
    final: FinalExport | None = None,
    subjects: list[str] | None = None,
    *,
    nsd_tolerance_mm: float,
) -> None:
    """Write the per-slice and per-patient tables of a model on one split (or on its
    `subjects` among the split files of `data_h5`): one checkpoint's, or the ensemble of
    several (a configuration's folds); header-only tables for a failed run (`checkpoints`
    None). For a final model, also what `final` asks for. NSD at `nsd_tolerance_mm`."""
    if checkpoints is None:
        if final is not None:
            raise InputError(run_id, None, "a failed run has nothing to predict")
        per_slice, per_patient = failed_tables(run_id, split, nsd_tolerance_mm)
    elif final is not None:
        per_slice, per_patient = _final_tables(
            checkpoints, data_h5, subjects, run_id, split, final, device, nsd_tolerance_mm
        )
    else:
        model, meta = load_models(checkpoints, device)
        slices, patients = [], []
        for data in SplitChunks(data_h5, subjects, meta["hp"]):  # one patient at a time, sorted
            per_slice, per_patient, _ = evaluate_model(
                model, meta, data, run_id, split, device, nsd_tolerance_mm
            )
            slices.append(per_slice)
            patients.append(per_patient)
        per_slice, per_patient = _joined(slices), _joined(patients)
    write_csv(per_slice, per_slice_csv)
    write_csv(per_patient, per_patient_csv)


def _final_tables(
    checkpoints: list[Path],
    data_h5: Path | list[Path],
    subjects: list[str] | None,
    run_id: str,
    split: str,
    final: FinalExport,
    device: torch.device,
    nsd_tolerance_mm: float,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A final model's tables from the predictions of `final.predictor` (the predictor of
    `segsweep predict`) on each patient's packed slices, which it exports on the cropped grid
    and in original geometry as it goes, with the patients' QC and the native-space rows."""
    predictor = final.predictor or Predictor.of_checkpoints(checkpoints, final.labels, device)
    classes = predictor.manifest["classes"]
    chunks = SplitChunks(data_h5, subjects, predictor.hp)
    for folder in (final.predictions_dir, final.native_dir):
        if folder is not None:
            Path(folder).mkdir(parents=True, exist_ok=True)

    def predicted(data: Split) -> Prediction:
        patient = str(data.patient_id[0])
        prepared = final.prepared(patient)
        volume = packed_volume(data, prepared, final.grids[patient])
        return predictor.predict_slices(volume, prepared)

    slices, patients, native, rows = [], [], [], []
    for data in chunks:  # one patient at a time, sorted
        patient = str(data.patient_id[0])
        prediction = predicted(data)
        per_slice, per_patient = metrics_tables(
            prediction.classes[data.slice_id],
            data.masks,
            data.patient_id,
            data.slice_id,
            classes,
            data.classes,
            run_id=run_id,
            split=split,
            spacing=data.spacing,
            nsd_tolerance_mm=nsd_tolerance_mm,
        )
        slices.append(per_slice)
        patients.append(per_patient)
        write_image(prediction.cropped_labels, Path(final.predictions_dir) / f"{patient}.nii.gz")
        if final.native_dir is not None:
            native.append(Path(final.native_dir) / f"{patient}.nii.gz")
            write_image(prediction.labels, native[-1])
        rows.append({"case": patient, **prediction.qc})
    per_slice, per_patient = _joined(slices), _joined(patients)
    if native:
        rows_native = native_tables(
            native, final.ingest_records, classes, final.labels, run_id, split, nsd_tolerance_mm
        )
        per_patient = pd.concat([per_patient, rows_native], ignore_index=True)[per_patient.columns]
    if final.qc_csv is not None:
        write_csv(pd.DataFrame(rows, columns=qc.columns(classes)), final.qc_csv)
    if final.figures_dir is not None:
        Path(final.figures_dir).mkdir(parents=True, exist_ok=True)

        def slices_of(patient: str) -> tuple[np.ndarray, Split]:
            data = chunks.of(patient)
            return predicted(data).classes[data.slice_id], data

        draw_outlines_of(slices_of, per_patient, list(final.patients), final.figures_dir)
    return per_slice, per_patient


def evaluate_final(
    model_id: str,
    runs: Mapping[str, tuple[Path, Path]],
    test_h5: Path,
    tables: tuple[Path, Path],
    best_fold_tables: tuple[Path, Path] | None,
    models_json: Path,
    higher_is_better: bool,
    reported: str,
    device: torch.device,
    final: FinalExport,
    nsd_tolerance_mm: float,
) -> None:
    """A final model on the test set: its configuration's run, or with folds the ensemble of
    its fold runs (`runs`: run id → (selection.json, index.json), in fold order), whose tables
    (`tables`: per_slice, per_patient), predictions and outlines `final` asks for; with
    `best_fold_tables`, also its best fold alone (the fold run with the best validation
    score), scored in both spaces like the ensemble (its predictions are not kept: the exported
    ones are the ensemble's). models.json records which runs make up the model, its best fold
    and which of the two `reported` (final.model: ensemble | best_fold) names the final
    result. The NSD's tolerance is `nsd_tolerance_mm`."""
    selections = {run: read_json(selection) for run, (selection, _) in runs.items()}
    checkpoints = selected_checkpoints([s for s, _ in runs.values()], [i for _, i in runs.values()])
    if checkpoints is None:
        raise InputError(model_id, None, "a final model with a failed run")
    best = best_fold(selections, higher_is_better)
    evaluate_split(
        checkpoints,
        test_h5,
        "test",
        model_id,
        *tables,
        device,
        final,
        nsd_tolerance_mm=nsd_tolerance_mm,
    )
    if best_fold_tables is not None:
        fold = list(runs).index(best)
        best_checkpoint = checkpoints[fold]
        with tempfile.TemporaryDirectory() as scratch:  # scored like the ensemble, not exported
            alone = dataclasses.replace(
                final,
                predictions_dir=Path(scratch) / "predictions",
                predictor=None if final.predictor is None else final.predictor.only(fold),
                qc_csv=None,
                native_dir=None if final.native_dir is None else Path(scratch) / "native",
                figures_dir=None,
            )
            evaluate_split(
                [best_checkpoint],
                test_h5,
                "test",
                model_id,
                *best_fold_tables,
                device,
                alone,
                nsd_tolerance_mm=nsd_tolerance_mm,
            )
    kind = reported if len(runs) > 1 else "single"
    write_json(
        models_json, {"model": model_id, "runs": list(runs), "best_fold": best, "reported": kind}
    )


def _joined(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The patients' tables as one, in their order (sorted, the row order of one table)."""
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="segsweep evaluate", description=__doc__.split("\n")[0])
    add_run_options(parser)
    parser.add_argument("--run-id", help="the run (default: the name of its folder)")
    parser.add_argument("--selection", required=True, type=Path, help="selection.json")
    add_split_options(parser, "--data", "HDF5 split to evaluate on")
    parser.add_argument("--split", required=True, help="name of the split (val | test)")
    parser.add_argument("--per-slice", type=Path, help="per_slice.csv")
    parser.add_argument("--per-patient", type=Path, help="per_patient.csv")
    parser.add_argument("--out-dir", type=Path, help="for per_slice.csv and per_patient.csv")
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
    add_nsd_tolerance_option(parser)
    args = parser.parse_args(argv)
    if args.predictions_dir and not (args.crop_dir and args.labels_json):
        parser.error("--predictions-dir needs --crop-dir and --labels-json")
    if args.native_dir and not (args.predictions_dir and args.data_dir):
        parser.error("--native-dir needs --predictions-dir and --data-dir")
    if not (args.out_dir or (args.per_slice and args.per_patient)):
        parser.error("give --out-dir, or --per-slice and --per-patient")
    if args.threads:
        torch.set_num_threads(args.threads)
    index = checkpoint_index(args)
    subjects = split_subjects(args, args.split)
    run_id = args.run_id or Path(index).parent.parent.name
    out = {
        name: given or layout.under(args.out_dir, pattern, base=layout.VAL_DIR)
        for name, given, pattern in (
            ("slice", args.per_slice, layout.VAL_PER_SLICE),
            ("patient", args.per_patient, layout.VAL_PER_PATIENT),
        )
    }
    final = None
    if args.predictions_dir:
        patients = sorted({entry.patient for entry in list_patients(args.data, subjects)})

        def files(folder: Path | None, pattern: str, base: str) -> dict[str, Path]:
            if folder is None:
                return {}
            return {p: layout.under(folder, pattern, base=base, subject=p) for p in patients}

        final = FinalExport(
            labels=json.loads(args.labels_json),
            grids=files(args.crop_dir, layout.CROP_IMAGE, layout.CROP_DIR),
            crop_records=files(args.crop_dir, layout.CROP_RECORD, layout.CROP_DIR),
            ingest_records=files(args.data_dir, layout.INGEST_RECORD, layout.DATA_DIR),
            predictions_dir=args.predictions_dir,
            native_dir=args.native_dir,
            figures_dir=args.figures_dir,
            patients=tuple(args.patients),
        )
    evaluate_split(
        selected_checkpoints([args.selection], [index]),
        args.data,
        args.split,
        run_id,
        out["slice"],
        out["patient"],
        choose_device(args.device),
        final,
        subjects,
        nsd_tolerance_mm=args.nsd_tolerance_mm,
    )


if __name__ == "__main__":
    main()
