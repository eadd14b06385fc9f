"""The stages whose work differs by task (`python -m segsweep train`, `final`, `analysis`,
`figures`, `report`): they read the task here (the run's, or the config's) and hand the stage
what differs as plain values."""

from __future__ import annotations

import argparse
import importlib
import json
from collections.abc import Callable
from pathlib import Path

from segsweep import layout
from segsweep.cli import add_sweep_options, sweep_options
from segsweep.sweep.grammar import sweep_runs
from segsweep.tasks import check, task_of, task_of_run
from segsweep.tasks.task import Task


def train(argv: list[str] | None = None) -> None:
    """Train one run of the sweep (`segsweep.train.job`) through the trainer of its task: the
    task whose models hold the run's `model` (--hp-json; without it, asking for help, the
    default task's)."""
    from segsweep.train.job import Training, main

    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--hp-json")
    given = probe.parse_known_args(argv)[0].hp_json
    hp = json.loads(given) if given else {}
    task = task_of_run(hp)
    main(argv, Training(task.trainer(), task.log_columns(), task.label_mode(hp)))


def final(argv: list[str] | None = None) -> None:
    """Write the final models' table from every run's selection.json and the validation table
    that scores a configuration (the task's, at the selection level) under --results."""
    from segsweep.sweep.final import write_final

    parser = argparse.ArgumentParser(prog="segsweep final", description=final.__doc__)
    add_sweep_options(parser)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    config, sweep, results = sweep_options(args)
    task = check(config)
    runs = sweep_runs(config, sweep)

    def by_run(pattern: str) -> dict[str, Path]:
        return {run.run_id: layout.under(results, pattern, run=run.run_id) for run in runs}

    scored = by_run(task.scored(config["selection"]))
    scorer = task.choice_scorer(config)
    write_final(config, runs, by_run(layout.SELECTION), scored, args.out, scorer)


def analysis(argv: list[str] | None = None) -> None:
    """The task's analysis tables of the run whose results folder is --results, scored from the
    task's validation table at the selection level."""
    task = _task(argv)
    _main(task, "analysis")(argv, task.scored_tables)


def figures(argv: list[str] | None = None) -> None:
    """The task's figures of the run whose results folder is --results, its training curves of
    the task's metric."""
    task = _task(argv)
    _main(task, "figures")(argv, task.curve)


def report(argv: list[str] | None = None) -> None:
    """The task's thesis of the run whose results folder is --results, from the files the task
    finds there."""
    task = _task(argv)
    _main(task, "report")(argv, task.report_inputs())


def _task(argv: list[str] | None) -> Task:
    """The task of --config-json, checked; without it (asking for help) the default task."""
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--config-json")
    given = probe.parse_known_args(argv)[0].config_json
    return check(json.loads(given)) if given else task_of({})


def _main(task: Task, stage: str) -> Callable[..., None]:
    """The `main` of the task's module that runs `stage` (`Task.commands`)."""
    return importlib.import_module(task.commands[stage]).main
