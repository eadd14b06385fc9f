"""Analysis of a sweep: the runs table and the tables of the PET/CT thesis's chapter 5.

- `runs_table`: one row per run with its swept values, status (ok | failed, with the error of a
  failed training), validation scores and what its training cost (`wall_s`, `cpu_s`,
  `max_rss_mb`, `device_s`, `device_peak_mb`: seconds and MB, `segsweep.sweep.cost`)
  (results/summary). Failed runs are listed there, with their cost, and in the report, but left
  out of every statistic below. Under successive halving (`segsweep.sweep.pruning`) the runs
  table also says how many epochs each run trained (`epochs_trained`) and at which rung it was
  pruned (`pruned_at`, empty for the runs that reached the last rung); its scores, the
  configurations table and every table and test of the sweep below are then those of the first
  rung, the one budget every configuration trained to, while the final models' tables keep
  their full budget.
- `hyperparameter_table`: per level of one hyperparameter, Min, Max, STD, Mean, Median and
  No. experiments of the selection score (thesis Tables 5.1–5.7).
- `pair_table` / `pair_grid`: "mean/median (count)" per combination of two hyperparameters
  (Tables 5.8–5.10); combinations without runs are kept with count 0 and shown as "-/- (0)".
- `best_runs_table`: the best runs and their swept values (Tables 5.11, 5.13).
- `final_per_patient`: per patient "mean (median)" of per-slice foreground Dice of each final model
  on validation and test (Tables 5.16, 5.19).
- `slice_distribution`: per final model and split, the distribution of per-slice foreground Dice
  (mean, median, STD, quartiles; Tables 5.14, 5.17).
- `metrics_summary`: per final model, split and space, every per-patient metric as mean, median
  and STD (Tables 5.15, 5.18).
- `class_summary`: the same for every class of the final models (the foreground included), for
  Dice, IoU, HD95 and NSD, so a multi-class dataset gets per-class numbers.
- statistics (`segsweep.sweep.stats`): Kruskal–Wallis per hyperparameter, paired tests of final
  models.

Conventions: the score is the selected checkpoint's validation score (`selection.json`). A run with
an undefined score (NaN) still counts as an experiment but is left out of Min … Median. Levels are
ordered by value (numbers ascending, text alphabetically); long CSVs store them as display text,
because one column holds the levels of hyperparameters of different types
(`segsweep.vocabulary`).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from segsweep import layout
from segsweep.cli import add_sweep_options, sweep_options
from segsweep.io.records import read_json, write_csv
from segsweep.labels import FOREGROUND
from segsweep.sweep.configurations import COLUMNS as CONFIGURATION_COLUMNS
from segsweep.sweep.configurations import configuration_table, fold_audit, fold_table
from segsweep.sweep.cost import COST_COLUMNS, JobFiles, run_cost, train_benchmarks
from segsweep.sweep.grammar import Run, configurations, sweep_runs, swept_names
from segsweep.sweep.pruning import (
    BUDGET_COLUMNS,
    budget_columns,
    halving,
    read_decisions,
    rung_epochs,
)
from segsweep.sweep.ranking import (
    configuration_tests,
    patient_scores,
    rank_stability,
    top_configurations,
)
from segsweep.sweep.stats import (
    bootstrap_ci,
    bootstrap_median_difference,
    kruskal_table,
    paired_tests,
)
from segsweep.vocabulary import METRIC_NAMES, format_level, groupable, level_order

# (final model, split) → its per_slice or per_patient.csv files (with cross-validation, a model's
# validation tables are those of its k fold runs: its out-of-fold scores)
Tables = Mapping[tuple[str, str], list[str | Path]]
RUN_METRICS = ["score", "selected_epoch", "dice_mean", "dice_median", "dice_std"]
RUN_STATUS = ["status", "error"]  # ok | failed, and the failed training's error
STAT_COLUMNS = ["Min", "Max", "STD", "Mean", "Median", "No. experiments"]
PAIR_COLUMNS = ["a", "b", "a_level", "b_level", "mean", "median", "count"]
FINAL_SPLITS = ("val", "test")
SUMMARY_METRICS = list(METRIC_NAMES)
DISTRIBUTION_COLUMNS = [
    "run_id",
    "split",
    "slices",
    "undefined",
    "mean",
    "median",
    "std",
    "q25",
    "q75",
]
SUMMARY_COLUMNS = [
    "run_id",
    "split",
    "space",
    "metric",
    "patients",
    "undefined",
    "mean",
    "median",
    "std",
    "ci_low",
    "ci_high",
]
CLASS_METRICS = ["dice", "iou", "hd95", "nsd"]
CLASS_COLUMNS = [*SUMMARY_COLUMNS[:3], "class", *SUMMARY_COLUMNS[3:]]


def swept_columns(runs_df: pd.DataFrame) -> list[str]:
    """The hyperparameter columns of a runs or configurations table (everything but the ids,
    folds, status and scores)."""
    other = {"run_id", "configuration", "fold", *RUN_METRICS, *RUN_STATUS, *CONFIGURATION_COLUMNS}
    other |= set(COST_COLUMNS) | set(BUDGET_COLUMNS)
    return [c for c in runs_df.columns if c not in other]


def _score(value: Any) -> float:
    return math.nan if value is None else float(value)


def _foreground(table: pd.DataFrame, space: str = "processed") -> pd.DataFrame:
    """Foreground rows in `space` (by default the processed space, the space selection and the
    sweep tables use; tables without a space column are processed)."""
    rows = table["class"] == FOREGROUND
    rows &= table["space"] == space if "space" in table else space == "processed"
    return table[rows]


def runs_table(
    runs: list[Run],
    selections: Mapping[str, str | Path],
    val_per_patient: Mapping[str, str | Path],
    benchmarks: Mapping[str, JobFiles] | None = None,
    provenance: Mapping[str, str | Path] | None = None,
) -> pd.DataFrame:
    """One row per run: swept values, status, selected score and epoch, per-patient validation
    Dice, its cost (`segsweep.sweep.cost`) and the error of a failed training (whose scores are
    then undefined); each run's selection.json, validation per_patient.csv, training job's
    benchmark file and provenance.json given by run id (a run without them costs NaN)."""

    def dice(run: Run) -> dict[str, float]:
        values = _foreground(pd.read_csv(val_per_patient[run.run_id]))["dice"]
        return {
            "dice_mean": values.mean(),
            "dice_median": values.median(),
            "dice_std": values.std(ddof=1),
        }

    return run_rows(runs, selections, dice, RUN_METRICS, benchmarks, provenance)


def run_rows(
    runs: list[Run],
    selections: Mapping[str, str | Path],
    metrics: Callable[[Run], dict[str, float]],
    metric_columns: list[str],
    benchmarks: Mapping[str, JobFiles] | None = None,
    provenance: Mapping[str, str | Path] | None = None,
) -> pd.DataFrame:
    """The runs table of either task: one row per run with its id (and configuration and fold),
    swept values, status, `metric_columns` (score, selected epoch, then what `metrics` of the
    run gives), its cost and the error of a failed training."""
    benchmarks, provenance = benchmarks or {}, provenance or {}
    rows = []
    for run in runs:
        selection = read_json(selections[run.run_id])
        failed = selection.get("status") == "failed"
        selected = selection["selected"] or {}
        folds = {} if run.fold is None else {"configuration": run.configuration, "fold": run.fold}
        rows.append(
            {
                "run_id": run.run_id,
                **folds,
                **groupable(run.values),
                "status": "failed" if failed else "ok",
                "score": _score(selected.get("score")),
                "selected_epoch": selected.get("epoch"),
                **metrics(run),
                **run_cost(benchmarks.get(run.run_id), provenance.get(run.run_id)),
                "error": selection.get("error", "") if failed else "",
            }
        )
    folds = ["configuration", "fold"] if runs and runs[0].fold is not None else []
    values = list(runs[0].values) if runs else []
    columns = ["run_id", *folds, *values, "status", *metric_columns, *COST_COLUMNS, "error"]
    return pd.DataFrame(rows, columns=columns)


def _stats(scores: pd.Series) -> dict[str, float | int]:
    defined = scores.dropna()
    return {
        "Min": defined.min(),
        "Max": defined.max(),
        "STD": defined.std(ddof=1),
        "Mean": defined.mean(),
        "Median": defined.median(),
        "No. experiments": int(scores.size),
    }


def hyperparameter_table(runs_df: pd.DataFrame, name: str, score: str = "score") -> pd.DataFrame:
    """Min, Max, STD (ddof=1), Mean, Median and No. experiments of `score` per level of `name`."""
    rows = []
    for level in level_order(runs_df[name]):
        scores = runs_df.loc[runs_df[name] == level, score]
        rows.append({"level": level, **_stats(scores)})
    return pd.DataFrame(rows, columns=["level", *STAT_COLUMNS])


def hyperparameter_tables(runs_df: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """The tables of all `names` in one long table, levels as display text."""
    tables = []
    for name in names:
        table = hyperparameter_table(runs_df, name)
        table["level"] = table["level"].map(format_level)
        tables.append(table.assign(hyperparameter=name))
    columns = ["hyperparameter", "level", *STAT_COLUMNS]
    return pd.concat(tables)[columns] if tables else pd.DataFrame(columns=columns)


def configured_pairs(config: dict[str, Any], swept: list[str]) -> list[tuple[str, str]]:
    """Pairs from `report.pairs` whose both names are swept; else the first two swept names.

    The fallback also applies when every configured pair names an unswept hyperparameter, so a
    sweep of two or more hyperparameters always gets at least one pairwise table.
    """
    pairs = []
    for pair in (config.get("report") or {}).get("pairs") or []:
        a, b = pair
        if a in swept and b in swept and a != b and (a, b) not in pairs:
            pairs.append((a, b))
    if not pairs and len(swept) >= 2:
        pairs.append((swept[0], swept[1]))
    return pairs


def level_effect(runs_df: pd.DataFrame, name: str) -> float:
    """Effect size of one hyperparameter: the range of its levels' mean scores (NaN if < 2)."""
    means = runs_df.groupby(name)["score"].mean().dropna()
    return float(means.max() - means.min()) if len(means) >= 2 else math.nan


