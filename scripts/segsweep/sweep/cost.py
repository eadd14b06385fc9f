"""What each training run cost, and which runs no other beats on both cost and score.

The cost columns of the runs table (results/summary/runs.csv), per run:
- `wall_s`, `cpu_s`: wall-clock and CPU seconds of its training job (Snakemake's benchmark file,
  `s` and `cpu_time`, summed over its rows: every row is one execution of the job);
- `max_rss_mb`: its peak resident memory (`max_rss`, MB of 2^20 bytes, the largest row);
- `device_s`, `device_peak_mb`: seconds it trained on the GPU and the peak memory torch
  allocated there (MB), from its provenance.json (`segsweep.train.job`); NaN when it trained on
  the CPU, and every column NaN where its file is not there (a stage run by hand without
  Snakemake's benchmarks).
A run whose training failed keeps what it cost until it failed.

A configuration (with folds, k runs) costs the sum of its runs (the largest peak memory). The
training cost the thesis plots and sums is device time when every run trained on the GPU, else
wall-clock time (`cost_measure`). The Pareto front (`pareto_front`) holds the points no other
point beats: none costs at most as much and scores at least as well, and better in one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from segsweep import layout
from segsweep.io.records import read_json

COST_COLUMNS = ["wall_s", "cpu_s", "max_rss_mb", "device_s", "device_peak_mb"]
PEAKS = {"max_rss_mb", "device_peak_mb"}  # maxima over a configuration's runs; the rest add up
MEASURES = {"device_s": "GPU-hours", "wall_s": "wall-clock hours"}  # what the thesis counts


def _number(value: object) -> float:
    """A measured value as a float; missing ones (None, Snakemake's "NA") as NaN."""
    number = pd.to_numeric(value, errors="coerce")
    return math.nan if pd.isna(number) else float(number)


# a run's training jobs' benchmark files: its own job's first, then (under successive halving)
# its rungs' jobs'
JobFiles = str | Path | Sequence[str | Path]


def train_benchmarks(folder: str | Path, runs: list[str]) -> dict[str, list[Path]]:
    """Run id → its training jobs' benchmark files under `folder` (Snakemake's benchmarks):
    its own job's, then its rungs' jobs' that ran."""
    own, rung = layout.benchmark("train/{run}"), layout.benchmark(layout.RUNG_TRAIN_JOB)

    def files(run: str) -> list[Path]:
        found = layout.under(folder, rung, base=layout.BENCHMARKS, run=run, epochs="*")
        rungs = sorted(found.parent.glob(found.name))
        return [layout.under(folder, own, base=layout.BENCHMARKS, run=run), *rungs]

    return {run: files(run) for run in runs}


def benchmark_cost(path: JobFiles | None) -> dict[str, float]:
    """wall_s, cpu_s and max_rss_mb of one run's training from Snakemake's benchmark TSV of its
    job, or of each of its jobs (under successive halving its rungs' and its own: their rows
    add up); NaN without its own job's file (the first)."""
    paths = [path] if path is None or isinstance(path, str | Path) else list(path)
    if not paths or paths[0] is None or not Path(paths[0]).is_file():
        return {"wall_s": math.nan, "cpu_s": math.nan, "max_rss_mb": math.nan}
    tables = [pd.read_csv(p, sep="\t") for p in paths if Path(p).is_file()]
    table = pd.concat(tables, ignore_index=True).apply(pd.to_numeric, errors="coerce")
    return {
        "wall_s": _number(table["s"].sum(min_count=1)),
        "cpu_s": _number(table["cpu_time"].sum(min_count=1)),
        "max_rss_mb": _number(table["max_rss"].max()),
    }


def device_cost(path: str | Path | None) -> dict[str, float]:
    """device_s and device_peak_mb of one run from its provenance.json (NaN on the CPU, for a
    record written before they were recorded, or without the file)."""
    record = read_json(path) if path is not None and Path(path).is_file() else {}
    return {key: _number(record.get(key)) for key in ("device_s", "device_peak_mb")}


def run_cost(benchmark: JobFiles | None, provenance: str | Path | None) -> dict[str, float]:
    """The cost columns of one run (`COST_COLUMNS`)."""
    return {**benchmark_cost(benchmark), **device_cost(provenance)}


def configuration_costs(runs_df: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (its `configuration` id, or the run id without folds) with
    the cost columns summed over its runs (peak memory: their maximum; NaN if any run's is)."""
    key = runs_df["configuration"] if "configuration" in runs_df else runs_df["run_id"]
    grouped = runs_df[COST_COLUMNS].groupby(key.astype(str).rename("configuration"), sort=False)
    costs = {c: grouped[c].agg(_total, peak=c in PEAKS) for c in COST_COLUMNS}
    return pd.DataFrame(costs).reset_index()


def _total(values: pd.Series, peak: bool) -> float:
    """A configuration's cost from its runs': the largest peak or the sum; NaN if one is."""
    if values.isna().any():
        return math.nan
    return float(values.max() if peak else values.sum())


def cost_measure(runs_df: pd.DataFrame) -> str:
    """The column the training cost is counted in: `device_s` when every run has one (all
    trained on the GPU), else `wall_s`."""
    devices = runs_df["device_s"]
    return "device_s" if len(devices) and devices.notna().all() else "wall_s"


def pareto_front(cost: np.ndarray, score: np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """Which points lie on the Pareto front of low cost and good score: no other point costs
    at most as much and scores at least as well, and is better in one of the two. Equal points
    are all on it; a point with an undefined cost or score is on none."""
    cost, score = np.asarray(cost, float), np.asarray(score, float)
    gain = score if higher_is_better else -score
    defined = ~(np.isnan(cost) | np.isnan(gain))
    front = np.zeros(len(cost), bool)
    best, best_cost = -math.inf, math.nan
    for i in np.lexsort((-gain, cost)):  # cheapest first, the better of equal costs first
        if not defined[i]:
            continue
        if gain[i] > best:
            best, best_cost = gain[i], cost[i]
            front[i] = True
        elif gain[i] == best and cost[i] == best_cost:
            front[i] = True  # the same point again
    return front


def cost_points(
    runs_df: pd.DataFrame, configurations_df: pd.DataFrame, higher_is_better: bool = True
) -> tuple[pd.DataFrame, str]:
    """The score-against-cost points of the thesis, one per configuration whose training
    completed (status ok): its id, score, training cost in `hours` of the measure
    (`cost_measure`) and whether it lies on the Pareto front; and the measure."""
    measure = cost_measure(runs_df)
    seconds = configuration_costs(runs_df).set_index("configuration")[measure]
    done = configurations_df[configurations_df["status"] == "ok"]
    points = pd.DataFrame(
        {"configuration": done["configuration"].astype(str), "score": done["score"].astype(float)}
    ).reset_index(drop=True)
    points["hours"] = points["configuration"].map(seconds / 3600).astype(float)
    points["front"] = pareto_front(points["hours"], points["score"], higher_is_better)
    return points, measure
