"""Display words every table, figure and the report share: metric names, how a hyperparameter
level is written and ordered, what a run's score is.

Levels are written as text in long CSVs, where one column holds the levels of hyperparameters of
different types (`format_level`); they are ordered by value, numbers ascending and text
alphabetically (`level_order`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

METRIC_NAMES = {
    "dice": "Dice",
    "iou": "IoU",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "precision": "precision",
    "accuracy": "accuracy",
    "f2": "F2",
    "hd95": "HD95 (mm)",
    "assd": "ASSD (mm)",
    "nsd": "NSD",
    "volume_ref_ml": "reference volume (mL)",
    "volume_pred_ml": "predicted volume (mL)",
    "auc": "ROC AUC",
    "f1": "F1",
    "kappa": "Cohen's κ",
}


def format_level(value: Any) -> str:
    """Display text of a hyperparameter level: 1e-05 → 0.00001, True → true, [a, b] → a+b."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return "none"
        return np.format_float_positional(float(value), trim="-")
    if isinstance(value, list | tuple):
        return "+".join(format_level(v) for v in value)
    if value is None:
        return "none"
    return str(value)


def groupable(values: dict[str, Any]) -> dict[str, Any]:
    """Hyperparameter values with lists (e.g. `inputs`) as their display text, so a table of
    runs can be grouped on them."""
    return {k: format_level(v) if isinstance(v, list) else v for k, v in values.items()}


def level_order(values: pd.Series) -> list[Any]:
    """The distinct levels of a column, sorted by value (by text when types are mixed or the
    levels are lists, such as `inputs`)."""
    levels = list({format_level(v): v for v in values.tolist()}.values())
    try:
        return sorted(levels)
    except TypeError:
        return sorted(levels, key=format_level)


def score_label(selection: Mapping[str, Any]) -> str:
    """What a run's score is when it aggregates a metric per patient (or slice) of one class,
    e.g. "mean per-patient Dice (foreground)"."""
    metric = METRIC_NAMES.get(selection["metric"], selection["metric"])
    return f"{selection['aggregate']} per-{selection['level']} {metric} ({selection['class']})"


def pooled_score_label(selection: Mapping[str, Any]) -> str:
    """What a run's score is when it is one metric of the predictions pooled at the selection
    level, e.g. "study-level ROC AUC"."""
    metric = METRIC_NAMES.get(selection["metric"], selection["metric"])
    return f"{selection['level']}-level {metric}"


def model_label(run_id: str, group: str) -> str:
    """A final model named with why it was chosen, e.g. "dice (overall)"."""
    return f"{run_id} ({group})" if group else run_id
