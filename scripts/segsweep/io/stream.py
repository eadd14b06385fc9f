"""A split's samples without loading the split: which rows of which files a job uses (`Rows`,
from the files' metadata alone) and a reader of blocks of them (`RowReader`), for training data
larger than memory (`segsweep.train.batches`); and a split's patients one at a time
(`list_patients`, `read_patients`, `stream_patients`), for selection and evaluation.

The rows are those `segsweep.io.splits.read_split` / `read_volumes` / `read_subjects` would load,
in the same order (files in order, rows in file order), checked the same way, so a streamed
sample i is the resident sample i. A sample is a slice, or with `volumes` a volume of the 3D
layout. Reading sorted rows that lie close together is one contiguous read (the files are
chunked per sample and lzf-compressed, so a read costs what it decompresses).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import numpy as np

from segsweep.errors import InputError
from segsweep.io.splits import Split, _attributes, _checked, _strings, volumes_group

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
            group = volumes_group(h5, path) if volumes else h5
            prefix = "volumes/" if volumes else ""
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
        order given: each run of consecutive rows of a file is one contiguous read (a block of
        consecutive samples, or a whole split, is one read per file)."""
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
            unique, inverse = np.unique(sorted_rows, return_inverse=True)
            runs = np.split(unique, np.flatnonzero(np.diff(unique) != 1) + 1)
            block_images = np.concatenate([group["images"][r[0] : r[-1] + 1] for r in runs])
            block_masks = np.concatenate([group["masks"][r[0] : r[-1] + 1] for r in runs])
            images[at[order]] = block_images[inverse]
            masks[at[order]] = block_masks[inverse]
        return images, masks


# One patient at a time: selection and evaluation go patient by patient
# (`segsweep.evaluate.chunks`), reading a split that does not fit the memory budget
# (`segsweep.memory`) from its files one patient at a time. Packing writes each patient's slices
# as consecutive rows (`write_split`), read with one slice; rows scattered in a file written
# otherwise are read with sorted indices.


@dataclass(frozen=True)
class PatientRows:
    """Where one patient's slices lie: a split file and the patient's rows in it (ascending)."""

    patient: str
    path: str
    rows: np.ndarray  # int64, ascending
    nbytes: int  # its images as float32 and its masks as stored

    def selection(self) -> slice | np.ndarray:
        """The rows as an h5py selection: one slice when they are consecutive (as packed)."""
        start, stop = int(self.rows[0]), int(self.rows[-1]) + 1
        return slice(start, stop) if stop - start == len(self.rows) else self.rows


def list_patients(paths: str | Path | list, subjects: list[str] | None = None) -> list[PatientRows]:
    """The patients of one split file, or those of `subjects` among one or more files, in the
    order `read_samples` yields their rows (files in order, a file's patients by their first
    row), from the files' metadata alone (`open_rows`, checked as the readers check). A patient
    in two files is an InputError: its slices would not be read as one patient's."""
    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    if subjects is None and len(paths) != 1:
        raise ValueError("several split files need the subjects to read from them")
    rows = open_rows(paths, subjects)
    row_bytes = 4 * math.prod(rows.image_shape) + math.prod(rows.mask_shape)  # float32, uint8
    listed = []
    pairs = zip(rows.file.tolist(), rows.patient_id.tolist(), strict=True)
    for file, patient in dict.fromkeys(pairs):
        mine = rows.row[(rows.file == file) & (rows.patient_id == patient)].astype(np.int64)
        listed.append(PatientRows(patient, str(rows.paths[file]), mine, len(mine) * row_bytes))
    found, counts = np.unique([entry.patient for entry in listed], return_counts=True)
    if (counts > 1).any():
        raise InputError(
            str(found[counts > 1][0]), ", ".join(map(str, paths)), "slices in several split files"
        )
    return listed


def read_patients(entries: list[PatientRows], files: dict | None = None) -> Split:
    """The slices of `entries` as one Split, in their order: one patient's (streaming), or all
    of a split's listed patients (resident). `files` (path → (open h5py.File, attributes)) keeps
    the files open across calls; otherwise each file is opened once here."""
    if not entries:
        raise ValueError("no patients to read")
    owned = files is None
    files = {} if files is None else files
    try:
        parts = []
        for entry in entries:
            if entry.path not in files:
                h5 = h5py.File(entry.path, "r")
                files[entry.path] = (h5, _attributes(h5, Path(entry.path)))
            parts.append((entry, *files[entry.path]))
        _, h5, attributes = parts[0]
        n = sum(len(entry.rows) for entry in entries)
        images = np.empty((n, *h5["images"].shape[1:]), dtype=np.float32)
        masks = np.empty((n, *h5["masks"].shape[1:]), dtype=np.uint8)
        slice_id = np.empty(n, dtype=np.int64)
        start = 0
        for entry, h5, _ in parts:
            stop, rows = start + len(entry.rows), entry.selection()
            images[start:stop] = h5["images"][rows]
            masks[start:stop] = h5["masks"][rows]
            slice_id[start:stop] = h5["slice_id"][rows]
            start = stop
    finally:
        if owned:
            for h5, _ in files.values():
                h5.close()
    known = {}  # patient → spacing, of the files read
    for path in dict.fromkeys(entry.path for entry in entries):
        known.update(files[path][1]["spacing"])
    split = Split(
        images=images,
        masks=masks,
        patient_id=np.repeat(
            np.asarray([entry.patient for entry in entries], dtype=str),
            [len(entry.rows) for entry in entries],
        ),
        slice_id=slice_id,
        classes=attributes["classes"],
        normalisation=attributes["normalisation"],
        spacing={
            entry.patient: known[entry.patient] for entry in entries if entry.patient in known
        },
        path=", ".join(dict.fromkeys(entry.path for entry in entries)),
    )
    return _checked(split, Path(split.path), spatial=2)


def stream_patients(entries: list[PatientRows]) -> Iterable[Split]:
    """`read_patients([entry])` for each entry in turn, each file opened once for the pass: a
    split one patient at a time."""
    files: dict = {}
    try:
        for entry in entries:
            yield read_patients([entry], files)
    finally:
        for h5, _ in files.values():
            h5.close()
