"""`segsweep predict` with a classification package: per-image and per-study probabilities of
new radiographs, and the class predicted at the packaged threshold.

The one inference path is the workflow's: each image is prepared as packing prepares it
(`segsweep.preprocess.images.prepared`, at the package's size), every network's probabilities
come from `segsweep.evaluate.probabilities.predict_probabilities` and are averaged as
`ensemble_probabilities` averages a final model's folds; the tables are the workflow's own
(`segsweep.evaluate.predictions`: `image_table`, `study_table`, `apply_threshold`), so a
package's study probabilities and classes are those of the final test on the same images.

Inputs (`find_images`):
- an image file (anything `segsweep.preprocess.images.read_grey` reads: PNG, JPEG, DICOM, 2D
  NIfTI/MHA, …) is one image and its own study: image, study and patient id its file name
  without extension;
- a folder gives its image files (`IMAGE_SUFFIXES`, one level, in name order), each its own
  study;
- a .csv file is a manifest as the classification data's (`segsweep.data.studies`): columns
  image, study_id, patient_id, optionally label (the true class, kept in `true`), study_type
  and image_id (else the file name, prefixed by the study id unless it starts with it); image
  paths relative to the CSV's folder. A manifest groups images into studies.

Outputs in DIR: per_image.csv and per_study.csv with the workflow's columns (`true` empty
without labels). A study with an image that cannot be read, a missing path or an empty id is
left out with one error line; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from segsweep.data.studies import MURA_SUFFIXES, _image_ids
from segsweep.deploy.archive import open_archive
from segsweep.devices import choose_device
from segsweep.errors import InputError
from segsweep.evaluate.predictions import IDS, apply_threshold, image_table, study_table
from segsweep.evaluate.probabilities import predict_probabilities
from segsweep.io.records import write_csv
from segsweep.model.checkpoints import model_from
from segsweep.model.classifiers import build_classifier
from segsweep.preprocess.images import prepared

TASK = "classification"
IMAGE_SUFFIXES = tuple(dict.fromkeys((*MURA_SUFFIXES, ".jpe", ".bmp", ".tif", ".tiff", ".mhd")))
MANIFEST_REQUIRED = ("image", "study_id", "patient_id")
Problem = tuple[str, str]


class ClassificationPredictor:
    """A classification package's networks and what their inputs and outputs need."""

    def __init__(
        self, manifest: dict[str, Any], networks: Sequence[nn.Module], device: torch.device
    ) -> None:
        self.manifest = manifest
        self.networks = list(networks)
        self.device = device
        self.classes = list(manifest["classes"])
        self.size = int(manifest["preparation"]["size"])
        threshold = manifest["threshold"]["value"]
        self.threshold = math.nan if threshold is None else float(threshold)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "auto") -> ClassificationPredictor:
        """The predictor of a package zip, its networks on `device` (auto: CUDA when present)."""
        archive = open_archive(path)
        if archive.manifest.get("task") != TASK:
            raise ValueError(f"{path}: a {archive.manifest.get('task')} package, not {TASK}")
        device = choose_device(device) if isinstance(device, str) else device
        networks = [
            model_from(network, archive.weights(fold), device, build_classifier)
            for fold, network in enumerate(archive.manifest["networks"])
        ]
        return cls(archive.manifest, networks, device)

    def prepare(self, path: str | Path, study: str | None = None) -> np.ndarray:
        """One image as the networks' packed input [S, S] float32."""
        return prepared(path, self.size, study)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities [N, K] of prepared images [N, S, S]: the mean over the networks,
        summed in their order and divided by their number (`ensemble_probabilities`)."""
        total = None
        for network, meta in zip(self.networks, self.manifest["networks"], strict=True):
            probabilities = predict_probabilities(network, images, meta, self.device)
            total = probabilities if total is None else total + probabilities
        return total / len(self.networks)

    def tables(self, rows: pd.DataFrame, images: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(per_image, per_study) of prepared `images` [N, S, S]; `rows` holds their ids
        (`IDS`) and `label` (a class name, or "" when unknown)."""
        probabilities = (
            self.probabilities(images) if len(images) else np.zeros((0, len(self.classes)))
        )
        ids = {column: rows[column].astype(str).to_numpy(object) for column in IDS}
        per_image = image_table(ids, np.zeros(len(rows), int), probabilities, self.classes)
        per_image["true"] = rows["label"].astype(str).to_numpy(object)
        per_study = study_table(per_image, self.classes, self.manifest["study"]["probability"])
        return apply_threshold(per_image, per_study, self.classes, self.threshold)


def _file_row(path: Path) -> dict[str, str]:
    name = path.name
    suffix = next((s for s in IMAGE_SUFFIXES if name.lower().endswith(s)), None)
    stem = name[: -len(suffix)] if suffix else name.split(".")[0]
    return {
        "image": str(path),
        "path": str(path),
        "image_id": stem,
        "study_id": stem,
        "patient_id": stem,
        "study_type": "",
        "label": "",
    }


