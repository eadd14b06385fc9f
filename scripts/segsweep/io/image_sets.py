"""The packed image sets of the classification task: one HDF5 file per split
(results/datasets/{split}.h5), written by `segsweep.preprocess.images` and read by training,
selection and the final test.

Layout of a file (N images, every image resized and padded to S × S pixels):
- `images` float32 [N, S, S]: one grey channel, z-scored per image (zero mean, unit SD);
- `label` int16 [N]: the class index, the position of the image's class in `classes`;
- `image_id`, `study_id`, `patient_id`, `study_type`, `path`: UTF-8 strings [N] (`study_type`
  is "" where the dataset has none, `path` the image file as the manifest named it);
- attributes `task` ("classification"), `classes` (JSON list of class names, ordered by their
  value in `data.labels`: the last one is the positive class of binary metrics) and `size` (S).

Rows are ordered by patient, study and image id, so a study's images are consecutive. The split
unit of `splits.csv` is the study (its `subject_id` is the study id), so a run's subjects (a
fold's, with cross-validation) select studies among the files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import h5py
import numpy as np

from segsweep.errors import InputError

TEXT = ("image_id", "study_id", "patient_id", "study_type", "path")
TASK = "classification"


@dataclass(frozen=True)
class ImageSet:
    """Images [N, S, S] float32, class indices [N] and the text columns of `TEXT` ([N] object
    arrays of str), and the class names (index → name)."""

    images: np.ndarray
    label: np.ndarray
    image_id: np.ndarray
    study_id: np.ndarray
    patient_id: np.ndarray
    study_type: np.ndarray
    path: np.ndarray
    classes: list[str]

    def __len__(self) -> int:
        return len(self.label)

    def rows(self, index: np.ndarray) -> ImageSet:
        """The images at `index` (a boolean mask or positions), in that order."""
        arrays = {f.name: getattr(self, f.name)[index] for f in fields(self) if f.name != "classes"}
        return ImageSet(**arrays, classes=self.classes)

    def of_studies(self, studies: Iterable[str]) -> ImageSet:
        """The images of `studies`, in file order."""
        return self.rows(np.isin(self.study_id, np.asarray(list(studies), dtype=object)))


def write_image_set(
    path: str | Path,
    images: np.ndarray,
    label: np.ndarray,
    text: dict[str, Sequence[str]],
    classes: list[str],
) -> None:
    """Write one split (`text` holds every column of `TEXT`); rows are sorted by patient, study
    and image id first. An empty split is written with shape [0, S, S]."""
    keys = ("image_id", "study_id", "patient_id")  # lexsort: the last key sorts first
    order = np.lexsort([np.asarray(text[c], dtype=str) for c in keys])
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must be [N, S, S], not {images.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.h5")
    strings = h5py.string_dtype("utf-8")
    with h5py.File(tmp, "w") as h5:
        h5.create_dataset("images", data=images[order], chunks=_chunks(images.shape))
        h5.create_dataset("label", data=np.asarray(label, dtype=np.int16)[order])
        for column in TEXT:
            values = np.asarray(text[column], dtype=object)[order]
            h5.create_dataset(column, data=values.astype(str).tolist(), dtype=strings)
        h5.attrs["task"] = TASK
        h5.attrs["classes"] = json.dumps(list(classes))
        h5.attrs["size"] = images.shape[1]
    tmp.replace(path)


def _chunks(shape: tuple[int, ...]) -> tuple[int, ...] | None:
    return (min(shape[0], 64), shape[1], shape[2]) if shape[0] else None


def read_image_set(
    paths: str | Path | Sequence[str | Path], studies: Iterable[str] | None = None
) -> ImageSet:
    """The images of one split file, or of several concatenated in the order given (a fold's
    studies lie in train.h5 and val.h5), optionally only those of `studies`. The files must
    agree on classes and size; a study asked for and found in none of them is an error."""
    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    if not paths:
        raise ValueError("no image set file given")
    parts, classes, size = [], None, None
    for file in paths:
        with h5py.File(file, "r") as h5:
            if h5.attrs.get("task") != TASK:
                raise InputError(
                    None, str(file), "not a packed image set of the classification task"
                )
            own = json.loads(h5.attrs["classes"])
            if classes is not None and (own != classes or int(h5.attrs["size"]) != size):
                raise InputError(None, str(file), f"classes or size differ from {paths[0]}")
            classes, size = own, int(h5.attrs["size"])
            columns = {
                c: np.array(
                    [s.decode() if isinstance(s, bytes) else s for s in h5[c][()]], dtype=object
                )
                for c in TEXT
            }
            label = h5["label"][()].astype(np.int64)
            wanted = np.ones(len(label), bool)
            if studies is not None:
                wanted = np.isin(columns["study_id"], np.asarray(list(studies), dtype=object))
            positions = np.flatnonzero(wanted)
            images = (
                h5["images"][positions] if len(positions) else np.zeros((0, size, size), np.float32)
            )
            parts.append((images, label[positions], {c: v[positions] for c, v in columns.items()}))
    found = ImageSet(
        images=np.concatenate([p[0] for p in parts]).astype(np.float32, copy=False),
        label=np.concatenate([p[1] for p in parts]),
        **{c: np.concatenate([p[2][c] for p in parts]) for c in TEXT},
        classes=classes,
    )
    if studies is not None:
        missing = sorted(set(studies) - set(found.study_id))
        if missing:
            raise InputError(None, str(paths[0]), f"studies not in the image sets: {missing[:5]}")
    return found
