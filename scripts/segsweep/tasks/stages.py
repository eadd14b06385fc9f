"""The stages run by hand whose files differ by task (`python -m segsweep final`, `analysis`,
`figures`, `report`): they read the config's task here and hand the stage what differs."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

from segsweep import layout
from segsweep.cli import add_sweep_options, sweep_options
from segsweep.sweep.grammar import sweep_runs
from segsweep.tasks import check, task_of


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
    runs = [run.run_id for run in sweep_runs(config, sweep)]

    def by_run(pattern: str) -> dict[str, Path]:
        return {run: layout.under(results, pattern, run=run) for run in runs}

    scored = by_run(task.scored(config["selection"]))
    scorer = task.choice_scorer(config)
    write_final(config, sweep, by_run(layout.SELECTION), scored, args.out, scorer)


def analysis(argv: list[str] | None = None) -> None:
    """The task's analysis tables of the run whose results folder is --results."""
    _by_task("analysis", argv)


def figures(argv: list[str] | None = None) -> None:
    """The task's figures of the run whose results folder is --results."""
    _by_task("figures", argv)


def report(argv: list[str] | None = None) -> None:
    """The task's thesis of the run whose results folder is --results."""
    _by_task("report", argv)


def _by_task(stage: str, argv: list[str] | None) -> None:
    """Run `stage` by hand as the task of --config-json runs it: the `main(argv, task)` of the
    task's module (`Task.commands`). Without --config-json (asking for help) the default
    task's."""
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--config-json")
    given = probe.parse_known_args(argv)[0].config_json
    task = check(json.loads(given)) if given else task_of({})
    importlib.import_module(task.commands[stage]).main(argv, task)
