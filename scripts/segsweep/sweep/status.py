"""`python -m segsweep status`: one table of a sweep while it trains, a row per configuration
(its folds summarised), read from the run folders alone.

Columns: the configuration, its swept values, its state, the furthest epoch its runs' logs reach
("e/E"), the rung it has reached under successive halving ("k of K", else empty), its best
validation score so far (the best value of the task's curve column, `val_dice` or `val_auc`,
over every row of its runs' logs), its selection score once every run is selected (the mean of
its runs' `selected.score`) and a detail.

States, the first that holds: failed (a run's checkpoint index, a rung's, its selection or its
provenance says "failed"); pruned (a rung's decision stopped it: at which rung, and why); done
(every run's checkpoint index is written); at rung k (every run has reached rung k and none has
trained past it: the rung's decision is awaited, or it was promoted and the next rung has not
begun); training (a run has logged an epoch); waiting (none has).

A run's log is its own training log, else, under halving, that of the highest rung it reached
(a rung's log holds every epoch up to it). Reading costs a few small files per run.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from segsweep import layout
from segsweep.config_schema import complete, schema
from segsweep.errors import InputError
from segsweep.sweep.budget import sweep_rungs
from segsweep.sweep.grammar import Run, configurations, load_sweep, sweep_runs
from segsweep.tasks import task_of

STATES = ("failed", "pruned", "done", "at rung", "training", "waiting")
FAILED = "failed"


@dataclass(frozen=True)
class RunProgress:
    """What one run's files say: the furthest epoch its log reaches (0: none), its best value of
    the curve column (NaN: none), whether it has a log, how many rungs it has reached, whether
    its index is written, its failure (its error, "" when unnamed; None: none) and its selection
    score (NaN: not selected)."""

    logged: int
    best: float
    has_log: bool
    rungs: int
    ended: bool
    failure: str | None
    selected: float


def _json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    with open(path) as handle:
        return json.load(handle)


def _failure(record: Mapping[str, Any] | None) -> str | None:
    """The error of a record that says "failed" ("" when it names none); None otherwise."""
    if record is None or record.get("status") != FAILED:
        return None
    return str(record.get("error") or "")


def read_log(path: Path, column: str) -> tuple[int, float]:
    """The last epoch of a training log and the best (highest) value of its `column` (NaN
    when it has none)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    values = [float(row[column]) for row in rows if row.get(column)]
    values = [v for v in values if not math.isnan(v)]
    last = int(rows[-1]["epoch"]) if rows else 0
    return last, max(values, default=math.nan)


def run_progress(results: Path, run: str, column: str, rungs: Sequence[int]) -> RunProgress:
    """One run's progress from its folder in the results folder `results`; `rungs` are the
    epochs of the rungs below the last under halving (none without)."""

    def file(pattern: str, **wildcards: str) -> Path:
        return layout.under(results, pattern, run=run, **wildcards)

    reached = [e for e in rungs if file(layout.RUNG_INDEX, epochs=str(e)).is_file()]
    logs = [file(layout.RUN_LOG)]
    logs += [file(layout.at_rung(layout.RUN_LOG), epochs=str(e)) for e in reversed(reached)]
    log = next((path for path in logs if path.is_file()), None)
    logged, best = read_log(log, column) if log is not None else (0, math.nan)
    records = [_json(file(layout.RUNG_INDEX, epochs=str(e))) for e in reached]
    index, selection = _json(file(layout.RUN_INDEX)), _json(file(layout.SELECTION))
    records += [index, selection, _json(file(layout.RUN_PROVENANCE))]
    failure = next((f for f in map(_failure, records) if f is not None), None)
    selected = ((selection or {}).get("selected") or {}).get("score")
    return RunProgress(
        logged,
        best,
        log is not None,
        len(reached),
        index is not None,
        failure,
        math.nan if selected is None else float(selected),
    )


def decisions(results: Path, rungs: Sequence[int]) -> dict[str, list[tuple[int, str, str]]]:
    """Configuration → (rung k from 1, decision, reason) of every rung decided so far."""
    found: dict[str, list[tuple[int, str, str]]] = {}
    for k, epochs in enumerate(rungs, start=1):
        path = layout.under(results, layout.RUNG_DECISION, epochs=str(epochs))
        if not path.is_file():
            continue
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                found.setdefault(row["configuration"], []).append(
                    (k, row["decision"], row["reason"])
                )
    return found


