"""An external method's test predictions (e.g. nnU-Net's output folder, as it is) scored on our
test patients with our metrics, in native space, so the report can set it beside our models.

A prediction `{subject}{suffix}` per test subject: a label map in the subject's native space
(any grid in the same physical space: it is resampled, nearest neighbour, onto the original
mask's grid, which for nnU-Net trained on `export-nnunet` output is a reorientation only).
Label values follow a `dataset.json` in the folder when there is one (nnU-Net copies it to its
output folder: class names → its values, mapped to ours by name), else ours (`data.labels`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from segsweep.cli import add_nsd_tolerance_option
from segsweep.errors import InputError
from segsweep.evaluate.export import native_rows
from segsweep.io.images import SUFFIXES, blank
from segsweep.io.records import named_paths, read_json, write_csv

DATASET_JSON = "dataset.json"


def prediction_file(folder: Path, subject: str) -> Path | None:
    """The folder's prediction of `subject` ({subject}.nii.gz, .nii, .mha or .mhd)."""
    for suffix in (".nii.gz", *SUFFIXES):
        path = folder / f"{subject}{suffix}"
        if path.is_file():
            return path
    return None


def value_map(folder: Path, labels: dict[str, int]) -> np.ndarray:
    """Lookup table from the folder's label values to ours: by class name through its
    dataset.json (nnU-Net's name → value), else the identity on our values."""
    lut = np.zeros(256, np.uint8)
    meta = folder / DATASET_JSON
    if not meta.is_file():
        for value in labels.values():
            lut[value] = value
        return lut
    theirs = json.loads(meta.read_text()).get("labels") or {}
    unknown = [name for name, value in theirs.items() if value != 0 and name not in labels]
    if unknown:
        raise InputError(None, str(meta), f"classes {unknown} are not in data.labels {labels}")
    for name, value in theirs.items():
        if value != 0:
            lut[int(value)] = labels[name]
    return lut


def score_external(
    name: str,
    folder: str | Path,
    subjects: list[str],
    ingest_records: Mapping[str, str | Path],
    labels: dict[str, int],
    nsd_tolerance_mm: float,
) -> pd.DataFrame:
    """Per-patient native-space rows (run_id = `name`, split test) of every test subject's
    prediction in `folder`, the NSD at `nsd_tolerance_mm` as for our models; one InputError
    listing every test subject without a prediction."""
    folder = Path(folder)
    found = {s: prediction_file(folder, s) for s in subjects}
    missing = [s for s, path in found.items() if path is None]
    if missing:
        raise InputError(
            None, str(folder), f"final.external '{name}': no prediction for {', '.join(missing)}"
        )
    lut = value_map(folder, labels)
    classes = sorted(labels)
    rows: list[dict[str, Any]] = []
    for subject, path in found.items():
        info = read_json(ingest_records[subject])
        grid = blank(info["original"])
        prediction = sitk.ReadImage(str(path))
        if prediction.GetDimension() != 3:
            raise InputError(subject, str(path), "a prediction must be a 3D label map")
        native = sitk.Resample(
            sitk.Cast(prediction, sitk.sitkUInt8),
            grid,
            sitk.Transform(),
            sitk.sitkNearestNeighbor,
            0,
            sitk.sitkUInt8,
        )
        mapped = sitk.GetImageFromArray(lut[sitk.GetArrayFromImage(native)])
        mapped.CopyInformation(native)
        for row in native_rows(mapped, info, classes, labels, nsd_tolerance_mm):
            rows.append(
                {"run_id": name, "split": "test", "space": "native", "patient_id": subject, **row}
            )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    """`python -m segsweep external NAME FOLDER --splits splits.csv --records SUBJECT=PATH ...
    --labels-json '{...}' [--nsd-tolerance-mm MM] --out per_patient.csv`."""
    parser = argparse.ArgumentParser(prog="segsweep external", description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--splits", required=True, help="splits.csv: its test subjects are scored")
    parser.add_argument("--records", nargs="+", required=True, help="SUBJECT=PATH of ingest.json")
    parser.add_argument("--labels-json", required=True)
    parser.add_argument("--out", required=True)
    add_nsd_tolerance_option(parser)
    args = parser.parse_args(argv)
    splits = pd.read_csv(args.splits, dtype={"subject_id": str})
    subjects = sorted(splits.loc[splits["split"] == "test", "subject_id"])
    table = score_external(
        args.name,
        args.folder,
        subjects,
        named_paths(args.records, "--records"),
        json.loads(args.labels_json),
        args.nsd_tolerance_mm,
    )
    write_csv(table, args.out)
    print(f"scored {args.name}: {len(subjects)} test subjects")


if __name__ == "__main__":
    main()
