"""What successive halving spent and saved (`python -m segsweep budget`), from the rungs'
decisions, every run's final train_log.csv and provenance.json, and the survivors' selection at
the full budget:

- results/budget/rungs.csv: one row per rung (rung, epochs, entering, promoted, pruned; at the
  last rung `entering` is the configurations that finished), the run-epochs trained since the
  previous rung (`epochs_trained`, summed over the entering configurations' runs), the measured
  `hours` of those epochs (the logs' `time_s`) and on what `device` ("GPU", "CPU" or "GPU and
  CPU", from provenance.json), then a row "total". The total row alone holds the full-grid
  estimate: `full_epochs` (every run to `train.epochs`), `full_hours` (every run's
  `train.epochs` × its measured mean seconds per epoch; a run without a measured epoch at the
  sweep's mean) and the savings `saving_epochs`, `saving_hours` (full ÷ spent, as ratios).
- results/budget/configurations.csv: per configuration its swept values, the last rung it
  reached and its epochs, the run-epochs and hours it trained, its score at every rung
  (`score_at_<E>`: the decision's; at the last rung the survivors' selection score at the full
  budget, scored as the sweep scores configurations), its `outcome` ("full budget" or "pruned
  at rung k (E epochs)") and the reason of its last decision.
- results/figures/budget.png (SVG and PDF beside): every configuration's validation curve (the
  task's curve column; with folds the mean of its folds per epoch) against epochs, the rungs as
  labelled vertical lines, pruned configurations dashed and ending at their rung, survivors
  solid and named.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from segsweep import layout
from segsweep.cli import add_sweep_options, sweep_options
from segsweep.io.records import read_json, write_csv
from segsweep.numerals import plural
from segsweep.plotting import LINE_COLOUR, level_colours, save
from segsweep.sweep.configurations import Scorer, configuration_table
from segsweep.sweep.grammar import Run, configurations, sweep_runs
from segsweep.sweep.pruning import pruned, read_decisions, rung_epochs
from segsweep.vocabulary import groupable

RUNG_COLUMNS = ["rung", "epochs", "entering", "promoted", "pruned", "epochs_trained", "hours"]
RUNG_COLUMNS += ["device", "full_epochs", "full_hours", "saving_epochs", "saving_hours"]
FULL_BUDGET = "full budget"


@dataclass(frozen=True)
class BudgetInputs:
    """The rungs' decision CSVs (rung order) and, by run id, each run's final train_log.csv,
    provenance.json, selection.json and the validation table that scores a configuration."""

    decisions: list[str | Path]
    logs: Mapping[str, str | Path]
    provenance: Mapping[str, str | Path]
    selections: Mapping[str, str | Path]
    scored: Mapping[str, str | Path]


def epoch_table(logs: Mapping[str, str | Path], curve: str) -> pd.DataFrame:
    """Every logged epoch of every run: run_id, epoch, time_s (seconds) and `curve` as
    "value"; empty (those columns) without any."""
    frames = []
    for run, path in logs.items():
        log = pd.read_csv(path)
        frames.append(
            pd.DataFrame(
                {
                    "run_id": run,
                    "epoch": log["epoch"].astype(int),
                    "time_s": log["time_s"].astype(float),
                    "value": log[curve].astype(float) if curve in log else np.nan,
                }
            )
        )
    columns = ["run_id", "epoch", "time_s", "value"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def device_name(records: list[dict[str, Any]]) -> str:
    """ "GPU", "CPU" or "GPU and CPU": what the runs of `records` (provenance) trained on;
    empty without a record."""
    kinds = {"GPU" if str(r.get("device", "")).startswith("cuda") else "CPU" for r in records}
    return " and ".join(sorted(kinds, key=["GPU", "CPU"].index))


def rung_table(
    runs: list[Run],
    decisions: pd.DataFrame,
    epochs: pd.DataFrame,
    rungs: list[int],
    devices: Mapping[str, str],
) -> pd.DataFrame:
    """The rows of rungs.csv (module docstring); `devices` is each run's "GPU" or "CPU"."""
    grouped = configurations(runs)
    stopped = pruned(decisions)
    rows, previous = [], 0
    for k, stop in enumerate(rungs, start=1):
        if k < len(rungs):
            decided = decisions[decisions["rung"] == k]
            entering = decided["configuration"].astype(str).tolist()
            promoted = int((decided["decision"] == "promoted").sum())
            pruned_here: int | str = int((decided["decision"] == "pruned").sum())
        else:
            entering = [c for c in grouped if c not in stopped]
            promoted, pruned_here = "", ""
        members = [r.run_id for c in entering for r in grouped.get(c, [])]
        spent = epochs[
            epochs["run_id"].isin(members)
            & (epochs["epoch"] > previous)
            & (epochs["epoch"] <= stop)
        ]
        rows.append(
            {
                "rung": k,
                "epochs": stop,
                "entering": len(entering),
                "promoted": promoted,
                "pruned": pruned_here,
                "epochs_trained": len(spent),
                "hours": spent["time_s"].sum() / 3600,
                "device": _devices(devices, members),
            }
        )
        previous = stop
    table = pd.DataFrame(rows, columns=RUNG_COLUMNS[:8])
    full_epochs, full_hours = full_grid(runs, epochs, rungs[-1])
    spent_epochs, spent_hours = int(table["epochs_trained"].sum()), float(table["hours"].sum())
    total = {
        "rung": "total",
        "epochs": rungs[-1],
        "entering": len(grouped),
        "promoted": "",
        "pruned": len(stopped),
        "epochs_trained": spent_epochs,
        "hours": spent_hours,
        "device": _devices(devices, [r.run_id for r in runs]),
        "full_epochs": full_epochs,
        "full_hours": full_hours,
        "saving_epochs": full_epochs / spent_epochs if spent_epochs else np.nan,
        "saving_hours": full_hours / spent_hours if spent_hours else np.nan,
    }
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)[RUNG_COLUMNS]
    return table.astype({"full_epochs": "Int64"})