def _label(progress: RunProgress, epochs: int, rungs: Sequence[int]) -> str:
    """One run's state, for the detail of a configuration whose folds differ."""
    if progress.failure is not None:
        return f"failed: {progress.failure}" if progress.failure else FAILED
    if progress.ended:
        return "done"
    if progress.rungs and progress.logged <= rungs[progress.rungs - 1]:
        return f"at rung {progress.rungs}"
    return f"epoch {progress.logged}/{epochs}" if progress.has_log else "waiting"


def _folds(runs: list[Run], labels: list[str]) -> str:
    """The folds grouped by state ("folds 0, 1: done; fold 2: epoch 7/20"), or nothing when
    there are no folds or all are alike."""
    if runs[0].fold is None or len(set(labels)) == 1:
        return ""
    grouped: dict[str, list[str]] = {}
    for run, label in zip(runs, labels, strict=True):
        grouped.setdefault(label, []).append(str(run.fold))
    return "; ".join(
        f"{'folds' if len(folds) > 1 else 'fold'} {', '.join(folds)}: {label}"
        for label, folds in grouped.items()
    )


def configuration_state(
    runs: list[Run],
    progress: list[RunProgress],
    decided: list[tuple[int, str, str]],
    rungs: Sequence[int],
) -> tuple[str, int | None, str]:
    """A configuration's state, the rung it has reached (None without halving) and the detail
    (see the module docstring); `rungs` are the epochs of every rung under halving (the last is
    train.epochs), none without."""
    epochs = max(int(run.params["epochs"]) for run in runs)
    labels = [_label(p, epochs, rungs) for p in progress]
    folds = _folds(runs, labels)
    reached = min(p.rungs for p in progress)
    pruned = [(k, reason) for k, decision, reason in decided if decision == "pruned"]
    failures = [p.failure for p in progress if p.failure is not None]
    if failures:
        return FAILED, reached if rungs else None, folds or failures[0]
    if pruned:
        k, reason = pruned[0]
        return "pruned", k, f"at rung {k} ({rungs[k - 1]} epochs): {reason}"
    if all(p.ended for p in progress):
        return "done", len(rungs) if rungs else None, folds
    if reached and max(p.logged for p in progress) <= rungs[reached - 1]:
        promoted = any(k == reached and d == "promoted" for k, d, _ in decided)
        next_rung = f"promoted to rung {reached + 1} ({rungs[reached]} epochs)"
        return f"at rung {reached}", reached, next_rung if promoted else "awaiting the decision"
    state = "training" if any(p.has_log for p in progress) else "waiting"
    return state, reached if rungs else None, folds


def _cell(value: Any) -> Any:
    """A swept value as a table cell: lists and mappings as JSON text."""
    return json.dumps(value) if isinstance(value, list | tuple | dict) else value


def sweep_status(
    runs: list[Run],
    results: str | Path,
    curve: str = "val_dice",
    rungs: Sequence[int] = (),
) -> pd.DataFrame:
    """The status table of the sweep `runs` (see the module docstring) from the results folder
    `results`; `curve` is the log column whose highest value is a configuration's best;
    `rungs` the epochs of every rung under successive halving (the last: train.epochs), none
    without."""
    results = Path(results)
    below = list(rungs[:-1])
    decided = decisions(results, below)
    swept = sorted({name for run in runs for name in run.values})
    rows = []
    for configuration, members in configurations(runs).items():
        progress = [run_progress(results, run.run_id, curve, below) for run in members]
        state, rung, detail = configuration_state(
            members, progress, decided.get(configuration, []), rungs
        )
        epochs = max(int(run.params["epochs"]) for run in members)
        scores = [p.selected for p in progress]
        bests = [p.best for p in progress if not math.isnan(p.best)]
        rows.append(
            {
                "configuration": configuration,
                **{name: _cell(members[0].values.get(name)) for name in swept},
                "state": state,
                "epoch": f"{max(p.logged for p in progress)}/{epochs}",
                "rung": "" if rung is None else f"{rung} of {len(rungs)}",
                "best": max(bests, default=math.nan),
                "selected": math.nan if any(map(math.isnan, scores)) else sum(scores) / len(scores),
                "detail": detail,
            }
        )
    columns = ["configuration", *swept, "state", "epoch", "rung", "best", "selected", "detail"]
    return pd.DataFrame(rows, columns=columns)


