"""A split's samples without loading the split: which rows of which files a job uses (`Rows`,
from the files' metadata alone) and a reader of blocks of them (`RowReader`), for training data
larger than memory (`segsweep.train.batches`).

The rows are those `segsweep.io.splits.read_split` / `read_volumes` / `read_subjects` would load,
in the same order (files in order, rows in file order), checked the same way, so a streamed
sample i is the resident sample i. A sample is a slice, or with `volumes` a volume of the 3D
layout. Reading sorted rows that lie close together is one contiguous read (the files are
chunked per sample and lzf-compressed, so a read costs what it decompresses).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import numpy as np

from segsweep.errors import InputError
from segsweep.io.splits import _attributes, _strings

DATASETS = ("images", "masks", "patient_id")


@dataclass(frozen=True)
class Rows:
    """Samples of split files, not loaded: per sample, its file (index into `paths`) and row."""

    paths: tuple[Path, ...]
    file: np.ndarray  # int [n]
    row: np.ndarray  # int [n], increasing within a file
    patient_id: np.ndarray  # str [n]
    classes: list[str]
    normalisation: dict
    image_shape: tuple[int, ...]  # one sample's images: [rows, cols, c] or [z, rows, cols, c]
    mask_shape: tuple[int, ...]
    volumes: bool

    def __len__(self) -> int:
        return len(self.row)

    def subset(self, keep: np.ndarray) -> Rows:
        """The samples where `keep` (bool [n]) is true, in order."""
        return replace(
            self, file=self.file[keep], row=self.row[keep], patient_id=self.patient_id[keep]
        )


def _group(h5: h5py.File, volumes: bool) -> h5py.Group:
    return h5["volumes"] if volumes else h5


def open_rows(
    paths: list[str | Path], subjects: list[str] | None = None, volumes: bool = False
) -> Rows:
    """The rows of `paths` (all of one file, or those of `subjects` among several), checked as
    the readers check them: datasets present, images and masks agreeing, one mask channel per
    class, shared classes and normalisation; a subject found nowhere is an InputError."""
    paths = [Path(p) for p in paths]
    files, rows, patients, first = [], [], [], None
    for i, path in enumerate(paths):
        if not path.is_file():
            raise InputError(None, str(path), "dataset file not found")
        with h5py.File(path, "r") as h5:
            if volumes and "volumes" not in h5:
                raise InputError(
                    None,
                    str(path),
                    "no 3D layout (HDF5 group 'volumes') for a unet3d run: "
                    "pack the splits with preprocess.volumes: true",
                )
            group, prefix = _group(h5, volumes), "volumes/" if volumes else ""
            for name in DATASETS:
                if name not in group:
                    raise InputError(None, str(path), f"missing HDF5 dataset '{prefix}{name}'")
            meta = _attributes(h5, path)
            images, masks = group["images"].shape, group["masks"].shape
            ids = _strings(group["patient_id"])
        spatial = 4 if volumes else 3
        if len(images) != spatial + 1 or masks[:spatial] != images[:spatial]:
            raise InputError(None, str(path), f"{prefix}images {images} and masks {masks} disagree")
        if masks[-1] != len(meta["classes"]):
            raise InputError(None, str(path), f"{masks[-1]} mask channels, {meta['classes']}")
        described = (meta["classes"], meta["normalisation"], images[1:], masks[1:])
        if first is None:
            first = described
        elif described != first:
            raise InputError(
                None, str(path), f"classes, normalisation or shape differ from {paths[0]}"
            )
        keep = np.ones(len(ids), bool) if subjects is None else np.isin(ids, list(subjects))
        files.append(np.full(int(keep.sum()), i))
        rows.append(np.flatnonzero(keep))
        patients.append(ids[keep])
    patient_id = np.concatenate(patients) if patients else np.array([], str)
    missing = sorted(set(subjects or []) - set(patient_id.tolist()))
    if missing:
        raise InputError(missing[0], ", ".join(map(str, paths)), "subject not in the split files")
    classes, normalisation, image_shape, mask_shape = first
    return Rows(
        tuple(paths),
        np.concatenate(files),
        np.concatenate(rows),
        patient_id,
        classes,
        normalisation,
        tuple(image_shape),
        tuple(mask_shape),
        volumes,
    )


class RowReader:
    """Reads images and masks of `Rows` samples, its files opened once (close it, or use it as
    a context manager). Safe to use from one thread at a time."""

    def __init__(self, rows: Rows) -> None:
        self.rows = rows
        self.files = [h5py.File(p, "r") for p in rows.paths]

    def __enter__(self) -> RowReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        for h5 in self.files:
            h5.close()

    def read(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Images (float32) and masks (uint8) of the samples (indices into the rows), in the
        order given: one read per file over the span of its sorted rows when they lie close
        together (as a block of consecutive samples does), else one row at a time."""
        samples = np.asarray(samples, dtype=np.int64)
        rows = self.rows
        images = np.empty((len(samples), *rows.image_shape), np.float32)
        masks = np.empty((len(samples), *rows.mask_shape), np.uint8)
        for i in np.unique(rows.file[samples]):
            at = np.flatnonzero(rows.file[samples] == i)
            wanted = rows.row[samples[at]]
            order = np.argsort(wanted, kind="stable")
            sorted_rows = wanted[order]
            group = _group(self.files[i], rows.volumes)
            low, high = int(sorted_rows[0]), int(sorted_rows[-1]) + 1
            if high - low <= 2 * len(np.unique(sorted_rows)):
                block_images = group["images"][low:high][sorted_rows - low]
                block_masks = group["masks"][low:high][sorted_rows - low]
            else:
                unique, inverse = np.unique(sorted_rows, return_inverse=True)
                block_images = group["images"][unique.tolist()][inverse]
                block_masks = group["masks"][unique.tolist()][inverse]
            images[at[order]] = block_images
            masks[at[order]] = block_masks
        return images, masks