def _devices(devices: Mapping[str, str], runs: list[str]) -> str:
    kinds = {devices[r] for r in runs if r in devices}
    return " and ".join(sorted(kinds, key=["GPU", "CPU"].index))


def full_grid(runs: list[Run], epochs: pd.DataFrame, full: int) -> tuple[int, float]:
    """(run-epochs, hours) of the full grid: every run to `full` epochs at its measured mean
    seconds per epoch (a run without a measured epoch at the mean over all runs' epochs)."""
    per_epoch = epochs.groupby("run_id")["time_s"].mean()
    overall = float(epochs["time_s"].mean()) if len(epochs) else 0.0
    seconds = sum(full * float(per_epoch.get(r.run_id, overall)) for r in runs)
    return full * len(runs), seconds / 3600


def configuration_budget(
    runs: list[Run],
    decisions: pd.DataFrame,
    epochs: pd.DataFrame,
    rungs: list[int],
    final_scores: Mapping[str, float],
) -> pd.DataFrame:
    """The rows of configurations.csv (module docstring); `final_scores` the survivors' scores
    at the full budget by configuration."""
    stopped = pruned(decisions)
    spent = epochs.groupby("run_id")["time_s"].agg(["size", "sum"])
    rows = []
    for configuration, members in configurations(runs).items():
        ids = [r.run_id for r in members]
        own = decisions[decisions["configuration"] == configuration] if len(decisions) else None
        scores = {f"score_at_{rungs[k - 1]}": np.nan for k in range(1, len(rungs) + 1)}
        reason = ""
        if own is not None and len(own):
            for row in own.itertuples(index=False):
                scores[f"score_at_{int(row.epochs)}"] = float(row.score)
            reason = str(own["reason"].iloc[-1])
        rung, stop = stopped.get(configuration, (len(rungs), rungs[-1]))
        if configuration not in stopped:
            scores[f"score_at_{rungs[-1]}"] = final_scores.get(configuration, np.nan)
        rows.append(
            {
                "configuration": configuration,
                **groupable(members[0].values),
                "last_rung": rung,
                "last_epochs": stop,
                "epochs_trained": int(spent["size"].reindex(ids).fillna(0).sum()),
                "hours": float(spent["sum"].reindex(ids).fillna(0).sum()) / 3600,
                **scores,
                "outcome": FULL_BUDGET
                if configuration not in stopped
                else f"pruned at rung {rung} ({plural(stop, 'epoch')})",
                "reason": reason,
            }
        )
    return pd.DataFrame(rows)


