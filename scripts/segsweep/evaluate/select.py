"""Score every checkpoint of a run on validation and select the best one.

The score is `aggregate` (mean | median, ignoring NaN — e.g. slices where reference and
prediction are both empty) of `metric` for `class` over the rows of `level` (patient | slice) of
the validation tables, as the PET/CT thesis's `find_best_model` did. The best score by
`higher_is_better` wins; ties go to the earliest checkpoint, and a NaN score (nothing to measure)
never beats a number. Every score is recorded in selection.json, so the choice can be checked.

Scoring runs on the model's device (`segsweep.evaluate.counts`): one pass per checkpoint over
batches of the split, keeping only per-slice confusion counts there, so scores equal those of
the evaluation tables without copying label maps back or building per-class masks on the CPU.
The overlap metrics are all computable from counts. One boundary metric is a selection metric
too, the normalised surface Dice (`nsd`, at `metrics.nsd_tolerance_mm`): it needs each
patient's whole predicted volume and distance transforms (SciPy, CPU), so for it the label maps
come back and each patient's NSD is computed as the evaluation tables compute it
(`segsweep.evaluate.distances`), at the patient level only. HD95 and ASSD stay in the evaluation
tables (`segsweep.evaluate.tables`).

Scoring goes one patient at a time (`segsweep.evaluate.chunks`): the score's values are per
slice or per patient, concatenated in the tables' order. A validation split that fits the run's
memory budget is read once for all checkpoints; one that does not (a split can be larger than
memory) is streamed from its file, read anew for each checkpoint, with the same scores and choice.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segsweep.cli import (
    add_nsd_tolerance_option,
    add_run_options,
    add_split_options,
    checkpoint_index,
    split_subjects,
)
from segsweep.config_schema import complete, defaults
from segsweep.devices import choose_device
from segsweep.errors import ConfigError, InputError
from segsweep.evaluate.chunks import SplitChunks
from segsweep.evaluate.counts import split_counts, table_values
from segsweep.evaluate.distances import normalised_surface_dice, patient_volume
from segsweep.evaluate.predict import predict_labels
from segsweep.io.records import read_json, write_json
from segsweep.io.splits import Split
from segsweep.labels import FOREGROUND, class_mapping
from segsweep.metrics import METRICS
from segsweep.model.checkpoints import load_checkpoint

AGGREGATES = {"mean": np.nanmean, "median": np.nanmedian}
LEVELS = ("patient", "slice")
NSD = "nsd"  # the boundary metric, of a patient's volume: patient level only


def selection_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The selection section with defaults filled in, checked."""
    cfg = complete(cfg, "selection")
    allowed = {"metric": (*METRICS, NSD), "aggregate": tuple(AGGREGATES), "level": LEVELS}
    for key, values in allowed.items():
        if cfg[key] not in values:
            raise ConfigError(f"selection.{key}", cfg[key], " | ".join(values))
    if cfg["metric"] == NSD and cfg["level"] != "patient":
        why = "the NSD is a patient's 3D boundary metric: use level patient"
        raise ConfigError("selection.metric", NSD, f"{' | '.join(METRICS)} at level slice ({why})")
    known = defaults("selection")
    unknown = sorted(set(cfg) - set(known))
    if unknown:
        raise ConfigError("selection", unknown, "keys " + ", ".join(known))
    return cfg


