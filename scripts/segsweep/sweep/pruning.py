"""What successive halving did to each configuration, read from the rungs' decisions
(`segsweep.sweep.budget`, one CSV per rung below the last: results/budget/rung-{E}.csv).

Conventions: rungs are numbered from 1 in the order of their epochs; the last rung, at
`train.epochs`, has no decision (its configurations finish). A configuration pruned at rung k
trained to that rung's epochs; every other one (a survivor) to `train.epochs`. Without halving
(`budget.method: none`, or `min_epochs` at least `train.epochs`) there are no decisions, every
configuration is a survivor and the tables built here are not written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from segsweep.sweep.budget import budget_of, sweep_rungs
from segsweep.sweep.grammar import Run, sweep_runs

BUDGET_COLUMNS = ["epochs_trained", "pruned_at"]  # the runs table's, under halving


def rung_epochs(config: Mapping[str, Any], sweep: Mapping[str, Any]) -> list[int]:
    """The epochs of every rung, the last `train.epochs` ([train.epochs] without halving)."""
    return sweep_rungs(sweep, sweep_runs(config, sweep))


def halving(config: Mapping[str, Any], sweep: Mapping[str, Any]) -> bool:
    """Whether the sweep trains by successive halving: it has a rung below `train.epochs`
    (without `method: halving` known without expanding the sweep, which the report asks per
    caption)."""
    return budget_of(sweep)["method"] == "halving" and len(rung_epochs(config, sweep)) > 1


def read_decisions(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Every rung's decision in one table (rung order, then the rung's own order); empty (no
    columns) without any."""
    frames = [pd.read_csv(p, dtype={"configuration": str, "reason": str}) for p in paths]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True).sort_values("rung", kind="stable")


def pruned(decisions: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """Configuration → (rung, its epochs) where it was pruned; survivors are not listed."""
    if decisions.empty:
        return {}
    rows = decisions[decisions["decision"] == "pruned"]
    return {
        str(r.configuration): (int(r.rung), int(r.epochs)) for r in rows.itertuples(index=False)
    }


def first_rung_text(config: Mapping[str, Any], sweep: Mapping[str, Any], n: int, unit: str) -> str:
    """ "all 9 configurations at rung 1, 4 epochs" under halving (`n` of `unit`), else ""."""
    if not halving(config, sweep):
        return ""
    plural = unit if n == 1 else f"{unit}s"
    epochs = rung_epochs(config, sweep)[0]
    return f"all {n} {plural} at rung 1, {epochs} epoch{'' if epochs == 1 else 's'}"


def budget_columns(runs_df: pd.DataFrame, runs: list[Run], decisions: pd.DataFrame) -> pd.DataFrame:
    """The runs table with `epochs_trained` (the epochs of the rung it was pruned at, else its
    `epochs`) and `pruned_at` (that rung's number; empty for survivors) before its cost."""
    stopped = pruned(decisions)
    at = [stopped.get(run.configuration, (None, None)) for run in runs]
    out = runs_df.copy()
    where = list(out.columns).index("wall_s") if "wall_s" in out else len(out.columns)
    out.insert(where, "pruned_at", pd.array([rung for rung, _ in at], dtype="Int64"))
    trained = [
        epochs or int(run.params["epochs"]) for run, (_, epochs) in zip(runs, at, strict=True)
    ]
    out.insert(where, "epochs_trained", trained)
    return out