def _manifest_rows(path: Path, classes: Sequence[str]) -> tuple[list[dict], list[Problem]]:
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        return [], [(str(path), f"unreadable manifest ({err})")]
    table.columns = [c.strip() for c in table.columns]
    missing = [c for c in MANIFEST_REQUIRED if c not in table]
    if missing:
        need = ", ".join(MANIFEST_REQUIRED)
        return [], [(str(path), f"manifest has no column {', '.join(missing)} (needs {need})")]
    table = table.apply(lambda column: column.str.strip())
    rows = pd.DataFrame(
        {
            "image": [
                p if not p or Path(p).is_absolute() else str(path.parent / p)
                for p in table["image"]
            ],
            "path": table["image"],
            "study_id": table["study_id"],
            "patient_id": table["patient_id"],
            "study_type": table["study_type"] if "study_type" in table else "",
            "label": table["label"] if "label" in table else "",
        }
    )
    given = table["image_id"] if "image_id" in table else pd.Series("", index=table.index)
    rows["image_id"] = given.where(given != "", _image_ids(rows))
    problems, kept = [], []
    for line, row in zip(range(2, len(rows) + 2), rows.itertuples(index=False), strict=True):
        empty = [c for c in MANIFEST_REQUIRED if not getattr(row, c if c != "image" else "path")]
        where = f"{path} line {line}"
        if empty:  # the row is left out, and its study (when it names one)
            problems.append((row.study_id or where, f"{where}: empty {', '.join(empty)}"))
            continue
        if row.label and row.label not in classes:
            problems.append((row.study_id, f"{where}: label {row.label!r} not in {list(classes)}"))
        kept.append(row._asdict())
    return kept, problems


def find_images(
    inputs: Sequence[str | Path], classes: Sequence[str]
) -> tuple[pd.DataFrame, list[Problem]]:
    """(one row per image — image (the file to read), path (as given), image_id, study_id,
    patient_id, study_type, label — and the problems as (study or input, reason)); the studies
    a problem names are left out (see the module docstring)."""
    rows: list[dict] = []
    problems: list[Problem] = []
    for item in inputs:
        path = Path(item)
        if not path.exists():
            problems.append((str(path), "not found"))
        elif path.is_dir():
            files = [
                p
                for p in sorted(path.iterdir())
                if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES)
            ]
            if not files:
                problems.append((str(path), f"holds no image file ({', '.join(IMAGE_SUFFIXES)})"))
            rows += [_file_row(p) for p in files]
        elif path.name.lower().endswith(".csv"):
            found, trouble = _manifest_rows(path, classes)
            rows += found
            problems += trouble
        else:
            rows.append(_file_row(path))
    table = pd.DataFrame(rows, columns=["image", *IDS, "label"]).fillna("")
    clashes = table.groupby("study_id")["patient_id"].nunique()
    problems += [(s, "its images name several patients") for s in clashes[clashes > 1].index]
    images = table.groupby(["study_id", "image_id"])["image"].transform("size")
    problems += [
        (s, f"image id {i} given twice")
        for s, i in table.loc[images > 1, ["study_id", "image_id"]].drop_duplicates().values
    ]
    return table, problems


def predict_images(
    predictor: ClassificationPredictor,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame, list[Problem]]:
    """Predict every image of `inputs`; write and return (per_image, per_study) and return the
    problems (each printed as one error line; their studies are left out)."""
    out_dir = Path(out_dir)
    table, problems = find_images(inputs, predictor.classes)
    left_out = {what for what, _ in problems}
    table = table[~table["study_id"].isin(left_out)]
    arrays = {}
    for row in tqdm(
        table.itertuples(),
        total=len(table),
        desc="images",
        unit="image",
        disable=not progress,
        file=sys.stderr,
    ):
        if row.study_id in left_out:
            continue
        try:
            arrays[row.Index] = predictor.prepare(row.image, row.study_id)
        except InputError as err:
            problems.append((row.study_id, str(err)))
            left_out.add(row.study_id)
    table = table[~table["study_id"].isin(left_out)]
    stack = np.stack([arrays[i] for i in table.index]) if len(table) else np.zeros((0, 1, 1))
    per_image, per_study = predictor.tables(table.reset_index(drop=True), stack)
    for what, reason in problems:
        print(f"error: {what}: {reason} (left out)", file=sys.stderr)
    write_csv(per_image, out_dir / "per_image.csv")
    write_csv(per_study, out_dir / "per_study.csv")
    return per_image, per_study, problems


def run(args: argparse.Namespace) -> None:
    """`segsweep predict` with a classification package (`segsweep.deploy.predict` parses):
    classify new radiographs per image and per study."""
    try:
        predictor = ClassificationPredictor.load(args.model, args.device)
    except (InputError, ValueError) as err:
        sys.exit(f"error: {err}")
    per_image, per_study, problems = predict_images(predictor, args.input, args.output)
    counts = per_study["predicted"].value_counts()
    summary = ", ".join(f"{counts.get(name, 0)} {name}" for name in predictor.classes)
    print(
        f"{len(per_study)} studies ({len(per_image)} images) predicted into {args.output}: "
        f"{summary}" + (f"; {len({w for w, _ in problems})} left out" if problems else "")
    )
    sys.exit(1 if problems else 0)