def pairs_to_tabulate(
    config: dict[str, Any], swept: list[str], runs_df: pd.DataFrame
) -> list[tuple[str, str]]:
    """The configured pairs, then the two hyperparameters with the largest effect (if new)."""
    pairs = [
        (a, b)
        for a, b in (config.get("report") or {}).get("pairs") or []
        if a in swept and b in swept and a != b
    ]
    pairs = list(dict.fromkeys(pairs))
    effects = {name: level_effect(runs_df, name) for name in swept}
    ranked = sorted((n for n in swept if not math.isnan(effects[n])), key=lambda n: -effects[n])
    if len(ranked) < 2:
        ranked = swept
    if len(ranked) >= 2:
        top = (ranked[0], ranked[1])
        if top not in pairs and top[::-1] not in pairs:
            pairs.append(top)
    return pairs


def hue_partner(name: str, swept: list[str], pairs: list[tuple[str, str]]) -> str | None:
    """The hyperparameter colouring the jitter plot of `name`: its partner in the first pair
    containing it, else the next swept name (cyclically); None when nothing else is swept."""
    for a, b in pairs:
        if name in (a, b):
            return b if name == a else a
    others = [s for s in swept if s != name]
    if not others:
        return None
    if name not in swept:
        return others[0]
    return swept[(swept.index(name) + 1) % len(swept)]


