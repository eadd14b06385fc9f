"""Configurations, the experiments the sweep compares, and their scores.

Without cross-validation a configuration is one run and its score is that run's selection score
(selection.json). With k folds (`split.folds`) a configuration is k runs, each validated on its
own fold at its own selected checkpoint; its score is the configured aggregate (`selection`:
mean or median of `metric` for `class` at `level`) over its pooled out-of-fold scores, so every
labelled development subject is scored exactly once, by the fold model that never trained on it.

A task whose score is not a mean of per-patient values (classification: the AUC of the pooled
out-of-fold studies) hands `configuration_table` a `scorer`: it maps a configuration's runs'
validation tables to (score, ci_low, ci_high, patients).

Status: "ok" when every run of the configuration trained; "failed" when none did; "incomplete"
when some folds failed (its score is then undefined rather than an average over the remaining
folds). Only "ok" configurations take part in tables, tests and the choice of final models.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segsweep.io.records import read_json
from segsweep.sweep.grammar import Run, configurations
from segsweep.sweep.stats import bootstrap_ci
from segsweep.vocabulary import groupable

AGGREGATES = {"mean": np.nanmean, "median": np.nanmedian}
COLUMNS = ["status", "score", "ci_low", "ci_high", "patients", "folds", "fold_mean", "fold_std"]
# a configuration's runs' validation tables → (score, ci_low, ci_high, patients)
Scorer = Callable[[list[str | Path]], tuple[float, float, float, int]]


def _selected_score(selection: dict[str, Any]) -> float:
    score = (selection.get("selected") or {}).get("score")
    return math.nan if score is None else float(score)


def out_of_fold(
    runs: list[Run], tables: Mapping[str, str | Path], selection: dict[str, Any]
) -> pd.DataFrame:
    """The pooled validation rows of `runs` (one configuration's) at the selection's level and
    for its class: columns patient_id (and slice_id), run_id, value (the selection metric)."""
    frames = []
    for run in runs:
        table = pd.read_csv(tables[run.run_id], dtype={"patient_id": str})
        rows = table["class"] == selection["class"]
        if "space" in table:
            rows &= table["space"] == "processed"
        keys = ["patient_id", "slice_id"] if "slice_id" in table else ["patient_id"]
        frame = table.loc[rows, keys].assign(
            run_id=run.run_id, value=table.loc[rows, selection["metric"]]
        )
        frames.append(frame)
    columns = ["patient_id", "run_id", "value"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def configuration_table(
    runs: list[Run],
    selections: Mapping[str, str | Path],
    val_tables: Mapping[str, str | Path] | None = None,
    selection: dict[str, Any] | None = None,
    scorer: Scorer | None = None,
) -> pd.DataFrame:
    """One row per configuration: its id, swept values (lists as display text), status, score
    with a bootstrap 95 % interval over patients, the number of patients it rests on, its
    number of folds and the mean and STD of its per-fold scores. `val_tables` holds each run's
    validation table of the selection level (per_patient or per_slice.csv; per_study or
    per_image.csv with a `scorer`) and `selection` the config section: without them (possible
    without folds only) there is no interval. With a `scorer`, it scores the configuration's
    runs' tables (pooled out-of-fold with folds; without folds the score stays the run's
    selection score and the scorer gives its interval and patients)."""
    rows = []
    for configuration, members in configurations(runs).items():
        chosen = [read_json(selections[run.run_id]) for run in members]
        failed = [c.get("status") == "failed" for c in chosen]
        status = "failed" if all(failed) else "incomplete" if any(failed) else "ok"
        fold_scores = [_selected_score(c) for c in chosen]
        cross_validated = members[0].fold is not None
        if cross_validated and (val_tables is None or (selection is None and scorer is None)):
            raise ValueError("out-of-fold scores need the runs' validation tables")
        if status != "ok" or val_tables is None:
            pooled_score, low, high, patients = math.nan, math.nan, math.nan, 0
        elif scorer is not None:
            pooled_score, low, high, patients = scorer([val_tables[r.run_id] for r in members])
        else:
            pooled_score, low, high, patients = _pooled(members, val_tables, selection)
        if status != "ok":
            score = math.nan
        elif not cross_validated:
            score = fold_scores[0]  # the run's own selection score
        else:
            score = pooled_score
        errors = [c.get("error", "") for c in chosen if c.get("status") == "failed"]
        rows.append(
            {
                "configuration": configuration,
                **groupable(members[0].values),
                "status": status,
                "score": score,
                "ci_low": low,
                "ci_high": high,
                "patients": int(patients),
                "folds": len(members) if members[0].fold is not None else 0,
                "fold_mean": np.nanmean(fold_scores) if len(members) > 1 else math.nan,
                "fold_std": np.nanstd(fold_scores, ddof=1) if len(members) > 1 else math.nan,
                "error": errors[0] if errors else "",
            }
        )
    values = runs[0].values if runs else {}
    return pd.DataFrame(rows, columns=["configuration", *values, *COLUMNS, "error"])


def _pooled(
    runs: list[Run], tables: Mapping[str, str | Path], selection: dict[str, Any]
) -> tuple[float, float, float, int]:
    """(score, ci_low, ci_high, patients) of one configuration's pooled per-patient (or
    per-slice) validation rows: the selection's aggregate of their values, and its bootstrap
    interval over patients."""
    pooled = out_of_fold(runs, tables, selection)
    per_patient = _per_patient(pooled, selection)
    values = pooled["value"].to_numpy(float)
    score = float(AGGREGATES[selection["aggregate"]](values)) if values.size else math.nan
    low, high = bootstrap_ci(per_patient, selection["aggregate"])
    return score, low, high, len(per_patient)


def _per_patient(pooled: pd.DataFrame | None, selection: dict[str, Any] | None) -> np.ndarray:
    """One value per patient of pooled rows: the value itself at patient level, the aggregate
    of the patient's slices at slice level (bootstrap intervals resample patients)."""
    if pooled is None or pooled.empty:
        return np.zeros(0)
    if "slice_id" not in pooled or pooled["slice_id"].isna().all():
        return pooled["value"].to_numpy(float)
    aggregate = AGGREGATES[selection["aggregate"]]
    grouped = pooled.groupby("patient_id")["value"]
    return grouped.agg(lambda v: aggregate(v.to_numpy(float))).to_numpy(float)