def table_text(table: pd.DataFrame) -> str:
    """The table as aligned text (scores to four decimals, missing values empty), and a line
    counting the configurations in each state."""

    def shown(value: Any) -> str:
        if isinstance(value, float) and math.isnan(value):
            return ""
        return format(value, ".4g") if isinstance(value, float) else str(value)

    cells = [list(table.columns)]
    for row in table.itertuples(index=False):
        cells.append(
            [
                f"{value:.4f}" if name in ("best", "selected") and shown(value) else shown(value)
                for name, value in zip(table.columns, row, strict=True)
            ]
        )
    widths = [max(len(line[i]) for line in cells) for i in range(len(table.columns))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells
    ]
    states = table["state"].str.replace(r" \d+$", "", regex=True).value_counts()
    counts = ", ".join(f"{states[s]} {s}" for s in STATES if s in states)
    return "\n".join([*lines, "", f"{len(table)} configurations: {counts}"])


def _merged(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`base` updated by `over`, mappings key by key (as Snakemake layers config files)."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def _yaml(path: Path) -> dict[str, Any]:
    with open(path) as handle:
        return yaml.safe_load(handle) or {}


def workflow_config(workdir: Path, configfiles: Sequence[Path]) -> dict[str, Any]:
    """The config as the Snakefile reads it in `workdir`: its config/config.yaml, with `task:
    classification` config/classification.yaml over it, and `configfiles` (as `snakemake
    --configfile`) over both; train and split completed with the schema's defaults and the
    task's."""
    base_file = workdir / "config" / "config.yaml"
    if not base_file.is_file() and not configfiles:
        raise InputError(None, str(base_file), "no config: give --config")
    over: dict[str, Any] = {}
    for path in configfiles:
        over = _merged(over, _yaml(path))
    config = _yaml(base_file) if base_file.is_file() else {}
    task_file = workdir / "config" / "classification.yaml"
    if _merged(config, over).get("task") == "classification" and task_file.is_file():
        config = _merged(config, _yaml(task_file))
    config = _merged(config, over)
    config["train"] = complete(config.get("train") or {}, "train")
    config["split"] = complete(config.get("split") or {}, "split")
    config.setdefault("sweep", schema()["properties"]["sweep"]["default"])
    return task_of(config).with_defaults(config)


def budget_rungs(sweep: Mapping[str, Any], runs: list[Run]) -> list[int]:
    """The epochs of every rung under the sweep's `budget: {method: halving}` (the last:
    train.epochs); none without halving."""
    steps = sweep_rungs(sweep, runs)
    return steps if len(steps) > 1 else []


def main(argv: list[str] | None = None) -> None:
    """Print the status of a sweep: one row per configuration."""
    parser = argparse.ArgumentParser(prog="segsweep status", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--config",
        type=Path,
        action="append",
        default=[],
        help="config file over the working directory's config/config.yaml, as snakemake"
        " --configfile (repeatable)",
    )
    parser.add_argument(
        "--sweep", type=Path, help="sweep file (default: the config's `sweep`, in --workdir)"
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path("."), help="the workflow's working directory"
    )
    parser.add_argument("--csv", action="store_true", help="write CSV instead of a text table")
    args = parser.parse_args(argv)
    config = workflow_config(args.workdir, args.config)
    sweep = load_sweep(args.sweep or args.workdir / config["sweep"])
    runs = sweep_runs(config, sweep)
    curve = task_of(config).curve[0]
    table = sweep_status(runs, args.workdir / layout.RESULTS, curve, budget_rungs(sweep, runs))
    if args.csv:
        table.to_csv(sys.stdout, index=False)
    else:
        print(table_text(table))
