"""The HDF5 split format: the writer (`write_split`, used by packing) and the readers
(`read_split`, `read_volumes`, used by training, selection, evaluation and the benchmarks; a split
that may not fit in memory is read on demand by `segsweep.io.stream`).

Layout of one split file (after the PET/CT thesis, Table 4.1), one row per 2D slice:
- `images [n, rows, cols, c]` float32, normalised; `masks [n, rows, cols, m]` uint8, one 0/1
  channel per class; `patient_id [n]` (text); `slice_id [n]` (int32, z index in the cropped
  volume); chunked per slice and lzf-compressed, so a loader reads any slice cheaply;
- attributes: `classes` (JSON list, the mask channels' names), `normalisation` (JSON: the
  statistics the images were normalised with, `segsweep.preprocess.normalise`), `spacing` (JSON
  [x, y, z] mm shared by all patients, null per axis where they differ) and `subject_spacing`
  (JSON patient → [x, y, z] mm);
- optionally the 3D layout, group `volumes/`: `images [p, z, rows, cols, c]`, `masks [p, z,
  rows, cols, m]`, `patient_id [p]`, chunked per volume (needs one slice count).

A file is written under `<name>.partial` and renamed when complete.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from segsweep.errors import InputError

# lzf decompresses near memory speed (a noisy float slice barely compresses and is read like raw;
# gzip-1 read it ~15x slower for a file ~7 % smaller) while masks still shrink ~12x.
COMPRESSION = {"compression": "lzf"}
Spacing = tuple[float, float, float]


@dataclass(frozen=True)
class Split:
    """One packed split in memory (the datasets are small): its slices, or (`read_volumes`)
    its volumes, each sample then [z, rows, cols, ·] and slice_id [p, z]."""

    images: np.ndarray  # float32 [n, rows, cols, c]
    masks: np.ndarray  # uint8 [n, rows, cols, m], one 0/1 channel per class
    patient_id: np.ndarray  # str [n]
    slice_id: np.ndarray  # int [n]
    classes: list[str]  # names of the mask channels
    normalisation: dict = field(default_factory=dict)  # how the images were packed
    spacing: dict[str, Spacing] = field(default_factory=dict)  # patient → (x, y, z) mm
    path: str = ""

    def spacing_of(self, patient: str) -> Spacing:
        """The patient's voxel spacing (x, y, z) in mm; an InputError when the split does not
        record it (metrics in mm are never computed on a guessed spacing)."""
        if patient not in self.spacing:
            raise InputError(patient, self.path, "the split records no voxel spacing for it")
        return self.spacing[patient]


def write_split(
    out: str | Path,
    subjects: list[str],
    n_slices: list[int],
    shape: tuple[int, int, int, int],
    classes: list[str],
    normalisation: dict,
    spacings: list[list[float]],
    samples: Iterable[tuple[np.ndarray, np.ndarray]],
    volumes: bool = False,
) -> None:
    """Write one split: `samples` yields each subject's (images [z, rows, cols, c] float32,
    masks [z, rows, cols, m] uint8) in the order of `subjects`, which have `n_slices` slices
    and `spacings` [x, y, z] mm; `shape` is (rows, cols, c, m)."""
    out = Path(out)
    rows, cols, c, m = shape
    n = sum(n_slices)
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
        h5.attrs["normalisation"] = json.dumps(normalisation)
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
        for p, (k, (subject_images, subject_masks)) in enumerate(
            zip(n_slices, samples, strict=True)
        ):
            images[start : start + k] = subject_images
            masks[start : start + k] = subject_masks
            if volumes:
                volume_images[p] = subject_images
                volume_masks[p] = subject_masks
            start += k
    os.replace(partial, out)


def _common_spacing(spacings: list[list[float]]) -> list[float | None]:
    """Spacing shared by all subjects per axis (None for an axis where subjects differ)."""
    values = np.array(spacings)
    same = np.isclose(values, values[0], rtol=1e-5, atol=0).all(axis=0)
    return [float(v) if ok else None for v, ok in zip(values[0], same, strict=True)]


def read_split(path: str | Path) -> Split:
    """All slices of one HDF5 split, with an InputError naming a missing dataset or attribute."""
    path = Path(path)
    if not path.is_file():
        raise InputError(None, str(path), "dataset file not found")
    with h5py.File(path, "r") as h5:
        for name in ("images", "masks", "patient_id", "slice_id"):
            if name not in h5:
                raise InputError(None, str(path), f"missing HDF5 dataset '{name}'")
        split = Split(
            images=np.asarray(h5["images"][()], dtype=np.float32),
            masks=np.asarray(h5["masks"][()], dtype=np.uint8),
            patient_id=_strings(h5["patient_id"]),
            slice_id=np.asarray(h5["slice_id"][()], dtype=np.int64),
            **_attributes(h5, path),
        )
    return _checked(split, path, spatial=2)


def volumes_group(h5: h5py.File, path: Path) -> h5py.Group:
    """The 3D layout (group `volumes/`) of the open split file `path`; a file packed without it
    is an InputError."""
    if "volumes" not in h5:
        raise InputError(
            None,
            str(path),
            "no 3D layout (HDF5 group 'volumes') for a unet3d run: "
            "pack the splits with preprocess.volumes: true",
        )
    return h5["volumes"]


def read_volumes(path: str | Path) -> Split:
    """The 3D layout of one HDF5 split (group `volumes/`): images [p, z, rows, cols, c], masks
    [p, z, rows, cols, m], one patient id per volume."""
    path = Path(path)
    if not path.is_file():
        raise InputError(None, str(path), "dataset file not found")
    with h5py.File(path, "r") as h5:
        group = volumes_group(h5, path)
        for name in ("images", "masks", "patient_id"):
            if name not in group:
                raise InputError(None, str(path), f"missing HDF5 dataset 'volumes/{name}'")
        images = np.asarray(group["images"][()], dtype=np.float32)
        split = Split(
            images=images,
            masks=np.asarray(group["masks"][()], dtype=np.uint8),
            patient_id=_strings(group["patient_id"]),
            slice_id=np.indices(images.shape[:2])[-1],
            **_attributes(h5, path),
        )
    return _checked(split, path, spatial=3, prefix="volumes/")


def read_subjects(paths: list[str | Path], subjects: list[str], volumes: bool = False) -> Split:
    """The samples of `subjects` gathered from several split files (slices, or with `volumes`
    the 3D layout), in file order and, within a file, in the file's row order: a fold's
    training or validation patients, wherever packing put them. The files must share their
    classes and normalisation. A subject found in none of the files is an InputError."""
    read = read_volumes if volumes else read_split
    wanted, parts = set(subjects), []
    for path in paths:
        split = read(path)
        rows = np.isin(split.patient_id, list(wanted))
        parts.append((split, rows))
    found = {p for split, rows in parts for p in split.patient_id[rows].tolist()}
    missing = sorted(wanted - found)
    if missing:
        raise InputError(missing[0], ", ".join(map(str, paths)), "subject not in the split files")
    first = parts[0][0]
    for split, _ in parts[1:]:
        if split.classes != first.classes or split.normalisation != first.normalisation:
            raise InputError(None, split.path, f"classes or normalisation differ from {first.path}")
    spacing = {p: v for split, _ in parts for p, v in split.spacing.items() if p in wanted}
    return Split(
        images=np.concatenate([split.images[rows] for split, rows in parts]),
        masks=np.concatenate([split.masks[rows] for split, rows in parts]),
        patient_id=np.concatenate([split.patient_id[rows] for split, rows in parts]),
        slice_id=np.concatenate([split.slice_id[rows] for split, rows in parts]),
        classes=first.classes,
        normalisation=first.normalisation,
        spacing=spacing,
        path=", ".join(map(str, paths)),
    )


def read_samples(paths: str | Path | list, subjects: list[str] | None = None) -> Split:
    """The slices of one split file, or those of `subjects` among one or more files (a run's
    validation subjects: a fold of cross-validation spans train.h5 and val.h5)."""
    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    if subjects is None:
        if len(paths) != 1:
            raise ValueError("several split files need the subjects to read from them")
        return read_split(paths[0])
    return read_subjects(paths, subjects)


def _attributes(h5: h5py.File, path: Path) -> dict:
    """classes, normalisation and per-patient spacing (from `subject_spacing`, else the common
    `spacing` where every axis is known) of a split file."""
    if "classes" not in h5.attrs:
        raise InputError(None, str(path), "missing HDF5 attribute 'classes'")
    spacing: dict[str, Spacing] = {}
    if "subject_spacing" in h5.attrs:
        spacing = {
            patient: tuple(float(v) for v in values)
            for patient, values in json.loads(h5.attrs["subject_spacing"]).items()
        }
    elif "spacing" in h5.attrs and None not in (common := json.loads(h5.attrs["spacing"])):
        patients = set(_strings(h5["patient_id"]).tolist())
        spacing = dict.fromkeys(patients, tuple(float(v) for v in common))
    return {
        "classes": list(json.loads(h5.attrs["classes"])),
        "normalisation": json.loads(h5.attrs.get("normalisation", "{}")),
        "spacing": spacing,
        "path": str(path),
    }


def _checked(split: Split, path: Path, spatial: int, prefix: str = "") -> Split:
    """`split`, if images and masks agree in samples and `spatial` axes and the masks have one
    channel per class; else an InputError naming the file."""
    n = 1 + spatial
    if split.images.ndim != n + 1 or split.masks.shape[:n] != split.images.shape[:n]:
        raise InputError(
            None,
            str(path),
            f"{prefix}images {split.images.shape} and {prefix}masks {split.masks.shape} disagree",
        )
    if split.masks.shape[-1] != len(split.classes):
        raise InputError(
            None, str(path), f"{split.masks.shape[-1]} mask channels, classes {split.classes}"
        )
    return split


def _strings(dataset: h5py.Dataset) -> np.ndarray:
    return np.asarray(
        [v.decode() if isinstance(v, bytes) else str(v) for v in dataset[()]], dtype=str
    )