def fold_table(runs: list[Run], selections: Mapping[str, str | Path]) -> pd.DataFrame:
    """Per configuration and fold, the fold run's own validation score (cross-validation only;
    without folds, no rows): configuration, fold, run_id, status, score."""
    rows = [
        {
            "configuration": run.configuration,
            "fold": run.fold,
            "run_id": run.run_id,
            "status": (selection := read_json(selections[run.run_id])).get("status", "ok"),
            "score": _selected_score(selection),
        }
        for run in runs
        if run.fold is not None
    ]
    return pd.DataFrame(rows, columns=["configuration", "fold", "run_id", "status", "score"])


def fold_audit(
    runs: list[Run], subjects: Mapping[str, str | Path], splits: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What each fold trained and validated on, from the runs' subjects.json, and the checks a
    reader needs. (audit, checks): audit has one row per fold ("single" without folds): fold,
    train and val (subject counts), train_subjects and val_subjects (the union over the fold's
    runs, which may train on nested subsets); checks has rows check, passed, detail: every run
    of a fold validated on the same subjects, the validation folds are disjoint and together
    cover every labelled development subject, and no test subject trained or validated any
    run."""
    test = set(splits.loc[splits["split"] == "test", "subject_id"].astype(str))
    development = set(splits.loc[splits["split"].isin(["train", "val"]), "subject_id"].astype(str))
    folds: dict[str, dict[str, set[str]]] = {}
    inconsistent, leaked = [], set()
    for run in runs:
        used = {k: set(v) for k, v in read_json(subjects[run.run_id]).items()}
        if not used["train"] and not used["val"]:
            continue  # a failed run that never started
        fold = "single" if run.fold is None else str(run.fold)
        known = folds.setdefault(fold, {"train": set(), "val": set(used["val"])})
        if used["val"] != known["val"]:
            inconsistent.append(run.run_id)
        known["train"] |= used["train"]
        leaked |= (used["train"] | used["val"]) & test
    audit = pd.DataFrame(
        [
            {
                "fold": fold,
                "train": len(sets["train"]),
                "val": len(sets["val"]),
                "train_subjects": " ".join(sorted(sets["train"])),
                "val_subjects": " ".join(sorted(sets["val"])),
            }
            for fold, sets in sorted(folds.items())
        ],
        columns=["fold", "train", "val", "train_subjects", "val_subjects"],
    )
    validated = [sets["val"] for sets in folds.values()]
    seen = set().union(*validated)
    overlap = sorted(s for s in seen if sum(s in v for v in validated) > 1)
    checks = [
        _check("every run of a fold validated on its subjects", inconsistent, "runs differing"),
        _check("validation folds disjoint", overlap, "subjects in two folds"),
        _check("test subjects in no run", sorted(leaked), "test subjects used"),
    ]
    if "single" not in folds:
        missing = sorted(development - seen)
        checks.insert(
            2, _check("validation folds cover the development set", missing, "never validated")
        )
    return audit, pd.DataFrame(checks, columns=["check", "passed", "detail"])


def _check(check: str, offenders: list[str], what: str) -> dict[str, Any]:
    detail = f"{what}: {', '.join(offenders)}" if offenders else "ok"
    return {"check": check, "passed": not offenders, "detail": detail}
