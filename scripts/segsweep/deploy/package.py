"""`segsweep package`: a final model as one self-contained zip (`segsweep.deploy.archive`) from
a finished workflow's files — its fold networks' selected checkpoints and the settings,
statistics and crop plan of the manifest (`segsweep.deploy.manifest`) — with its QC calibration
made here: the package's own predictor (`segsweep.deploy.predictor`) runs on each fold's
validation patients (their packed slices, as the workflow's split files hold them), and
`segsweep.deploy.qc.calibrate` sets the thresholds from their measures; the intensity reference
is the training subjects' packed slices (those the normalisation statistics come from). It reads
no test patient.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

from segsweep import layout
from segsweep.config_schema import complete
from segsweep.deploy import qc
from segsweep.deploy.archive import write_package
from segsweep.deploy.manifest import segmentation_manifest
from segsweep.deploy.onnx_export import readme_snippet
from segsweep.deploy.predictor import Predictor, Prepared, packed_volume
from segsweep.devices import choose_device
from segsweep.errors import InputError
from segsweep.io.records import read_json
from segsweep.io.splits import Split, read_subjects
from segsweep.model.checkpoints import model_from, selected_checkpoints
from segsweep.preprocess.crop_plan import AUTO, resolve_centre
from segsweep.preprocess.normalise import output_channels


@dataclass(frozen=True)
class Records:
    """The crop.json and ingest.json of each subject (subject → path): with a patient's packed
    slices, what the predictor needs to take its maps back to its original geometry."""

    crops: Mapping[str, str | Path]
    ingests: Mapping[str, str | Path]

    def prepared(self, subject: str) -> Prepared:
        if subject not in self.crops or subject not in self.ingests:
            raise InputError(subject, None, "no crop.json or ingest.json given for it")
        crop, ingest = read_json(self.crops[subject]), read_json(self.ingests[subject])
        return Prepared.of_records(crop, ingest["original"])


def intensity_reference(datasets: list[str | Path], subjects: list[str]) -> dict:
    """Quantiles and SD, per channel, of the training subjects' normalised slices as packing
    wrote them (`datasets`: the split files that hold them)."""
    images = read_subjects(datasets, subjects).images
    voxels = images.reshape(-1, images.shape[-1])
    return {
        "quantiles": qc.intensity_quantiles(voxels).tolist(),
        "std": voxels.std(axis=0).tolist(),
        "subjects": len(subjects),
    }


def validation_patients(val_tables: list[str | Path]) -> list[str]:
    """The patients the fold runs validated on (each fold's out-of-fold patients), sorted."""
    ids = set()
    for path in val_tables:
        ids |= set(pd.read_csv(path, dtype={"patient_id": str})["patient_id"])
    return sorted(ids)


def _rows_of(split: Split, patient: str) -> Split:
    """The patient's rows of a split."""
    rows = split.patient_id == patient
    return replace(
        split,
        images=split.images[rows],
        masks=split.masks[rows],
        patient_id=split.patient_id[rows],
        slice_id=split.slice_id[rows],
    )


def build_package(
    out: str | Path,
    configuration: str,
    runs: Mapping[str, tuple[str | Path, str | Path]],
    val_tables: list[str | Path],
    settings: Mapping[str, Any],
    stats: dict[str, Any],
    plan: dict[str, Any] | None,
    datasets: list[str | Path],
    records: Records,
    config_hash: str | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Write the package of a final model (`runs`: fold run → (selection.json, index.json), in
    fold order; `val_tables`: their validation per-patient tables) and return its manifest. The
    training and validation patients' slices come from the split files (`datasets`: train.h5
    and val.h5, which hold them with or without folds), so packaging reads no test patient."""
    paths = selected_checkpoints([s for s, _ in runs.values()], [i for _, i in runs.values()])
    if paths is None:
        raise InputError(configuration, None, "a final model with a failed run")
    loaded = {
        run: torch.load(path, map_location="cpu", weights_only=True)
        for run, path in zip(runs, paths, strict=True)
    }
    metas = {run: {k: v for k, v in c.items() if k != "model"} for run, c in loaded.items()}
    manifest = segmentation_manifest(configuration, metas, settings, stats, plan, config_hash)
    manifest["qc"] = {"reference": intensity_reference(datasets, stats["subjects"])}
    networks = [model_from(metas[run], loaded[run]["model"], device) for run in loaded]
    predictor = Predictor(manifest, networks, torch.device(device))
    patients = validation_patients(val_tables)
    packed = read_subjects(datasets, patients)
    rows = []
    for subject in patients:
        prepared = records.prepared(subject)
        volume = packed_volume(_rows_of(packed, subject), prepared, packed.path)
        rows.append({"case": subject, **predictor.predict_slices(volume, prepared).qc})
    manifest["qc"]["calibration"] = qc.calibrate(pd.DataFrame(rows))
    manifest["qc"]["validation"] = rows
    size, channels = manifest["crop"]["size"], output_channels(stats)
    write_package(
        out,
        manifest,
        [
            (
                model_from(metas[run], loaded[run]["model"], "cpu"),
                torch.zeros(int(metas[run].get("volume_slices") or 2), channels, size, size),
            )
            for run in loaded
        ],
        [loaded[run]["model"] for run in loaded],
        package_readme,
    )
    return manifest


def package_readme(manifest: dict[str, Any]) -> str:
    """The package's own README: what it holds and how to run it, with or without segsweep."""
    calibration = manifest["qc"]["calibration"]
    crop = manifest["crop"]
    return "\n".join(
        [
            f"# segsweep model package: {manifest['configuration']}",
            "",
            f"Segmentation of {', '.join(manifest['classes'])} (label values "
            f"{manifest['label_values'][1:]}) from {len(manifest['channels'])} input "
            f"channel(s) ({', '.join(manifest['channels'])}), by {len(manifest['networks'])} "
            f"fold network(s): {manifest['ensemble']['text']}. Made by segsweep "
            f"{manifest['segsweep_version']} (package format {manifest['format']}, config hash "
            f"{manifest['config_hash']}).",
            "",
            "## Predict with segsweep",
            "",
            "    pip install segsweep",
            "    segsweep predict --model THIS.zip --input scans/ --output predictions/",
            "",
            "Inputs: NIfTI, MHA/MHD or DICOM series folders, a folder of them, or a manifest "
            "CSV; several channels as CASE_0000, CASE_0001 files. Each scan is reoriented to "
            f"{manifest['target_grid']['orientation']}, N4-corrected as in training, cropped to "
            f"a {crop['window_mm']:g} mm window around its {crop['centre']} centre "
            f"({crop['size']} x {crop['size']} pixels, {crop['slices']} slices), normalised "
            f"with the training statistics ({manifest['normalisation']['method']}); the label "
            "map comes back in the scan's own geometry, with an uncertainty map and qc.csv.",
            "",
            "## Quality control",
            "",
            f"qc.csv flags a case by {calibration['rule']} ({calibration['patients']} "
            "patients), or when nothing is segmented. Thresholds: "
            + "; ".join(
                f"{measure} {side} {value:.4g}"
                for measure, fences in calibration["thresholds"].items()
                for side, value in fences.items()
                if value is not None
            )
            + ".",
            "",
            readme_snippet(),
            "",
        ]
    )


def settings_of(config: Mapping[str, Any], dataset: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a package records: the data's labels and channels as the workflow read them
    (`dataset`: its dataset.json), and from the config (completed from the schema)
    preprocess.n4 and preprocess.crop with its centre resolved."""
    preprocess = config.get("preprocess") or {}
    crop = complete(preprocess.get("crop") or {}, "preprocess", "crop")
    source = complete(config.get("data") or {}, "data")["source"]
    return {
        "labels": dataset["labels"],
        "channels": dataset.get("channels"),
        "n4": complete(preprocess.get("n4") or {}, "preprocess", "n4"),
        "crop": {**crop, "centre": resolve_centre(crop["centre"], source)},
    }


def _runs_of(results: Path, configuration: str) -> list[str]:
    """A configuration's runs: those its models.json lists, else its run or its fold runs."""
    models = results / "final" / configuration / "models.json"
    if models.is_file():
        return list(read_json(models)["runs"])
    if (results / "runs" / configuration).is_dir():
        return [configuration]
    folds = sorted(p.name for p in (results / "runs").glob(f"{configuration}_fold-*"))
    if not folds:
        raise InputError(configuration, str(results / "runs"), "no run of this configuration")
    return folds


def main(argv: list[str] | None = None) -> None:
    """Package a final model of a finished workflow (`--run`, a configuration id)."""
    from segsweep.deploy import classification

    if classification.requested(argv):  # --task, the --config's task, or the results say so
        classification.main(argv)
        return
    parser = argparse.ArgumentParser(prog="segsweep package", description=main.__doc__)
    parser.add_argument(
        "--task",
        choices=("segmentation", "classification"),
        help="the final model's task (default: the --config's, else from its results)",
    )
    parser.add_argument("--run", required=True, help="the final model's configuration id")
    parser.add_argument("--runs", nargs="*", help="its fold runs (default: from its results)")
    parser.add_argument("--results", type=Path, default=Path(layout.RESULTS))
    parser.add_argument(
        "--config", type=Path, help="the config file the workflow ran with (its preprocess)"
    )
    parser.add_argument(
        "--settings-json", help="labels, channels, n4 and crop as JSON (else from --config)"
    )
    parser.add_argument("--out", required=True, type=Path, help="the package zip")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    args = parser.parse_args(argv)
    if not (args.settings_json or args.config):
        parser.error("give --config or --settings-json")
    results = args.results

    def under(pattern: str, **wildcards: str) -> Path:
        return layout.under(results, pattern, **wildcards)

    settings = (
        json.loads(args.settings_json)
        if args.settings_json
        else settings_of(
            yaml.safe_load(args.config.read_text()) or {},
            read_json(under(layout.DATA_DESCRIPTION)),
        )
    )

    runs = args.runs or _runs_of(results, args.run)
    stats = read_json(under(layout.NORMALISATION))
    planned = settings["crop"]["window_mm"] == AUTO
    subjects = [p.parent.name for p in sorted((results / "crop").glob("*/crop.json"))]
    records = Records(
        {s: under(layout.CROP_RECORD, subject=s) for s in subjects},
        {s: under(layout.INGEST_RECORD, subject=s) for s in subjects},
    )
    datasets = [under(layout.DATASET, split=split) for split in ("train", "val")]
    provenance = under(layout.RUN_PROVENANCE, run=runs[0])
    build_package(
        args.out,
        args.run,
        {r: (under(layout.SELECTION, run=r), under(layout.RUN_INDEX, run=r)) for r in runs},
        [under(layout.VAL_PER_PATIENT, run=r) for r in runs],
        settings,
        stats,
        read_json(under(layout.CROP_PLAN)) if planned else None,
        [path for path in datasets if path.is_file()],
        records,
        read_json(provenance).get("config_hash") if provenance.is_file() else None,
        choose_device(args.device),
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