def aggregate_score(values: np.ndarray, aggregate: str) -> float:
    """NaN-ignoring mean or median; NaN (not a warning) when every value is NaN."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(AGGREGATES[aggregate](values)) if values.size else math.nan


def best_entry(scores: list[dict[str, Any]], higher_is_better: bool) -> dict[str, Any]:
    """The entry with the best score; ties → earliest; NaN loses to any number."""
    sign = 1.0 if higher_is_better else -1.0
    best = scores[0]
    for entry in scores[1:]:
        if not math.isnan(entry["score"]) and (
            math.isnan(best["score"]) or sign * entry["score"] > sign * best["score"]
        ):
            best = entry
    return best


def best_fold(selections: dict[str, dict[str, Any]], higher_is_better: bool) -> str:
    """The run (a configuration's fold) whose selected checkpoint scored best on validation,
    from the runs' selection.json contents in fold order: ties → the earliest fold; a run
    without a score loses to any number."""
    scores = []
    for run, selection in selections.items():
        value = (selection["selected"] or {}).get("score")
        scores.append({"run": run, "score": math.nan if value is None else float(value)})
    return best_entry(scores, higher_is_better)["run"]


def _json_score(entry: dict[str, Any]) -> dict[str, Any]:
    """NaN is not JSON: write a missing score as null."""
    return {**entry, "score": None if math.isnan(entry["score"]) else entry["score"]}


def patient_nsd(
    model: torch.nn.Module,
    data: Split,
    classes_of_run: list[str],
    class_name: str,
    device: torch.device,
    tolerance_mm: float,
) -> np.ndarray:
    """NSD at `tolerance_mm` of `class_name` per patient of `data` (sorted: the per-patient
    tables' order) from the model's label maps, as the evaluation tables compute it."""
    pred = predict_labels(model, data.images, device)
    ((labels, channels),) = [
        (labels, channels)
        for name, labels, channels in class_mapping(classes_of_run, data.classes)
        if name == class_name
    ]
    pred_mask, ref_mask = np.isin(pred, labels), data.masks[..., channels].any(axis=-1)
    patients, slice_id = np.asarray(data.patient_id, dtype=str), np.asarray(data.slice_id)
    values = []
    for patient in np.unique(patients):
        rows = np.flatnonzero(patients == patient)
        volumes = [patient_volume(mask[rows], slice_id[rows]) for mask in (pred_mask, ref_mask)]
        zyx = data.spacing_of(patient)[::-1]
        values.append(normalised_surface_dice(*volumes, zyx, tolerance_mm))
    return np.array(values, dtype=np.float64)


def score_checkpoints(
    index_path: Path,
    val: Path | list[Path],
    selection_cfg: dict[str, Any],
    device: torch.device,
    subjects: list[str] | None = None,
    nsd_tolerance_mm: float | None = None,
) -> dict[str, Any]:
    """Scores of all checkpoints listed in a run's checkpoint index (the checkpoints lie beside
    it) and the selected one, as written to selection.json (NaN scores as null), on the
    validation split `val`, or on the run's validation `subjects` among the files of `val`;
    `nsd_tolerance_mm` (mm) is needed only to select on the NSD."""
    cfg = selection_config(selection_cfg)
    if cfg["metric"] == NSD and nsd_tolerance_mm is None:
        raise ValueError("selection on the NSD needs its tolerance (metrics.nsd_tolerance_mm)")
    index_path = Path(index_path)
    if not index_path.is_file():
        raise InputError(None, str(index_path), "checkpoint index not found (training unfinished?)")
    index = read_json(index_path)
    if index.get("status") == "failed":  # recorded by train's last attempt: nothing to score
        return {**cfg, "status": "failed", "error": index["error"], "scores": [], "selected": None}
    if not index["checkpoints"]:
        raise InputError(None, str(index_path), "no checkpoints listed")
    if cfg["class"] not in [*index["classes"], FOREGROUND]:
        raise ConfigError(
            "selection.class",
            cfg["class"],
            "a class of the run: foreground, " + ", ".join(index["classes"]),
        )
    chunks, scores = None, []
    for entry in index["checkpoints"]:
        model, meta = load_checkpoint(index_path.parent / entry["file"], device)
        if chunks is None:  # the run's memory budget decides: resident (read once) or streamed
            chunks = SplitChunks(val, subjects, meta["hp"])
        values = np.concatenate(
            [
                patient_nsd(model, data, meta["classes"], cfg["class"], device, nsd_tolerance_mm)
                if cfg["metric"] == NSD
                else table_values(
                    split_counts(model, data, meta["classes"], device),
                    cfg["level"],
                    cfg["class"],
                    cfg["metric"],
                )
                for data in chunks
            ]
        )
        score = aggregate_score(values, cfg["aggregate"])
        scores.append({**{k: entry[k] for k in ("file", "epoch", "step")}, "score": score})
        print(f"{entry['file']}: {cfg['metric']} {score:.4f}", flush=True)
    selected = best_entry(scores, cfg["higher_is_better"])
    if math.isnan(selected["score"]):
        print("warning: every score is NaN; selected the earliest checkpoint", file=sys.stderr)
    return {
        **cfg,
        "scores": [_json_score(s) for s in scores],
        "selected": _json_score(selected),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="segsweep select", description=__doc__.split("\n")[0])
    add_run_options(parser)
    add_split_options(parser, "--val", "val.h5")
    parser.add_argument("--config-json", default="{}", help="the `selection` config section")
    parser.add_argument("--out", required=True, type=Path, help="selection.json")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    add_nsd_tolerance_option(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    subjects = split_subjects(args, "val")
    selection = score_checkpoints(
        checkpoint_index(args),
        args.val,
        json.loads(args.config_json),
        choose_device(args.device),
        subjects,
        args.nsd_tolerance_mm,
    )
    write_json(args.out, selection)


if __name__ == "__main__":
    main()
