"""What each training run cost: its Snakemake benchmark and provenance read into the runs table
(sums, units, a failed run), configurations' costs over their folds, the device cost a training
job records, and the Pareto front of score against cost (ties, a single run, undefined points)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_analysis import (
    FAILURE,
    SWEEP,
    TRAIN,
    WALL_S,
    fail_run,
    write_benchmark,
    write_fake_results,
)

from segsweep import layout
from segsweep.sweep.analysis import runs_table
from segsweep.sweep.cost import (
    COST_COLUMNS,
    benchmark_cost,
    configuration_costs,
    cost_measure,
    cost_points,
    device_cost,
    pareto_front,
    run_cost,
    train_benchmarks,
)
from segsweep.sweep.grammar import expand_sweep
from segsweep.train import job


def test_the_front_holds_the_points_no_other_beats_on_cost_and_score() -> None:
    cost = [1.0, 2.0, 3.0, 1.5, 4.0]
    score = [0.5, 0.7, 0.9, 0.4, 0.8]  # 1.5 costs more than 1.0 for less; 4.0 more than 3.0
    assert pareto_front(cost, score).tolist() == [True, True, True, False, False]
    # lower is better (a distance): the cheapest point is also the best
    assert pareto_front(cost, score, higher_is_better=False).tolist() == [
        True,
        False,
        False,
        True,
        False,
    ]


def test_ties_on_the_front() -> None:
    cost = [1.0, 1.0, 1.0, 2.0, 2.0]
    score = [0.5, 0.5, 0.4, 0.5, 0.6]
    # the same point twice: both; the same cost, a lower score: beaten; the same score at a
    # higher cost: beaten; a higher score at a higher cost: on it
    assert pareto_front(cost, score).tolist() == [True, True, False, False, True]


def test_a_single_run_is_its_own_front_and_undefined_points_are_on_none() -> None:
    assert pareto_front([3.0], [0.1]).tolist() == [True]
    assert pareto_front(np.array([]), np.array([])).tolist() == []
    front = pareto_front([1.0, math.nan, 2.0, 0.5], [0.5, 0.9, math.nan, math.nan])
    assert front.tolist() == [True, False, False, False]


def test_a_benchmark_sums_its_executions_in_seconds_and_keeps_the_peak_in_mb(
    tmp_path: Path,
) -> None:
    path = tmp_path / "train" / "a.tsv"
    write_benchmark(path, [(10.5, 30.0, 100.0), (4.5, 12.0, 250.0)])
    assert benchmark_cost(path) == {"wall_s": 15.0, "cpu_s": 42.0, "max_rss_mb": 250.0}
    # a job too short for Snakemake to sample writes NA: no CPU time or memory, yet its seconds
    text = path.read_text().splitlines()
    columns = text[0].split("\t")
    row = ["0.8", "0:00:00"] + ["NA"] * (len(columns) - 2)
    path.write_text("\n".join([text[0], "\t".join(row)]) + "\n")
    cost = benchmark_cost(path)
    assert cost["wall_s"] == 0.8 and math.isnan(cost["cpu_s"]) and math.isnan(cost["max_rss_mb"])
    assert all(math.isnan(v) for v in benchmark_cost(tmp_path / "nothing.tsv").values())


def test_a_halved_run_costs_its_rungs_jobs_and_its_own(tmp_path: Path) -> None:
    """Under successive halving a run trains in its rungs' jobs before its own job: the cost is
    theirs together, found beside the run's own benchmark by `train_benchmarks`."""
    own = tmp_path / layout.path(layout.benchmark("train/{run}"), run="a")
    rungs = [
        tmp_path / layout.path(layout.benchmark(layout.RUNG_TRAIN_JOB), run="a", epochs=e)
        for e in ("4", "12")
    ]
    write_benchmark(own, [(1.0, 2.0, 100.0)])
    write_benchmark(rungs[0], [(10.0, 20.0, 300.0)])
    write_benchmark(rungs[1], [(5.0, 8.0, 200.0)])
    write_benchmark(tmp_path / layout.path(layout.benchmark("train/{run}"), run="a-b"), [(9, 9, 9)])
    files = train_benchmarks(tmp_path / layout.BENCHMARKS, ["a"])["a"]
    assert files[0] == own and sorted(files[1:]) == sorted(rungs)
    assert benchmark_cost(files) == {"wall_s": 16.0, "cpu_s": 30.0, "max_rss_mb": 300.0}
    assert all(math.isnan(v) for v in benchmark_cost([tmp_path / "none.tsv", *rungs]).values())


