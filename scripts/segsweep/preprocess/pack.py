"""Pack each split into HDF5: the normalised slices and one-hot masks of its subjects, in the
split format of `segsweep.io.splits`, and the training statistics that normalise them
(`segsweep.preprocess.normalise`, from the training split only).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import SimpleITK as sitk

from segsweep import layout
from segsweep.errors import ConfigError, InputError
from segsweep.io.images import read_header, read_volume
from segsweep.io.records import read_json, write_json
from segsweep.io.splits import write_split
from segsweep.labels import one_hot
from segsweep.preprocess.normalise import compute_stats, normalised_volume, output_channels


def _check_headers(
    subjects: list[str],
    images: Mapping[str, str | Path],
    masks: Mapping[str, str | Path],
    n_channels: int,
) -> tuple[list[int], list[list[float]], tuple[int, int]]:
    """Slices and spacing per subject, common (rows, cols); fails before anything is written."""
    n_slices, spacings, shapes = [], [], set()
    for subject in subjects:
        image_path, mask_path = _files(subject, images, masks)
        image = read_header(image_path, subject)
        mask = read_header(mask_path, subject)
        if mask.GetSize() != image.GetSize():
            problem = f"mask size {mask.GetSize()} != image size {image.GetSize()}"
            raise InputError(subject, str(mask_path), problem)
        if image.GetNumberOfComponents() != n_channels:
            problem = f"{image.GetNumberOfComponents()} channels, statistics have {n_channels}"
            raise InputError(subject, str(image_path), problem)
        cols, rows, slices = image.GetSize()
        shapes.add((rows, cols))
        if len(shapes) > 1:
            problem = f"slice size {rows}x{cols} differs from the other subjects {sorted(shapes)}"
            raise InputError(subject, str(image_path), problem)
        n_slices.append(slices)
        spacings.append(list(image.GetSpacing()))
    return n_slices, spacings, shapes.pop()


def _files(subject: str, *named: Mapping[str, str | Path]) -> list[str | Path]:
    """The subject's file in each of `named` (subject → path)."""
    for files in named:
        if subject not in files:
            raise InputError(subject, None, "no cropped image or mask given for it")
    return [files[subject] for files in named]


def _samples(
    subjects: list[str],
    images: Mapping[str, str | Path],
    masks: Mapping[str, str | Path],
    stats: dict,
    classes: dict[str, int],
):
    """Each subject's normalised slices and one-hot masks, read one subject at a time."""
    for subject in subjects:
        image_path, mask_path = _files(subject, images, masks)
        labels = sitk.GetArrayFromImage(read_volume(mask_path, subject))
        try:
            masks_of = one_hot(labels, classes)
        except ValueError as error:
            raise InputError(subject, str(mask_path), str(error)) from None
        yield normalised_volume(read_volume(image_path, subject), stats), masks_of


def pack_split(
    subjects: list[str],
    images: Mapping[str, str | Path],
    masks: Mapping[str, str | Path],
    stats: dict,
    classes: dict[str, int],
    out: Path,
    volumes: bool = False,
) -> None:
    """Write the normalised slices and one-hot masks of `subjects` (in order; their cropped
    images and masks given as subject → path) to `out` (HDF5, `segsweep.io.splits`), with the
    3D layout when `volumes` (all subjects must then have the same slice count)."""
    if not subjects:
        raise InputError(None, str(out), "no subjects to pack")
    n_slices, spacings, (rows, cols) = _check_headers(subjects, images, masks, len(stats["mean"]))
    write_split(
        out,
        subjects,
        n_slices,
        (rows, cols, output_channels(stats), len(classes)),
        list(classes),
        stats,
        spacings,
        _samples(subjects, images, masks, stats, classes),
        volumes=volumes,
    )


def crop_files(crop_dir: str | Path, subjects: list[str]) -> tuple[dict, dict]:
    """(images, masks): subject → cropped image and mask in a folder laid out as results/crop."""

    def files(pattern: str) -> dict[str, Path]:
        return {
            s: layout.under(crop_dir, pattern, base=layout.CROP_DIR, subject=s) for s in subjects
        }

    return files(layout.CROP_IMAGE), files(layout.CROP_MASK)


def split_subjects(splits_csv: Path, split: str) -> list[str]:
    """Sorted subject ids of one split of splits.csv."""
    splits = pd.read_csv(splits_csv, dtype={"subject_id": str})
    subjects = sorted(splits.loc[splits["split"] == split, "subject_id"])
    if not subjects:
        raise InputError(None, str(splits_csv), f"split '{split}' has no subjects")
    return subjects


def write_stats(
    splits_csv: Path, images: Mapping[str, str | Path], config: dict, out: Path
) -> dict:
    """normalisation.json: the statistics of the training split's cropped images (`config`:
    normalise, windows, channels), with the training subjects listed."""
    method = config.get("normalise", "zscore")
    subjects = split_subjects(splits_csv, "train")
    paths = [_files(s, images)[0] for s in subjects]
    stats = compute_stats(paths, method, config.get("windows"), config.get("channels"))
    stats["subjects"] = subjects
    write_json(out, stats)
    print(f"{method}: mean {stats['mean']}, std {stats['std']} of {len(subjects)} subjects")
    return stats


def write_pack(
    split: str,
    splits_csv: Path,
    images: Mapping[str, str | Path],
    masks: Mapping[str, str | Path],
    stats_json: Path,
    classes: dict[str, int],
    out: Path,
    volumes: bool = False,
) -> None:
    """One split's HDF5 file from splits.csv, the cropped images and masks and the statistics."""
    if not classes:
        raise ConfigError("data.labels", classes, "at least one class name: label value")
    subjects = split_subjects(splits_csv, split)
    pack_split(subjects, images, masks, read_json(stats_json), classes, out, volumes=volumes)
    print(f"packed {len(subjects)} subjects of split '{split}' into {out}")


def main(argv: list[str] | None = None) -> None:
    """`stats`: training statistics to JSON; `pack`: one split to HDF5 (the cropped images and
    masks in --crop-dir, laid out as results/crop)."""
    parser = argparse.ArgumentParser(prog="segsweep pack", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    stats_cmd = commands.add_parser("stats", help="normalisation statistics of the train split")
    stats_cmd.add_argument(
        "--config-json",
        required=True,
        help='{"normalise": "zscore", "windows": [[-160, 240]], "channels": ["ct", "pet"]}',
    )
    pack_cmd = commands.add_parser("pack", help="normalise one split and write HDF5")
    pack_cmd.add_argument("--split", required=True, choices=["train", "val", "test"])
    pack_cmd.add_argument("--stats", type=Path, required=True, help="normalisation.json")
    pack_cmd.add_argument("--labels-json", required=True, help='{"femur": 1, ...} (data.labels)')
    pack_cmd.add_argument("--volumes", action="store_true", help="add the 3D layout")
    for command in (stats_cmd, pack_cmd):
        command.add_argument("--splits", type=Path, required=True, help="splits.csv")
        command.add_argument("--crop-dir", type=Path, required=True, help="results/crop")
        command.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    subjects = pd.read_csv(args.splits, dtype={"subject_id": str})["subject_id"].tolist()
    images, masks = crop_files(args.crop_dir, subjects)
    if args.command == "stats":
        write_stats(args.splits, images, json.loads(args.config_json), args.out)
        return
    write_pack(
        args.split,
        args.splits,
        images,
        masks,
        args.stats,
        json.loads(args.labels_json),
        args.out,
        volumes=args.volumes,
    )


if __name__ == "__main__":
    main()
