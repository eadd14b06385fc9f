"""Normalise cropped volumes with training-split statistics and pack each split into HDF5.

Statistics come from the training subjects only, so nothing about validation or test images leaks
into the model. The HDF5 layout follows the PET/CT thesis (Table 4.1): one row per 2D slice,
`images [n, rows, cols, c]`, `masks [n, rows, cols, m]` (one 0/1 channel per class),
`patient_id [n]`, `slice_id [n]`, chunked per slice so a loader can read any slice cheaply.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import SimpleITK as sitk

from segsweep.errors import ConfigError, InputError
from segsweep.inputs import channel_names

# zscore: training-population mean/std per channel (knee thesis); minmax: training min/max to
# [0, 1] (feature scaling); image_zscore: each image by its own mean/std; window: CT windows of
# channel 0, each clipped to [low, high] and scaled to [0, 1] as one channel (PET/CT thesis),
# other channels z-scored with training statistics.
METHODS = ("zscore", "minmax", "image_zscore", "window")
DEFAULT_WINDOWS = [[-160.0, 240.0]]  # CT soft-tissue window (level 40, width 400)
# lzf decompresses near memory speed (a noisy float slice barely compresses and is read like raw;
# gzip-1 read it ~15x slower for a file ~7 % smaller) while masks still shrink ~12x.
COMPRESSION = {"compression": "lzf"}


def _channels_last(image: sitk.Image) -> np.ndarray:
    """Voxels as float64 [z, y, x, c] (scalar images get c = 1)."""
    array = sitk.GetArrayFromImage(image).astype(np.float64, copy=False)
    return array if image.GetNumberOfComponentsPerPixel() > 1 else array[..., np.newaxis]


def _read(path: Path, subject: str | None = None) -> sitk.Image:
    """A 3D image from disk, or an InputError naming the file."""
    if not path.is_file():
        raise InputError(subject, str(path), "file not found")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise InputError(subject, str(path), f"unreadable image ({err})") from err
    if image.GetDimension() != 3:
        raise InputError(subject, str(path), f"expected a 3D image, got {image.GetDimension()}D")
    return image


def compute_stats(
    image_paths: list[Path],
    method: str = "zscore",
    windows: list[list[float]] | None = None,
    channels: list[str] | None = None,
) -> dict:
    """Per-channel mean, (population) std, min and max over all voxels of the training images,
    the shift/scale each method applies: normalised = (x - shift) / scale, and the names of the
    packed channels (`segsweep.inputs.channel_names` of the manifest's `channels`).

    Per-image moments are merged with Chan's parallel formula, so precision does not depend on
    the number or size of the images.
    """
    if method not in METHODS:
        raise ConfigError("preprocess.normalise", method, " | ".join(METHODS))
    windows = [list(map(float, w)) for w in (windows or DEFAULT_WINDOWS)]
    if any(len(w) != 2 or w[1] <= w[0] for w in windows):
        raise ConfigError("preprocess.windows", windows, "a list of [low, high] with low < high")
    if not image_paths:
        raise InputError(None, None, "no training images to compute normalisation statistics")
    count, mean, m2, low, high = 0, None, None, None, None
    for path in map(Path, image_paths):
        array = _channels_last(_read(path))
        voxels = array.reshape(-1, array.shape[-1])
        if not np.isfinite(voxels).all():
            raise InputError(None, str(path), "image has NaN or infinite voxels")
        if mean is not None and voxels.shape[1] != mean.size:
            raise InputError(None, str(path), f"{voxels.shape[1]} channels, expected {mean.size}")
        n_b, mean_b = voxels.shape[0], voxels.mean(axis=0)
        m2_b = ((voxels - mean_b) ** 2).sum(axis=0)
        low_b, high_b = voxels.min(axis=0), voxels.max(axis=0)
        if mean is None:
            count, mean, m2, low, high = n_b, mean_b, m2_b, low_b, high_b
            continue
        low, high = np.minimum(low, low_b), np.maximum(high, high_b)
        delta = mean_b - mean
        total = count + n_b
        mean = mean + delta * n_b / total
        m2 = m2 + m2_b + delta**2 * count * n_b / total
        count = total
    std = np.sqrt(m2 / count)
    if (std == 0).any() and method in ("zscore", "minmax"):
        raise InputError(None, None, "training images have a constant channel (std 0)")
    shift, scale = (low, high - low) if method == "minmax" else (mean, std)
    stats = {"method": method, "mean": mean.tolist(), "std": std.tolist()}
    stats |= {"min": low.tolist(), "max": high.tolist()}
    stats |= {"shift": shift.tolist(), "scale": scale.tolist()}
    if method == "window":
        stats["windows"] = windows
    stats["channel_names"] = channel_names(channels, mean.size, method, windows)
    return stats


def output_channels(stats: dict) -> int:
    """Channels after normalisation: one per window plus the other input channels for
    `window`, else as many as the input has."""
    if stats.get("method") == "window":
        return len(stats["windows"]) + len(stats["mean"]) - 1
    return len(stats["mean"])


def normalise(image: np.ndarray, stats: dict) -> np.ndarray:
    """[z, y, x, c] voxels normalised as `stats` (from `compute_stats`) says, float32."""
    method = stats.get("method", "zscore")
    if method == "image_zscore":
        std = image.std(axis=(0, 1, 2))
        out = (image - image.mean(axis=(0, 1, 2))) / np.where(std > 0, std, 1.0)
    elif method == "window":
        shift = np.asarray(stats["shift"][1:], np.float64)
        scale = np.asarray(stats["scale"][1:], np.float64)
        parts = [
            (np.clip(image[..., :1], low, high) - low) / (high - low)
            for low, high in stats["windows"]
        ]
        out = np.concatenate([*parts, (image[..., 1:] - shift) / scale], axis=-1)
    else:
        shift = np.asarray(stats.get("shift", stats["mean"]), np.float64)
        scale = np.asarray(stats.get("scale", stats["std"]), np.float64)
        out = (image - shift) / scale
    return out.astype(np.float32)


def normalised_volume(image: sitk.Image, stats: dict) -> np.ndarray:
    """A cropped image's voxels as normalised slices [z, y, x, c'] (float32): what packing
    writes into every split and what every inference path feeds a network."""
    return normalise(_channels_last(image), stats)


def _header(path: Path, subject: str) -> sitk.ImageFileReader:
    """Size, spacing and channels of an image without reading its voxels."""
    if not path.is_file():
        raise InputError(subject, str(path), "file not found")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise InputError(subject, str(path), f"unreadable image header ({err})") from err
    if reader.GetDimension() != 3:
        raise InputError(subject, str(path), f"expected a 3D image, got {reader.GetDimension()}D")
    return reader


def _check_headers(
    subjects: list[str], crop_dir: Path, n_channels: int
) -> tuple[list[int], list[list[float]], tuple[int, int]]:
    """Slices and spacing per subject, common (rows, cols); fails before anything is written."""
    n_slices, spacings, shapes = [], [], set()
    for subject in subjects:
        image = _header(crop_dir / subject / "image.nii.gz", subject)
        mask_path = crop_dir / subject / "mask.nii.gz"
        mask = _header(mask_path, subject)
        if mask.GetSize() != image.GetSize():
            problem = f"mask size {mask.GetSize()} != image size {image.GetSize()}"
            raise InputError(subject, str(mask_path), problem)
        if image.GetNumberOfComponents() != n_channels:
            problem = f"{image.GetNumberOfComponents()} channels, statistics have {n_channels}"
            raise InputError(subject, str(crop_dir / subject / "image.nii.gz"), problem)
        cols, rows, slices = image.GetSize()
        shapes.add((rows, cols))
        if len(shapes) > 1:
            problem = f"slice size {rows}x{cols} differs from the other subjects {sorted(shapes)}"
            raise InputError(subject, str(crop_dir / subject / "image.nii.gz"), problem)
        n_slices.append(slices)
        spacings.append(list(image.GetSpacing()))
    return n_slices, spacings, shapes.pop()


def _common_spacing(spacings: list[list[float]]) -> list[float | None]:
    """Spacing shared by all subjects per axis (None for an axis where subjects differ)."""
    values = np.array(spacings)
    same = np.isclose(values, values[0], rtol=1e-5, atol=0).all(axis=0)
    return [float(v) if ok else None for v, ok in zip(values[0], same, strict=True)]


def _one_hot(subject: str, path: Path, labels: np.ndarray, classes: dict[str, int]) -> np.ndarray:
    """[z, y, x] label map as uint8 [z, y, x, m], one 0/1 channel per class in `classes` order."""
    unknown = np.setdiff1d(np.unique(labels), [0, *classes.values()])
    if unknown.size:
        raise InputError(subject, str(path), f"label values {unknown.tolist()} not in {classes}")
    return np.stack([labels == value for value in classes.values()], axis=-1).astype(np.uint8)


def pack_split(
    subjects: list[str],
    crop_dir: Path,
    stats: dict,
    classes: dict[str, int],
    out: Path,
    volumes: bool = False,
) -> None:
    """Write the normalised slices and one-hot masks of `subjects` (in order) to `out` (HDF5).

    With `volumes`, a 3D layout is added (when all subjects have the same slice count):
    `volumes/images [p, z, rows, cols, c]`, `volumes/masks [p, z, rows, cols, m]`,
    `volumes/patient_id [p]`, chunked per volume.
    """
    if not subjects:
        raise InputError(None, str(out), "no subjects to pack")
    crop_dir, out = Path(crop_dir), Path(out)
    n_slices, spacings, (rows, cols) = _check_headers(subjects, crop_dir, len(stats["mean"]))
    n, c, m = sum(n_slices), output_channels(stats), len(classes)
    if volumes and len(set(n_slices)) > 1:
        raise InputError(None, str(out), f"3D layout needs one slice count, got {set(n_slices)}")
    partial = out.with_name(out.name + ".partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(partial, "w") as h5:
        images = h5.create_dataset(
            "images", (n, rows, cols, c), np.float32, chunks=(1, rows, cols, c), **COMPRESSION
        )
        masks = h5.create_dataset(
            "masks", (n, rows, cols, m), np.uint8, chunks=(1, rows, cols, m), **COMPRESSION
        )
        patient_id = np.repeat(np.array(subjects, dtype=object), n_slices)
        h5.create_dataset("patient_id", data=patient_id, dtype=h5py.string_dtype())
        slice_id = np.concatenate([np.arange(k, dtype=np.int32) for k in n_slices])
        h5.create_dataset("slice_id", data=slice_id, dtype=np.int32)
        h5.attrs["classes"] = json.dumps(list(classes))
        h5.attrs["normalisation"] = json.dumps(stats)
        h5.attrs["spacing"] = json.dumps(_common_spacing(spacings))
        h5.attrs["subject_spacing"] = json.dumps(dict(zip(subjects, spacings, strict=True)))
        if volumes:
            z = n_slices[0]
            group = h5.create_group("volumes")
            volume_images = group.create_dataset(
                "images",
                (len(subjects), z, rows, cols, c),
                np.float32,
                chunks=(1, z, rows, cols, c),
                **COMPRESSION,
            )
            volume_masks = group.create_dataset(
                "masks",
                (len(subjects), z, rows, cols, m),
                np.uint8,
                chunks=(1, z, rows, cols, m),
                **COMPRESSION,
            )
            group.create_dataset(
                "patient_id", data=np.array(subjects, dtype=object), dtype=h5py.string_dtype()
            )
        start = 0
        for p, (subject, k) in enumerate(zip(subjects, n_slices, strict=True)):
            image = _read(crop_dir / subject / "image.nii.gz", subject)
            mask_path = crop_dir / subject / "mask.nii.gz"
            labels = sitk.GetArrayFromImage(_read(mask_path, subject))
            normalised = normalised_volume(image, stats)
            one_hot = _one_hot(subject, mask_path, labels, classes)
            images[start : start + k] = normalised
            masks[start : start + k] = one_hot
            if volumes:
                volume_images[p] = normalised
                volume_masks[p] = one_hot
            start += k
    os.replace(partial, out)


def _split_subjects(splits_csv: Path, split: str) -> list[str]:
    """Sorted subject ids of one split of splits.csv."""
    splits = pd.read_csv(splits_csv, dtype={"subject_id": str})
    subjects = sorted(splits.loc[splits["split"] == split, "subject_id"])
    if not subjects:
        raise InputError(None, str(splits_csv), f"split '{split}' has no subjects")
    return subjects


def main(argv: list[str] | None = None) -> None:
    """`stats`: training statistics to JSON; `pack`: one split to HDF5."""
    parser = argparse.ArgumentParser(prog="segsweep pack", description=__doc__)
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

    if args.command == "stats":
        config = json.loads(args.config_json)
        method = config.get("normalise", "zscore")
        subjects = _split_subjects(args.splits, "train")
        paths = [args.crop_dir / s / "image.nii.gz" for s in subjects]
        stats = compute_stats(paths, method, config.get("windows"), config.get("channels"))
        stats["subjects"] = subjects
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(stats, indent=2) + "\n")
        print(f"{method}: mean {stats['mean']}, std {stats['std']} of {len(subjects)} subjects")
        return
    classes = json.loads(args.labels_json)
    if not classes:
        raise ConfigError("data.labels", classes, "at least one class name: label value")
    subjects = _split_subjects(args.splits, args.split)
    stats = json.loads(args.stats.read_text())
    pack_split(subjects, args.crop_dir, stats, classes, args.out, volumes=args.volumes)
    print(f"packed {len(subjects)} subjects of split '{args.split}' into {args.out}")


if __name__ == "__main__":
    main()