def pair_table(runs_df: pd.DataFrame, a: str, b: str, score: str = "score") -> pd.DataFrame:
    """mean, median and count of `score` for every combination of the levels of `a` and `b`."""
    rows = []
    for a_level in level_order(runs_df[a]):
        for b_level in level_order(runs_df[b]):
            cell = runs_df[(runs_df[a] == a_level) & (runs_df[b] == b_level)][score]
            rows.append(
                {
                    "a_level": a_level,
                    "b_level": b_level,
                    "mean": cell.mean(),
                    "median": cell.median(),
                    "count": int(cell.size),
                }
            )
    return pd.DataFrame(rows, columns=["a_level", "b_level", "mean", "median", "count"])


def pair_cell(mean: float, median: float, count: int, digits: int = 3) -> str:
    """One "mean/median (count)" cell; "-" for an undefined mean or median (no runs)."""

    def number(x: float) -> str:
        return "-" if x is None or pd.isna(x) else f"{x:.{digits}f}"

    return f"{number(mean)}/{number(median)} ({int(count)})"


def pair_grid(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """The thesis layout of a pair table: levels of a as rows, of b as columns, cells as text."""
    a_levels = list(dict.fromkeys(table["a_level"].map(format_level)))
    b_levels = list(dict.fromkeys(table["b_level"].map(format_level)))
    grid = pd.DataFrame(pair_cell(math.nan, math.nan, 0), index=a_levels, columns=b_levels)
    for row in table.itertuples(index=False):
        cell = pair_cell(row.mean, row.median, row.count, digits)
        grid.loc[format_level(row.a_level), format_level(row.b_level)] = cell
    return grid


def pair_tables(runs_df: pd.DataFrame, pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """All pair tables in one long table (columns a, b, a_level, b_level, mean, median, count)."""
    tables = []
    for a, b in pairs:
        table = pair_table(runs_df, a, b)
        table["a_level"] = table["a_level"].map(format_level)
        table["b_level"] = table["b_level"].map(format_level)
        tables.append(table.assign(a=a, b=b))
    return pd.concat(tables)[PAIR_COLUMNS] if tables else pd.DataFrame(columns=PAIR_COLUMNS)


def best_runs_table(
    runs_df: pd.DataFrame, n: int = 5, higher_is_better: bool = True
) -> pd.DataFrame:
    """The n best runs (or configurations: rows with a `configuration` id) by score (undefined
    scores last, ties to the smaller id), with the score's interval and the patients it rests
    on where the table has them."""
    key = "configuration" if "configuration" in runs_df else "run_id"
    ranked = runs_df.assign(_undefined=runs_df["score"].isna()).sort_values(
        ["_undefined", "score", key], ascending=[True, not higher_is_better, True]
    )
    extra = [c for c in ("ci_low", "ci_high", "patients", "fold_mean", "fold_std") if c in runs_df]
    best = ranked.head(n)[[key, *swept_columns(runs_df), "score", *extra]]
    best = best.reset_index(drop=True).rename(columns={"configuration": "run_id"})
    best.insert(0, "rank", range(1, len(best) + 1))
    return best


def final_per_patient(final: pd.DataFrame, per_slice: Tables) -> pd.DataFrame:
    """Per patient mean and median of per-slice foreground Dice of each final model and split.

    Validation slices come from the run's own evaluation, test slices from the final stage; slices
    with an undefined Dice (reference and prediction both empty) are left out of both statistics.
    """
    tables = []
    for run_id in final["run_id"]:
        for split in FINAL_SPLITS:
            slices = _foreground(read_tables(per_slice[run_id, split], run_id))
            stats = slices.groupby("patient_id", sort=True)["dice"].agg(["mean", "median"])
            tables.append(stats.reset_index().assign(run_id=run_id, split=split))
    columns = ["patient_id", "run_id", "split", "mean", "median"]
    return pd.concat(tables)[columns] if tables else pd.DataFrame(columns=columns)


def read_tables(paths: list[str | Path], model: str) -> pd.DataFrame:
    """Tables of one final model (its folds' out-of-fold tables, or one table) as one table
    whose run_id is the model's id."""
    frames = [pd.read_csv(path, dtype={"patient_id": str}) for path in paths]
    return pd.concat(frames, ignore_index=True).assign(run_id=model)


def _final_tables(final: pd.DataFrame, files: Tables) -> dict[tuple[str, str], pd.DataFrame]:
    """(model, split) → the model's table of `files` (its per_slice or per_patient.csv): every
    final model's on both splits, then any other model `files` holds (an external method's, on
    test only)."""
    keys = [(run_id, split) for run_id in final["run_id"] for split in FINAL_SPLITS]
    keys += [key for key in files if key not in set(keys)]
    return {(model, split): read_tables(files[model, split], model) for model, split in keys}


def slice_distribution(final: pd.DataFrame, files: Tables) -> pd.DataFrame:
    """Distribution of per-slice foreground Dice per final model and split; slices with an
    undefined Dice (both empty) are counted in `undefined` and left out of the statistics."""
    rows = []
    for (run_id, split), table in _final_tables(final, files).items():
        dice = _foreground(table)["dice"]
        defined = dice.dropna()
        rows.append(
            [
                run_id,
                split,
                len(dice),
                int(dice.isna().sum()),
                defined.mean(),
                defined.median(),
                defined.std(ddof=1),
                defined.quantile(0.25),
                defined.quantile(0.75),
            ]
        )
    return pd.DataFrame(rows, columns=DISTRIBUTION_COLUMNS)


def _spaces(table: pd.DataFrame) -> pd.Series:
    """The space of each row; tables written before native scoring are all processed."""
    return table["space"] if "space" in table else pd.Series("processed", index=table.index)


def _over_patients(values: pd.Series) -> list[float | int]:
    """Patients, undefined ones, and mean, median and STD (ddof=1) of the defined values, and
    the bootstrap 95 % interval of the mean."""
    defined = values.dropna()
    return [
        len(values),
        int(values.isna().sum()),
        defined.mean(),
        defined.median(),
        defined.std(ddof=1),
        *bootstrap_ci(defined.to_numpy(float)),
    ]


def metrics_summary(final: pd.DataFrame, files: Tables) -> pd.DataFrame:
    """Per final model, split and space: every per-patient foreground metric as mean, median and
    STD over patients, with the number of patients where it is undefined."""
    rows = []
    for (run_id, split), table in _final_tables(final, files).items():
        table = table[table["class"] == FOREGROUND]
        for space, group in table.groupby(_spaces(table), sort=True):
            for metric in SUMMARY_METRICS:
                if metric in group:
                    rows.append([run_id, split, space, metric, *_over_patients(group[metric])])
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def class_summary(final: pd.DataFrame, files: Tables) -> pd.DataFrame:
    """Per final model, split, space and class of its per_patient.csv (classes in the table's
    order, the foreground included): Dice, IoU, HD95 and NSD as mean, median and STD over
    patients, with the number of patients where the metric is undefined (the class absent from
    both)."""
    rows = []
    for (run_id, split), table in _final_tables(final, files).items():
        classes = list(dict.fromkeys(table["class"]))
        for space, group in table.groupby(_spaces(table), sort=True):
            for name in classes:
                in_class = group[group["class"] == name]
                for metric in CLASS_METRICS:
                    if metric in in_class and len(in_class):
                        values = in_class[metric]
                        rows.append([run_id, split, space, name, metric, *_over_patients(values)])
    return pd.DataFrame(rows, columns=CLASS_COLUMNS)


NATIVE_TEST = "test-native"  # final_tests' split of the comparison with external methods


def final_tests(final: pd.DataFrame, files: Tables) -> pd.DataFrame:
    """Paired tests of the final models on per-patient foreground Dice (processed space); with
    an external method among `files`, also the final models and the external methods on test
    in native space (split `test-native`), the one space they share."""
    tables = _final_tables(final, files)
    external = any(model not in set(final["run_id"]) for model, _ in tables)
    frames = []
    for split, space in [*((s, "processed") for s in FINAL_SPLITS), (NATIVE_TEST, "native")]:
        if space == "native" and not external:
            continue
        wanted = "test" if split == NATIVE_TEST else split
        scores = pd.concat(
            [
                _foreground(t, space)[["patient_id", "run_id", "dice"]]
                for (_, s), t in tables.items()
                if s == wanted
            ]
            or [pd.DataFrame(columns=["patient_id", "run_id", "dice"])]
        )
        frames.append(paired_tests(scores.rename(columns={"dice": "value"}), split))
    return pd.concat(frames, ignore_index=True)


def kruskal_levels(runs_df: pd.DataFrame, swept: list[str], higher_is_better: bool) -> pd.DataFrame:
    """`kruskal_table` of the swept hyperparameters with its best and worst levels as display
    text (empty where there are too few levels to compare)."""
    table = kruskal_table(runs_df, swept, higher_is_better)
    return table.assign(best=table["best"].map(_level_text), worst=table["worst"].map(_level_text))


def _level_text(value: Any) -> str:
    """A level as display text; no level (too few to compare) as empty text."""
    return "" if value is None else format_level(value)


def ensemble_vs_fold(final: pd.DataFrame, ensemble: Tables, best_fold: Tables) -> pd.DataFrame:
    """Per final model (cross-validated): per-patient foreground Dice on test (processed space)
    of its fold ensemble and of its best fold, each mean with its bootstrap interval, and the
    median of the paired per-patient differences (ensemble − best fold) with its interval."""
    columns = ["run_id", "patients", "ensemble", "ensemble_low", "ensemble_high"]
    columns += ["best_fold", "best_fold_low", "best_fold_high"]
    columns += ["median_difference", "ci_low", "ci_high"]
    rows = []
    for run_id in final["run_id"]:
        if (run_id, "test") not in best_fold:
            continue
        scores = [
            _foreground(read_tables(files[run_id, "test"], run_id)).set_index("patient_id")["dice"]
            for files in (ensemble, best_fold)
        ]
        paired = pd.concat(scores, axis=1, keys=["ensemble", "best"]).dropna()
        difference = (paired["ensemble"] - paired["best"]).to_numpy(float)
        rows.append(
            [
                run_id,
                len(paired),
                paired["ensemble"].mean(),
                *bootstrap_ci(paired["ensemble"].to_numpy(float)),
                paired["best"].mean(),
                *bootstrap_ci(paired["best"].to_numpy(float)),
                *bootstrap_median_difference(difference),
            ]
        )
    return pd.DataFrame(rows, columns=columns)


@dataclass(frozen=True)
class AnalysisInputs:
    """What the analysis reads: per run (by run id) its selection.json, per_patient.csv,
    subjects.json, provenance.json and its training job's benchmark file, the validation table
    that scores a configuration (`scored`: the one final.csv was chosen from, per_patient.csv,
    or per_slice.csv at `selection.level: slice`), and its per_slice.csv
    (every run's at `selection.level: slice`, else at least the final models' runs');
    splits.csv; the final models (final.csv) and per final model (by its id) its test tables
    (`test_*`: of its fold ensemble with folds) and, with folds, those of its best fold
    (`best_*`); per external method (final.external, by name) its native-space test table.
    Under successive halving the runs' files are those of the first rung, `decisions` the rungs'
    decision CSVs and `final_val_per_patient` the final models' runs' validation per_patient.csv
    at the full budget (by run id)."""

    selections: Mapping[str, str | Path]
    val_per_patient: Mapping[str, str | Path]
    val_per_slice: Mapping[str, str | Path]
    subjects: Mapping[str, str | Path]
    splits: str | Path
    final: str | Path
    test_per_slice: Mapping[str, str | Path]
    test_per_patient: Mapping[str, str | Path]
    scored: Mapping[str, str | Path]
    best_per_slice: Mapping[str, str | Path] = field(default_factory=dict)
    best_per_patient: Mapping[str, str | Path] = field(default_factory=dict)
    external: Mapping[str, str | Path] = field(default_factory=dict)  # name → its test table
    provenance: Mapping[str, str | Path] = field(default_factory=dict)
    benchmarks: Mapping[str, JobFiles] = field(default_factory=dict)  # the train jobs'
    decisions: list[str | Path] = field(default_factory=list)
    final_val_per_patient: Mapping[str, str | Path] = field(default_factory=dict)

    @classmethod
    def under(
        cls,
        results: str | Path,
        runs: list[str],
        finals: list[str],
        folds: bool,
        benchmarks: str | Path = layout.BENCHMARKS,
        scored: str = layout.VAL_PER_PATIENT,
    ):
        """The files of the run whose results folder is `results`, the train jobs' benchmark
        files found under `benchmarks` (Snakemake's folder), and `scored` the layout pattern of
        the table that scores a configuration."""

        def by(pattern: str, ids: list[str]) -> dict[str, Path]:
            return {i: layout.under(results, pattern, run=i) for i in ids}

        best = finals if folds else []
        return cls(
            by(layout.SELECTION, runs),
            by(layout.VAL_PER_PATIENT, runs),
            by(layout.VAL_PER_SLICE, runs),
            by(layout.RUN_SUBJECTS, runs),
            layout.under(results, layout.SPLITS),
            layout.under(results, layout.FINAL),
            by(layout.TEST_PER_SLICE, finals),
            by(layout.TEST_PER_PATIENT, finals),
            by(scored, runs),
            by(layout.BEST_FOLD_PER_SLICE, best),
            by(layout.BEST_FOLD_PER_PATIENT, best),
            provenance=by(layout.RUN_PROVENANCE, runs),
            benchmarks=train_benchmarks(benchmarks, runs),
        )


def final_tables(
    models: dict[str, list[str]],
    val: Mapping[str, str | Path],
    test: Mapping[str, str | Path],
) -> dict[tuple[str, str], list[str | Path]]:
    """(final model, split) → its table files: on validation those of its runs (`models`: final
    model → its run ids; its folds' out-of-fold tables), on test its own."""
    tables: dict[tuple[str, str], list[str | Path]] = {}
    for model, runs in models.items():
        tables[model, "val"] = [val[run] for run in runs]
        tables[model, "test"] = [test[model]]
    return tables


def write_tables(
    config: dict[str, Any],
    sweep: dict[str, Any],
    given: AnalysisInputs,
    outputs: Mapping[str, str | Path],
) -> None:
    """Write the runs and configurations tables (`outputs["runs"]`, `outputs["configurations"]`)
    and every table of `layout.TABLES` (`outputs` by name) from what the runs and the final
    models wrote."""
    swept = swept_names(sweep)
    runs = sweep_runs(config, sweep)
    selection = config["selection"]
    higher = selection["higher_is_better"]
    runs_df = runs_table(
        runs, given.selections, given.val_per_patient, given.benchmarks, given.provenance
    )
    if halving(config, sweep):
        runs_df = budget_columns(runs_df, runs, read_decisions(given.decisions))
    configurations_df = configuration_table(runs, given.selections, given.scored, selection)
    completed = completed_configurations(configurations_df)
    final = pd.read_csv(given.final)
    members = {c: [r.run_id for r in group] for c, group in configurations(runs).items()}
    models = {model: members[model] for model in final["run_id"]}
    reported = config["final"]["model"] == "best_fold" and bool(given.best_per_slice)
    test_slices = given.best_per_slice if reported else given.test_per_slice
    test_patients = given.best_per_patient if reported else given.test_per_patient
    per_slice = final_tables(models, given.val_per_slice, test_slices)
    final_val = {**given.val_per_patient, **given.final_val_per_patient}  # their full budget
    per_patient = final_tables(models, final_val, test_patients)
    per_patient |= {(name, "test"): [path] for name, path in given.external.items()}
    top = top_configurations(completed, higher)
    scores = patient_scores(runs, top, given.val_per_patient, selection)
    ranking, frequencies = rank_stability(scores, selection["aggregate"], higher)
    audit, checks = fold_audit(runs, given.subjects, pd.read_csv(given.splits, dtype=str))
    tables = {
        "runs": runs_df,
        "configurations": configurations_df,
        "hyperparameters": hyperparameter_tables(completed, swept),
        "pairs": pair_tables(completed, pairs_to_tabulate(config, swept, completed)),
        "best_runs": best_runs_table(completed, higher_is_better=higher),
        "final_per_patient": final_per_patient(final, per_slice),
        "slice_distribution": slice_distribution(final, per_slice),
        "metrics_summary": metrics_summary(final, per_patient),
        "class_summary": class_summary(final, per_patient),
        "kruskal": kruskal_levels(completed, swept, higher),
        "final_tests": final_tests(final, per_patient),
        "folds": fold_table(runs, given.selections),
        "fold_audit": audit,
        "fold_checks": checks,
        "ranking": ranking,
        "rank_frequencies": frequencies,
        "configuration_tests": configuration_tests(scores),
        "ensemble_vs_fold": ensemble_vs_fold(
            final,
            final_tables(models, given.val_per_patient, given.test_per_patient),
            final_tables(models, given.val_per_patient, given.best_per_patient)
            if given.best_per_patient
            else {},
        ),
    }
    write_named(tables, outputs)


def completed_configurations(configurations_df: pd.DataFrame) -> pd.DataFrame:
    """The configurations whose training did not fail, the population of every statistic;
    the others are named on stdout."""
    completed = configurations_df[configurations_df["status"] == "ok"].reset_index(drop=True)
    left_out = configurations_df.loc[configurations_df["status"] != "ok", "configuration"]
    if len(left_out):
        print(f"left out of the statistics, their training failed: {', '.join(left_out)}")
    return completed


def write_named(tables: Mapping[str, pd.DataFrame], outputs: Mapping[str, str | Path]) -> None:
    """Write every table to its output (by name), saying so."""
    for name, table in tables.items():
        write_csv(table, outputs[name])
        print(f"wrote {outputs[name]} ({len(table)} rows)")


def main(argv: list[str] | None, scored_tables: Mapping[str, str]) -> None:
    """Write the runs table and the hyperparameter, pair, best-run and final-model tables of
    the run whose results folder is --results (`python -m segsweep analysis`): configurations
    scored from the validation table of `scored_tables` (selection level → layout pattern) at
    the config's selection level."""
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
    runs = sweep_runs(config, sweep)
    finals = pd.read_csv(layout.under(results, layout.FINAL))["run_id"].astype(str).tolist()
    folds = any(run.fold is not None for run in runs)
    ids = [run.run_id for run in runs]
    scored = scored_tables[config["selection"]["level"]]
    given = AnalysisInputs.under(results, ids, finals, folds, args.benchmarks, scored)
    if halving(config, sweep):  # the sweep compares at the first rung (as the workflow does)
        rungs = rung_epochs(config, sweep)

        def first(pattern: str) -> dict[str, Path]:
            at = layout.path(layout.at_rung(pattern), epochs=str(rungs[0]))
            return {i: layout.under(results, at, run=i) for i in ids}

        given = replace(
            given,
            selections=first(layout.SELECTION),
            val_per_patient=first(layout.VAL_PER_PATIENT),
            scored=first(scored),
            decisions=[
                layout.under(results, layout.RUNG_DECISION, epochs=str(e)) for e in rungs[:-1]
            ],
            final_val_per_patient=given.val_per_patient,
        )
    outputs = {name: layout.under(results, layout.TABLE, name=name) for name in layout.TABLES}
    outputs["runs"] = layout.under(results, layout.RUNS_TABLE)
    outputs["configurations"] = layout.under(results, layout.CONFIGURATIONS_TABLE)
    write_tables(config, sweep, given, outputs)
