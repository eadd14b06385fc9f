"""Classes and label values: what a mask channel, a network output and a label value mean, for
every stage (the one owner, as nnU-Net's label manager).

Conventions:
- `data.labels` maps class names to label values of the masks (0 is background); packed splits
  hold one 0/1 mask channel per class, in `data.labels` order (`one_hot`);
- a run's label mode (`LABEL_MODES`) decides what its network predicts (`targets`): `merged`,
  one "foreground" class (every data class); `separate` and `per_class`, one class per mask
  channel; output index 0 is always background;
- every evaluation scores the run's classes and "foreground", the union of them, so runs with
  merged and separate labels compare on one class (`class_mapping`);
- a prediction exported as a label map carries the data's label values; a merged run's
  foreground is 1 (`label_values`).
"""

from __future__ import annotations

import numpy as np

FOREGROUND = "foreground"
LABEL_MODES = ("merged", "separate", "per_class")


def one_hot(labels: np.ndarray, classes: dict[str, int]) -> np.ndarray:
    """A label map [...] as uint8 [..., m], one 0/1 channel per class in `classes` order; a
    ValueError names label values that are not background or a class."""
    unknown = np.setdiff1d(np.unique(labels), [0, *classes.values()])
    if unknown.size:
        raise ValueError(f"label values {unknown.tolist()} not in {classes}")
    return np.stack([labels == value for value in classes.values()], axis=-1).astype(np.uint8)


def targets(masks: np.ndarray, classes: list[str], label_mode: str) -> tuple[np.ndarray, list]:
    """Class-index targets [n, rows, cols] (of volumes: [p, z, rows, cols]) of one-hot masks
    [..., m] and the run's foreground class names.

    merged: 1 wherever any class is present (one "foreground" class); separate and per_class:
    1 + the index of the mask channel (channel order = data classes), 0 for background
    (per_class trains one binary model per class on these indices).
    """
    names = run_classes(classes, label_mode)
    present = masks.any(axis=-1)
    if label_mode == "merged":
        return present.astype(np.int64), names
    return np.where(present, masks.argmax(axis=-1) + 1, 0).astype(np.int64), names


def run_classes(classes: list[str], label_mode: str) -> list[str]:
    """The foreground classes a run of `label_mode` predicts from data of `classes`."""
    if label_mode == "merged":
        return [FOREGROUND]
    if label_mode in ("separate", "per_class"):
        return list(classes)
    raise ValueError(f"unknown label mode {label_mode!r}; known: {', '.join(LABEL_MODES)}")


def class_mapping(
    classes_of_run: list[str], class_names_of_data: list[str]
) -> list[tuple[str, list[int], list[int]]]:
    """(class, predicted class indices, mask channels) for each class of the run and the
    foreground: what every evaluation (numpy tables and device counts alike) compares with
    what."""
    all_channels = list(range(len(class_names_of_data)))
    if list(classes_of_run) == [FOREGROUND]:  # merged labels: one class, all data classes
        return [(FOREGROUND, [1], all_channels)]
    unknown = [c for c in classes_of_run if c not in class_names_of_data]
    if unknown:
        raise ValueError(f"run classes {unknown} are not in the data's {class_names_of_data}")
    channels = [class_names_of_data.index(c) for c in classes_of_run]
    pairs = [
        (name, [index], [channel])
        for index, (name, channel) in enumerate(zip(classes_of_run, channels, strict=True), 1)
    ]
    return [*pairs, (FOREGROUND, list(range(1, len(channels) + 1)), channels)]


def label_values(classes_of_run: list[str], labels: dict[str, int]) -> np.ndarray:
    """Lookup table class index → label value of the data (merged foreground → 1)."""
    if list(classes_of_run) == [FOREGROUND]:
        return np.array([0, 1], dtype=np.uint8)
    missing = [c for c in classes_of_run if c not in labels]
    if missing:
        raise ValueError(f"classes {missing} have no label value in {labels}")
    return np.array([0, *(labels[c] for c in classes_of_run)], dtype=np.uint8)