def test_device_cost_comes_from_the_provenance_of_a_cuda_run(tmp_path: Path) -> None:
    cuda, cpu, old = tmp_path / "cuda.json", tmp_path / "cpu.json", tmp_path / "old.json"
    cuda.write_text(json.dumps({"device": "cuda", "device_s": 3600.5, "device_peak_mb": 2048.0}))
    cpu.write_text(json.dumps({"device": "cpu", "device_s": None, "device_peak_mb": None}))
    old.write_text(json.dumps({"device": "cuda"}))  # written before devices were measured
    assert device_cost(cuda) == {"device_s": 3600.5, "device_peak_mb": 2048.0}
    for path in (cpu, old, tmp_path / "nothing.json", None):
        assert all(math.isnan(v) for v in device_cost(path).values())
    assert list(run_cost(None, cuda)) == COST_COLUMNS


def test_the_runs_table_keeps_the_cost_of_a_failed_run(tmp_path: Path) -> None:
    results = write_fake_results(tmp_path)
    fail_run(results, "lr-0.0001")
    runs = expand_sweep(SWEEP, TRAIN)
    ids = [run.run_id for run in runs]
    provenance = {}
    for run_id in ids:
        provenance[run_id] = layout.under(results, layout.RUN_PROVENANCE, run=run_id)
        record = {"device": "cuda", "device_s": WALL_S[run_id] - 60, "device_peak_mb": 900.0}
        provenance[run_id].write_text(json.dumps(record))
    benchmarks = {
        run_id: tmp_path / layout.path(layout.benchmark("train/{run}"), run=run_id)
        for run_id in ids
    }

    def files(pattern: str) -> dict[str, Path]:
        return {run_id: layout.under(results, pattern, run=run_id) for run_id in ids}

    table = runs_table(
        runs, files(layout.SELECTION), files(layout.VAL_PER_PATIENT), benchmarks, provenance
    ).set_index("run_id")
    failed = table.loc["lr-0.0001"]
    assert (failed["status"], failed["error"]) == ("failed", FAILURE)
    assert math.isnan(failed["score"])  # yet it keeps what it cost until it failed
    assert failed[COST_COLUMNS].tolist() == [1800.0, 3600.0, 512.0, 1740.0, 900.0]
    assert table["wall_s"].sum() == sum(WALL_S.values())
    assert cost_measure(table) == "device_s"
    assert cost_measure(table.assign(device_s=[1.0, math.nan, 1.0, 1.0, 1.0])) == "wall_s"


def test_a_configuration_costs_the_sum_of_its_folds_and_their_largest_peak() -> None:
    runs = pd.DataFrame(
        {
            "run_id": ["a_fold-0", "a_fold-1", "b_fold-0", "b_fold-1"],
            "configuration": ["a", "a", "b", "b"],
            "wall_s": [10.0, 20.0, 5.0, 5.0],
            "cpu_s": [30.0, 40.0, 10.0, 10.0],
            "max_rss_mb": [100.0, 300.0, 50.0, 60.0],
            "device_s": [8.0, 18.0, 4.0, math.nan],  # b's second fold on the CPU
            "device_peak_mb": [1000.0, 500.0, 200.0, math.nan],
        }
    )
    costs = configuration_costs(runs).set_index("configuration")
    assert costs.loc["a"].tolist() == [30.0, 70.0, 300.0, 26.0, 1000.0]
    assert costs.loc["b", ["wall_s", "cpu_s", "max_rss_mb"]].tolist() == [10.0, 20.0, 60.0]
    assert costs.loc["b", ["device_s", "device_peak_mb"]].isna().all()
    configurations = pd.DataFrame(
        {"configuration": ["a", "b"], "status": ["ok", "ok"], "score": [0.9, 0.8]}
    )
    points, measure = cost_points(runs, configurations)
    assert measure == "wall_s"  # not every run trained on the GPU
    assert points["hours"].tolist() == pytest.approx([30 / 3600, 10 / 3600])
    assert points["front"].tolist() == [True, True]


def test_a_training_job_records_its_device_cost_on_cuda_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert job.device_cost(torch.device("cpu"), 5.0) == {"device_s": None, "device_peak_mb": None}
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: 3 * 2**20 + 2**19)
    assert job.device_cost(torch.device("cuda"), 12.34567) == {
        "device_s": 12.346,
        "device_peak_mb": 3.5,
    }
