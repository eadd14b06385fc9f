"""Analysis of a classification sweep: the sweep's tables as for segmentation, and the final
models' study-level tables of Kaliyugarsan 2019 (Table 5.1, Figs 5.5 and 5.7).

- `runs` (results/summary/runs.csv): one row per run with its swept values, status, selection
  score and epoch, the selected checkpoint's study-level validation AUC, accuracy and kappa
  (`RUN_METRICS`), what its training cost and the error of a failed training. Under successive
  halving (`segsweep.sweep.pruning`) also the epochs each run trained (`epochs_trained`) and the
  rung it was pruned at (`pruned_at`, empty for the runs that reached the last rung); its scores
  and every table of the sweep below are then those of the first rung, the one budget every
  configuration trained to, while the final models' tables keep their full budget.
- `configurations`: `segsweep.sweep.configurations` with the classification scorer: with folds
  a configuration's score is the selection metric of its pooled out-of-fold studies (each
  scored once, by the fold model that never trained on it), its interval a patient bootstrap.
- `hyperparameters`, `pairs`, `best_runs`, `kruskal`, `folds`: `segsweep.sweep.analysis` and
  `segsweep.sweep.stats` on the configurations whose training completed, in the same layout,
  so the report's sweep chapter reads them unchanged.
- per final model (final.csv) and split (`val`: its run's, or with folds its pooled
  out-of-fold, validation predictions; `test`: the final test's), `segsweep.evaluate.diagnostic`:
  `classification_metrics` (every metric with its interval), `study_types` (per study type and
  all), `confusion` and `roc`, all at study level; `segsweep.evaluate.calibration`:
  `calibration` (the ECE with its interval) and `reliability` (the reliability diagram's bins).

Intervals resample patients (`classification.bootstrap` resamples, seeded by `split.seed`).
A final model's validation or test table holding a study of another split (splits.csv) is an
input error: the test set is never used for a choice, nor a development study for the test.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from segsweep import layout
from segsweep.cli import add_sweep_options, sweep_options
from segsweep.errors import InputError
from segsweep.evaluate.calibration import (
    CALIBRATION_COLUMNS,
    RELIABILITY_COLUMNS,
    calibration_table,
    reliability_table,
)
from segsweep.evaluate.diagnostic import (
    CONFUSION_COLUMNS,
    METRICS_COLUMNS,
    ROC_COLUMNS,
    STUDY_TYPE_COLUMNS,
    confusion_table,
    metrics_table,
    roc_table,
    study_type_table,
)
from segsweep.evaluate.predictions import classes_of, pooled_scorer, read_predictions, score
from segsweep.sweep.analysis import (
    best_runs_table,
    completed_configurations,
    hyperparameter_tables,
    kruskal_levels,
    pair_tables,
    pairs_to_tabulate,
    run_rows,
    write_named,
)
from segsweep.sweep.configurations import configuration_table, fold_table
from segsweep.sweep.cost import JobFiles, train_benchmarks
from segsweep.sweep.grammar import Run, configurations, sweep_runs, swept_names
from segsweep.sweep.pruning import budget_columns, halving, read_decisions, rung_epochs

RUN_METRICS = ["score", "selected_epoch", "auc", "accuracy", "kappa"]
VALIDATION_METRICS = ("auc", "accuracy", "kappa")  # of the selected checkpoint, per study
FINAL_SPLITS = ("val", "test")
DEVELOPMENT = {"val": ("train", "val"), "test": ("test",)}  # splits.csv splits of each split
BOOTSTRAP = 1000
OUTPUTS = ("runs", "configurations", *layout.CLASSIFICATION_TABLES)


@dataclass(frozen=True)
class ClassificationInputs:
    """What the analysis reads: per run (by run id) its selection.json, validation
    per_study.csv, the validation table that scores a configuration (`scored`: the one
    final.csv was chosen from: per_study.csv, or per_image.csv at `selection.level: image`),
    provenance.json and its training jobs' benchmark files; splits.csv (no final model's table
    may hold a study of another split); the final models
    (final.csv) and per final model (by its id) its test per_study and per_image.csv (the
    tables are study-level: the images are the figures' gallery). Under successive halving the
    runs' files are those of the first rung, `decisions` the rungs' decision CSVs and
    `final_val_per_study` the final models' runs' validation per_study.csv at the full budget
    (by run id)."""

    selections: Mapping[str, str | Path]
    val_per_study: Mapping[str, str | Path]
    scored: Mapping[str, str | Path]
    splits: str | Path
    final: str | Path
    test_per_study: Mapping[str, str | Path]
    test_per_image: Mapping[str, str | Path]
    provenance: Mapping[str, str | Path] = field(default_factory=dict)
    benchmarks: Mapping[str, JobFiles] = field(default_factory=dict)  # the train jobs'
    decisions: list[str | Path] = field(default_factory=list)
    final_val_per_study: Mapping[str, str | Path] = field(default_factory=dict)

    @classmethod
    def under(
        cls,
        results: str | Path,
        runs: list[str],
        finals: list[str],
        benchmarks: str | Path = layout.BENCHMARKS,
        scored: str = layout.VAL_PER_STUDY,
    ) -> ClassificationInputs:
        """The files of the results folder `results`, the train jobs' benchmark files found
        under `benchmarks` (Snakemake's folder), and `scored` the layout pattern of the table
        that scores a configuration."""

        def by(pattern: str, ids: list[str]) -> dict[str, Path]:
            return {i: layout.under(results, pattern, run=i) for i in ids}

        return cls(
            by(layout.SELECTION, runs),
            by(layout.VAL_PER_STUDY, runs),
            by(scored, runs),
            layout.under(results, layout.SPLITS),
            layout.under(results, layout.FINAL),
            by(layout.TEST_PER_STUDY, finals),
            by(layout.TEST_PER_IMAGE, finals),
            provenance=by(layout.RUN_PROVENANCE, runs),
            benchmarks=train_benchmarks(benchmarks, runs),
        )


def classification_runs_table(
    runs: list[Run],
    selections: Mapping[str, str | Path],
    val_per_study: Mapping[str, str | Path],
    classes: list[str],
    benchmarks: Mapping[str, JobFiles] | None = None,
    provenance: Mapping[str, str | Path] | None = None,
) -> pd.DataFrame:
    """One row per run: swept values, status, selected score and epoch, the selected
    checkpoint's validation AUC, accuracy and kappa over its studies (NaN for a failed run),
    its cost (`segsweep.sweep.cost`) and the error of a failed training."""

    def validation(run: Run) -> dict[str, float]:
        studies = read_predictions(val_per_study[run.run_id])
        return {m: score(studies, classes, m) for m in VALIDATION_METRICS}

    return run_rows(runs, selections, validation, RUN_METRICS, benchmarks, provenance)


def _checked(table: pd.DataFrame, splits: pd.DataFrame, split: str, path: str) -> pd.DataFrame:
    """`table` if every study of it belongs to `split` in splits.csv, else an InputError."""
    allowed = set(splits.loc[splits["split"].isin(DEVELOPMENT[split]), "subject_id"])
    foreign = sorted(set(table["study_id"]) - allowed)
    if foreign:
        raise InputError(
            foreign[0], path, f"{len(foreign)} studies not in the {split} split of splits.csv"
        )
    return table


def final_predictions(
    final: pd.DataFrame, members: Mapping[str, list[str]], given: ClassificationInputs
) -> dict[tuple[str, str], pd.DataFrame]:
    """(final model, split) → its per_study predictions: on validation those of its runs pooled
    (its folds' out-of-fold studies) at their full budget, on test its own."""
    splits = pd.read_csv(given.splits, dtype={"subject_id": str, "split": str})
    val = {**given.val_per_study, **given.final_val_per_study}
    tables = {}
    for model in final["run_id"]:
        for split in FINAL_SPLITS:
            paths = (
                [val[run] for run in members[model]]
                if split == "val"
                else [given.test_per_study[model]]
            )
            frames = [_checked(read_predictions(p), splits, split, str(p)) for p in paths]
            tables[model, split] = pd.concat(frames, ignore_index=True)
    return tables


def _per_model(
    tables: Mapping[tuple[str, str], pd.DataFrame],
    make: Callable[[pd.DataFrame], pd.DataFrame],
    columns: list[str],
) -> pd.DataFrame:
    """One table of `make(table)` per (model, split), with model and split columns first;
    empty with `columns` after them when there are no final models."""
    frames = [
        make(table).assign(model=model, split=split) for (model, split), table in tables.items()
    ]
    first = ["model", "split"]
    if not frames:
        return pd.DataFrame(columns=[*first, *columns])
    table = pd.concat(frames, ignore_index=True)
    return table[[*first, *(c for c in table.columns if c not in first)]]


def write_classification_tables(
    config: dict[str, Any],
    sweep: dict[str, Any],
    given: ClassificationInputs,
    outputs: Mapping[str, str | Path],
) -> None:
    """Write the runs and configurations tables and every table of
    `layout.CLASSIFICATION_TABLES` (`outputs` by name, see `OUTPUTS`) from what the runs and
    the final models wrote."""
    swept = swept_names(sweep)
    runs = sweep_runs(config, sweep)
    selection = config["selection"]
    higher = selection.get("higher_is_better", True)
    n_boot = int((config.get("classification") or {}).get("bootstrap", BOOTSTRAP))
    seed = int((config.get("split") or {}).get("seed") or 0)
    classes = classes_of(read_predictions(given.val_per_study[runs[0].run_id]))
    runs_df = classification_runs_table(
        runs, given.selections, given.val_per_study, classes, given.benchmarks, given.provenance
    )
    if halving(config, sweep):
        runs_df = budget_columns(runs_df, runs, read_decisions(given.decisions))
    scorer = pooled_scorer(classes, selection["metric"], n_boot, seed)
    configurations_df = configuration_table(runs, given.selections, given.scored, selection, scorer)
    completed = completed_configurations(configurations_df)
    final = pd.read_csv(given.final, dtype={"run_id": str})
    members = {c: [r.run_id for r in group] for c, group in configurations(runs).items()}
    studies = final_predictions(final, members, given)
    tables = {
        "runs": runs_df,
        "configurations": configurations_df,
        "hyperparameters": hyperparameter_tables(completed, swept),
        "pairs": pair_tables(completed, pairs_to_tabulate(config, swept, completed)),
        "best_runs": best_runs_table(completed, higher_is_better=higher),
        "kruskal": kruskal_levels(completed, swept, higher),
        "folds": fold_table(runs, given.selections),
        "classification_metrics": _per_model(
            studies, lambda t: metrics_table(t, classes, n_boot, seed), METRICS_COLUMNS
        ),
        "study_types": _per_model(
            studies, lambda t: study_type_table(t, classes, n_boot, seed), STUDY_TYPE_COLUMNS
        ),
        "confusion": _per_model(studies, lambda t: confusion_table(t, classes), CONFUSION_COLUMNS),
        "roc": _per_model(
            studies,
            lambda t: roc_table(t, classes, n_boot, seed),
            ROC_COLUMNS,
        ),
        "calibration": _per_model(
            studies, lambda t: calibration_table(t, classes, n_boot, seed), CALIBRATION_COLUMNS
        ),
        "reliability": _per_model(
            studies, lambda t: reliability_table(t, classes), RELIABILITY_COLUMNS
        ),
    }
    write_named(tables, outputs)


def at_first_rung(
    given: ClassificationInputs,
    config: dict[str, Any],
    sweep: dict[str, Any],
    results: str | Path,
    scored: str,
) -> ClassificationInputs:
    """`given` (the runs' own files under `results`) as successive halving compares them: the
    runs' selections and validation tables at the first rung, the rungs' decisions, and the
    runs' own validation per_study.csv (the full budget) for the final models."""
    rungs = rung_epochs(config, sweep)

    def first(pattern: str) -> dict[str, Path]:
        at = layout.path(layout.at_rung(pattern), epochs=str(rungs[0]))
        return {run: layout.under(results, at, run=run) for run in given.selections}

    return replace(
        given,
        selections=first(layout.SELECTION),
        val_per_study=first(layout.VAL_PER_STUDY),
        scored=first(scored),
        decisions=[layout.under(results, layout.RUNG_DECISION, epochs=str(e)) for e in rungs[:-1]],
        final_val_per_study=given.val_per_study,
    )


def main(argv: list[str] | None, scored_tables: Mapping[str, str]) -> None:
    """Write the runs table, the sweep's tables and the final models' study-level tables of
    the classification run whose results folder is --results (`python -m segsweep analysis`):
    configurations scored from the validation table of `scored_tables` (selection level →
    layout pattern) at the config's selection level."""
    parser = argparse.ArgumentParser(prog="segsweep analysis", description=main.__doc__)
    add_sweep_options(parser)
    parser.add_argument(
        "--benchmarks",
        type=Path,
        default=Path(layout.BENCHMARKS),
        help="Snakemake's benchmarks (the training jobs' cost; without them it is NaN)",
    )
    args = parser.parse_args(argv)
    config, sweep, results = sweep_options(args)
    runs = [run.run_id for run in sweep_runs(config, sweep)]
    finals = pd.read_csv(layout.under(results, layout.FINAL), dtype={"run_id": str})["run_id"]
    scored = scored_tables[config["selection"]["level"]]
    given = ClassificationInputs.under(results, runs, finals.tolist(), args.benchmarks, scored)
    if halving(config, sweep):  # the sweep compares at the first rung, as the workflow does
        given = at_first_rung(given, config, sweep, results, scored)
    outputs = {name: layout.under(results, layout.TABLE, name=name) for name in OUTPUTS}
    outputs["runs"] = layout.under(results, layout.RUNS_TABLE)
    outputs["configurations"] = layout.under(results, layout.CONFIGURATIONS_TABLE)
    write_classification_tables(config, sweep, given, outputs)
