"""The prepared cohort as an nnU-Net v2 raw dataset, so that nnU-Net trains on our patients.

`python -m segsweep export-nnunet OUT [--results results]` writes, from a finished (or at least
split) workflow run:
- `imagesTr/{subject}_{XXXX}.nii.gz` (one file per channel) and `labelsTr/{subject}.nii.gz` for
  the development subjects (train and val; with folds, every fold);
- `imagesTs/{subject}_{XXXX}.nii.gz` for the test and unlabelled subjects (no test label is
  written: nnU-Net never sees one);
- `dataset.json` (`channel_names`, `labels` name → value, `numTraining`, `file_ending`);
- `splits_final.json`: our train/val split as nnU-Net's fold 0, or with `split.folds` our k
  folds (fold i validates on our fold i), for nnU-Net's preprocessed folder.

Images are the validated, canonical ingest outputs (no N4, no crop: nnU-Net plans its own
preprocessing), in the same physical space as the originals, so nnU-Net's predictions score in
native space (`final.external`). nnU-Net wants consecutive label values; classes are renumbered
1..n in the order of their values, and `dataset.json` keeps the names, by which the external
scorer maps them back.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from segsweep import layout
from segsweep.errors import InputError
from segsweep.io.images import read_volume, write_image
from segsweep.io.records import read_json, write_json

FILE_ENDING = ".nii.gz"
DEVELOPMENT = ("train", "val")


def nnunet_labels(labels: dict[str, int]) -> dict[str, int]:
    """Our classes renumbered 1..n in the order of their values, with background 0."""
    ordered = sorted(labels, key=lambda name: labels[name])
    return {"background": 0, **{name: i for i, name in enumerate(ordered, start=1)}}


def nnunet_splits(splits: pd.DataFrame) -> list[dict[str, list[str]]]:
    """splits_final.json: with a `fold` column one entry per fold (val: the fold, train: the
    other development subjects), else one entry (our train and val), ids sorted."""
    development = splits[splits["split"].isin(DEVELOPMENT)]
    if "fold" in splits and development["fold"].notna().any():
        folds = pd.to_numeric(development["fold"]).astype(int)
        return [
            {
                "train": sorted(development.loc[folds != k, "subject_id"]),
                "val": sorted(development.loc[folds == k, "subject_id"]),
            }
            for k in sorted(set(folds))
        ]
    return [
        {name: sorted(splits.loc[splits["split"] == name, "subject_id"]) for name in DEVELOPMENT}
    ]


def _channels(image: sitk.Image) -> list[sitk.Image]:
    """One scalar image per channel (component)."""
    n = image.GetNumberOfComponentsPerPixel()
    return [image] if n == 1 else [sitk.VectorIndexSelectionCast(image, c) for c in range(n)]


def export_nnunet(
    out: str | Path,
    splits: str | Path,
    description: str | Path,
    images: dict[str, str | Path],
    masks: dict[str, str | Path],
    name: str = "segsweep",
) -> dict[str, Any]:
    """Write the raw dataset under `out` from splits.csv, the data stage's dataset.json
    (`description`: classes, channels) and the ingested images and masks (subject → path);
    returns its dataset.json."""
    out = Path(out)
    table = pd.read_csv(splits, dtype={"subject_id": str})
    read = read_json(description)
    labels = read["labels"]
    renumbered = nnunet_labels(labels)
    lut = np.zeros(256, np.uint8)
    for class_name, value in labels.items():
        lut[value] = renumbered[class_name]
    development = table.loc[table["split"].isin(DEVELOPMENT), "subject_id"].tolist()
    others = table.loc[~table["split"].isin(DEVELOPMENT), "subject_id"].tolist()
    n_channels = None
    for subject, folder in [
        *((s, "imagesTr") for s in development),
        *((s, "imagesTs") for s in others),
    ]:
        if subject not in images:
            raise InputError(subject, str(splits), "no ingested image for this subject")
        channels = _channels(read_volume(images[subject], subject))
        n_channels = len(channels)
        for index, channel in enumerate(channels):
            write_image(channel, out / folder / f"{subject}_{index:04d}{FILE_ENDING}")
    for subject in development:
        if subject not in masks:
            raise InputError(subject, str(splits), "no ingested mask for this subject")
        mask = read_volume(masks[subject], subject)
        renamed = sitk.GetImageFromArray(lut[sitk.GetArrayFromImage(mask)])
        renamed.CopyInformation(mask)
        write_image(renamed, out / "labelsTr" / f"{subject}{FILE_ENDING}")
    names = read.get("channels") or (
        ["image"] if n_channels == 1 else [f"channel{c}" for c in range(n_channels or 1)]
    )
    dataset = {
        "channel_names": {str(i): channel for i, channel in enumerate(names)},
        "labels": renumbered,
        "numTraining": len(development),
        "file_ending": FILE_ENDING,
        "name": name,
        "description": "exported by segsweep export-nnunet: our subjects, split and folds",
    }
    write_json(out / "dataset.json", dataset)
    write_json(out / "splits_final.json", nnunet_splits(table))
    return dataset


def main(argv: list[str] | None = None) -> None:
    """`python -m segsweep export-nnunet OUT [--results results] [--name NAME]`."""
    parser = argparse.ArgumentParser(
        prog="segsweep export-nnunet", description=__doc__.splitlines()[0]
    )
    parser.add_argument("out", type=Path, help="e.g. $nnUNet_raw/Dataset500_Knee")
    parser.add_argument("--results", type=Path, default=Path(layout.RESULTS))
    parser.add_argument("--name", default=None, help="dataset name (default: OUT's name)")
    args = parser.parse_args(argv)

    def under(pattern: str, **wildcards: str) -> Path:
        return layout.under(args.results, pattern, **wildcards)

    splits = under(layout.SPLITS)
    subjects = pd.read_csv(splits, dtype={"subject_id": str})["subject_id"]
    dataset = export_nnunet(
        args.out,
        splits,
        under(layout.DATA_DESCRIPTION),
        {s: under(layout.DATA_IMAGE, subject=s) for s in subjects},
        {s: under(layout.DATA_MASK, subject=s) for s in subjects},
        args.name or args.out.name,
    )
    print(
        f"wrote {args.out}: {dataset['numTraining']} training cases, "
        f"splits_final.json with {len(json.loads((args.out / 'splits_final.json').read_text()))} "
        "fold(s); copy splits_final.json into nnU-Net's preprocessed folder of the dataset"
    )


if __name__ == "__main__":
    main()
