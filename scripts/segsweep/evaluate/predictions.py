"""The prediction tables of the classification task, per image and per study, and the score of
one metric on them (checkpoint selection).

- per_image.csv (`IMAGE_COLUMNS`): image_id, study_id, patient_id, study_type, path, true (class
  name), p_<class> for every class (probabilities summing to 1), predicted (class name).
- per_study.csv (`STUDY_COLUMNS`): study_id, patient_id, study_type, n_images, true, p_<class>,
  predicted, threshold. Binary: p_<positive> is the mean (`how="mean"`, the MURA baseline) or the
  max (`how="max"`: one abnormal image makes its study abnormal) of its images' p_<positive>,
  p_<negative> = 1 − that. K > 2 classes: the mean of each class, or with "max" the max of each
  class renormalised to sum to 1.
- A study's true label is its images' label (mixed labels raise ValueError naming the study).
- Binary prediction: positive (the last class) iff p_<positive> >= threshold, the same threshold
  for studies and their images, chosen on validation (`diagnostic.choose_threshold`). With K > 2
  classes the prediction is the most probable class and the threshold is NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from segsweep.errors import ConfigError
from segsweep.evaluate.diagnostic import (
    METRIC_ROWS,
    bootstrap,
    choose_threshold,
    encode,
    metric_statistic,
    multiclass_metrics,
)

METRICS = METRIC_ROWS  # what selection may score: auc, accuracy, sensitivity, … , kappa
IDS = ("image_id", "study_id", "patient_id", "study_type", "path")
STUDY_IDS = ("study_id", "patient_id", "study_type")
HOW = ("mean", "max")
TEXT = {c: str for c in (*IDS, "true", "predicted")}  # read as text, whatever they look like


def probability_columns(classes: Sequence[str]) -> list[str]:
    return [f"p_{name}" for name in classes]


def positive_column(classes: Sequence[str]) -> str:
    """The probability column of the positive class (the last one): "p_abnormal"."""
    return f"p_{classes[-1]}"


def image_columns(classes: Sequence[str]) -> list[str]:
    return [*IDS, "true", *probability_columns(classes), "predicted"]


def study_columns(classes: Sequence[str]) -> list[str]:
    return [*STUDY_IDS, "n_images", "true", *probability_columns(classes), "predicted", "threshold"]


def classes_of(table: pd.DataFrame) -> list[str]:
    """The class names of a prediction table, in class order (its p_<class> columns)."""
    return [column[2:] for column in table.columns if column.startswith("p_")]


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A per_image or per_study.csv with its ids and class names as text (no study type: "")."""
    table = pd.read_csv(path, dtype=TEXT)
    if "study_type" in table:
        table["study_type"] = table["study_type"].fillna("")
    return table


def image_table(
    ids: Mapping[str, Sequence[str] | np.ndarray],
    true: np.ndarray,
    probabilities: np.ndarray,
    classes: Sequence[str],
) -> pd.DataFrame:
    """One row per image: its ids (`ids` holds every column of `IDS`, [N] each), true class name
    (`true`: class indices [N]) and class probabilities (`probabilities` [N, K]); `predicted` is
    "" until `apply_threshold`."""
    probabilities = np.asarray(probabilities, dtype=float)
    true = np.asarray(true, dtype=int)
    k = len(classes)
    if probabilities.ndim != 2 or probabilities.shape != (true.size, k):
        raise ValueError(f"probabilities must be [{true.size}, {k}], not {probabilities.shape}")
    if true.size and (true.min() < 0 or true.max() >= k):
        raise ValueError(f"class indices must lie in 0 … {k - 1}")
    missing = [c for c in IDS if c not in ids]
    if missing:
        raise ValueError(f"image ids lack {', '.join(missing)}")
    table = pd.DataFrame({c: np.asarray(ids[c], dtype=object) for c in IDS})
    table["true"] = np.asarray(classes, dtype=object)[true]
    for column, values in zip(probability_columns(classes), probabilities.T, strict=True):
        table[column] = values
    table["predicted"] = ""
    return table[image_columns(classes)]