def budget_figure(
    runs: list[Run],
    epochs: pd.DataFrame,
    rungs: list[int],
    survivors: list[str],
    out: Path,
    ylabel: str,
) -> None:
    """Each configuration's validation curve (the mean of its runs per epoch) against epochs:
    pruned ones dashed in grey, ending at their rung, survivors solid in colour and named; the
    rungs as dotted vertical lines labelled "rung k"."""
    fig = Figure(figsize=(6.0, 3.8), layout="tight")
    ax = fig.subplots()
    colours = level_colours(survivors)
    for configuration, members in configurations(runs).items():
        own = epochs[epochs["run_id"].isin([r.run_id for r in members])]
        curve = own.groupby("epoch")["value"].mean().dropna()
        if curve.empty:
            continue
        if configuration in colours:
            ax.plot(curve.index, curve.to_numpy(), color=colours[configuration], linewidth=1.8,
                    label=configuration, zorder=3)  # fmt: skip
        else:
            ax.plot(curve.index, curve.to_numpy(), color="0.55", linewidth=0.9, linestyle="--",
                    alpha=0.8, zorder=2)  # fmt: skip
            ax.plot(curve.index[-1], curve.iloc[-1], marker="x", color="0.45", markersize=4)
    for k, stop in enumerate(rungs, start=1):
        ax.axvline(stop, color=LINE_COLOUR, linestyle=":", linewidth=0.8, zorder=1)
        last = k == len(rungs)  # named left of its line, clear of the legend
        ax.annotate(f"rung {k}", (stop, 1), xycoords=("data", "axes fraction"),
                    xytext=(-2 if last else 2, -10), textcoords="offset points",
                    ha="right" if last else "left", fontsize=7)  # fmt: skip
    handles = [Line2D([], [], color="0.55", linestyle="--", marker="x", label="pruned")]
    handles += [Line2D([], [], color=colours[c], linewidth=1.8, label=c) for c in survivors]
    ax.legend(handles=handles, frameon=False, bbox_to_anchor=(1.01, 1), loc="upper left")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    save(fig, out)


def write_budget(
    config: dict[str, Any],
    sweep: dict[str, Any],
    given: BudgetInputs,
    outputs: Mapping[str, str | Path],
    curve: tuple[str, str],
    scorer: Scorer | None = None,
) -> None:
    """Write rungs.csv, configurations.csv and the figure (`outputs`: "rungs",
    "configurations", "figure"): `curve` the logs' validation column and its name, `scorer`
    the task's score of a configuration (None: the selection's aggregate over patients)."""
    runs = sweep_runs(config, sweep)
    rungs = rung_epochs(config, sweep)
    decisions = read_decisions(given.decisions)
    epochs = epoch_table(given.logs, curve[0])
    devices = {
        run: device_name([read_json(path)])
        for run, path in given.provenance.items()
        if Path(path).is_file()
    }
    stopped = pruned(decisions)
    survivors = [c for c in configurations(runs) if c not in stopped]
    finishing = [r for r in runs if r.configuration in survivors]
    scores = configuration_table(
        finishing, given.selections, given.scored, config["selection"], scorer
    )
    final_scores = dict(zip(scores["configuration"].astype(str), scores["score"], strict=True))
    rung_rows = rung_table(runs, decisions, epochs, rungs, devices)
    write_csv(rung_rows, outputs["rungs"])
    write_csv(configuration_budget(runs, decisions, epochs, rungs, final_scores),
              outputs["configurations"])  # fmt: skip
    budget_figure(runs, epochs, rungs, survivors, Path(outputs["figure"]), f"validation {curve[1]}")
    total = rung_rows.iloc[-1]
    print(
        f"trained {total['epochs_trained']} of {total['full_epochs']} run-epochs, "
        f"{total['hours']:.3g} h of an estimated {total['full_hours']:.3g} h"
    )


def main(argv: list[str] | None = None) -> None:
    """Write what successive halving spent and saved (rungs.csv, configurations.csv and the
    figure) from the run whose results folder is --results."""
    from segsweep.tasks import task_of  # the command asks for its task; write_budget is handed it

    parser = argparse.ArgumentParser(prog="segsweep budget", description=main.__doc__)
    add_sweep_options(parser)
    parser.add_argument("--out-rungs", type=Path, default=Path(layout.BUDGET_RUNGS))
    parser.add_argument(
        "--out-configurations", type=Path, default=Path(layout.BUDGET_CONFIGURATIONS)
    )
    parser.add_argument("--out-figure", type=Path, default=Path(layout.BUDGET_FIGURE))
    args = parser.parse_args(argv)
    config, sweep, results = sweep_options(args)
    task = task_of(config)
    ids = [run.run_id for run in sweep_runs(config, sweep)]

    def by_run(pattern: str) -> dict[str, Path]:
        return {run: layout.under(results, pattern, run=run) for run in ids}

    rungs = rung_epochs(config, sweep)
    given = BudgetInputs(
        decisions=[layout.under(results, layout.RUNG_DECISION, epochs=str(e)) for e in rungs[:-1]],
        logs=by_run(layout.RUN_LOG),
        provenance=by_run(layout.RUN_PROVENANCE),
        selections=by_run(layout.SELECTION),
        scored=by_run(task.scored(config["selection"])),
    )
    outputs = {
        "rungs": args.out_rungs,
        "configurations": args.out_configurations,
        "figure": args.out_figure,
    }
    write_budget(config, sweep, given, outputs, task.curve, task.choice_scorer(config))