def study_table(per_image: pd.DataFrame, classes: Sequence[str], how: str = "mean") -> pd.DataFrame:
    """One row per study (in order of first image) from its images' rows (see the module for
    `how`); `predicted` is "" and `threshold` NaN until `apply_threshold`."""
    if how not in HOW:
        raise ConfigError("classification.study_probability", how, " or ".join(HOW))
    columns = probability_columns(classes)
    groups = per_image.groupby("study_id", sort=False)
    for column in ("true", "patient_id"):
        counts = groups[column].nunique()
        if (counts > 1).any():
            study = counts.index[counts > 1][0]
            found = sorted(
                per_image.loc[per_image["study_id"] == study, column].astype(str).unique()
            )
            raise ValueError(f"study {study}: its images have different {column}: {found}")
    table = groups[["patient_id", "study_type", "true"]].first()
    table.insert(2, "n_images", groups.size())
    if len(classes) == 2:
        positive = groups[columns[-1]].agg(how)
        table[columns[0]], table[columns[1]] = 1.0 - positive, positive
    else:
        probabilities = groups[columns].agg(how)
        if how == "max":
            probabilities = probabilities.div(probabilities.sum(axis=1), axis=0)
        table[columns] = probabilities
    table["predicted"] = ""
    table["threshold"] = math.nan
    return table.reset_index()[study_columns(classes)]


def _predicted(table: pd.DataFrame, classes: Sequence[str], threshold: float) -> np.ndarray:
    """Class names: positive iff p_<positive> >= threshold (binary), else the most probable."""
    columns = probability_columns(classes)
    names = np.asarray(classes, dtype=object)
    if len(classes) == 2:
        return names[(table[columns[-1]].to_numpy(float) >= threshold).astype(int)]
    return names[np.argmax(table[columns].to_numpy(float), axis=1)]


def apply_threshold(
    per_image: pd.DataFrame, per_study: pd.DataFrame, classes: Sequence[str], threshold: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Copies of both tables with `predicted` at `threshold` (binary; K > 2: the most probable
    class) and the per-study `threshold` column (NaN for K > 2)."""
    threshold = float(threshold) if len(classes) == 2 else math.nan
    per_image = per_image.assign(predicted=_predicted(per_image, classes, threshold))
    per_study = per_study.assign(
        predicted=_predicted(per_study, classes, threshold), threshold=threshold
    )
    return per_image, per_study


def score(table: pd.DataFrame, classes: Sequence[str], metric: str) -> float:
    """One metric of `METRICS` on a per_study (or per_image) table with `predicted` filled."""
    if metric not in METRICS:
        raise ConfigError("selection.metric", metric, ", ".join(METRICS))
    arrays = encode(table, list(classes))
    return multiclass_metrics(arrays["true"], arrays["predicted"], arrays["score"], len(classes))[
        metric
    ]


def positives(table: pd.DataFrame, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(truth [N] bool: the positive class, p_<positive> [N]) of a prediction table."""
    truth = table["true"].astype(str).to_numpy() == str(classes[-1])
    return truth, table[positive_column(classes)].to_numpy(float)


def prediction_tables(
    ids: Mapping[str, Sequence[str] | np.ndarray],
    true: np.ndarray,
    probabilities: np.ndarray,
    classes: Sequence[str],
    how: str = "mean",
    threshold: str | float = "youden",
    validation: pd.DataFrame | Sequence[pd.DataFrame] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per_image, per_study) of a split at its decision threshold: a number as is, or "youden"
    chosen on the `validation` per_study tables (pooled), or on this split's studies when
    `validation` is None (it IS the validation split)."""
    per_image = image_table(ids, true, probabilities, classes)
    per_study = study_table(per_image, classes, how)
    if validation is None:
        chosen_on = per_study
    elif isinstance(validation, pd.DataFrame):
        chosen_on = validation
    else:
        chosen_on = pd.concat(list(validation), ignore_index=True)
    value = choose_threshold(*positives(chosen_on, classes), threshold)
    return apply_threshold(per_image, per_study, classes, value)


def pooled_scorer(
    classes: Sequence[str], metric: str, n_boot: int, seed: int
) -> Callable[[list[str | Path]], tuple[float, float, float, int]]:
    """A configuration's score from its runs' validation per_study (or per_image) files, pooled
    (with folds, every study once, by the fold model that never trained on it): (`metric`, its
    patient-bootstrap 95 % interval, the number of patients), for `configuration_table`."""

    def scorer(paths: list[str | Path]) -> tuple[float, float, float, int]:
        table = pd.concat([read_predictions(path) for path in paths], ignore_index=True)
        value = score(table, classes, metric)
        low, high = bootstrap(table, metric_statistic(table, list(classes), metric), n_boot, seed)
        return value, low, high, int(table["patient_id"].nunique())

    return scorer
