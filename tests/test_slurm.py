"""The tiny run went through `--profile slurm`, all the way to the report, on a real single-node
SLURM cluster (tests/slurm_cluster.sh: munged, slurmctld, slurmd, two fake GPUs): the session's
`tiny_run` (tests/conftest.py), whose outputs test_workflow checks.

Skipped only where SLURM is not installed and CI is not set (the tiny run is then local); in CI
a missing SLURM fails the tiny run.
"""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import TinyRun, run_on_slurm, slurm_job_records
from runs import SLURM_MISSING, configure, seed
from tiny import TINY_CONFIG, TINY_SWEEP

from segsweep import layout

pytestmark = pytest.mark.slurm

SUBJECTS = 9  # tests/tiny.py
RUNS = [
    "default",
    "labels-separate",
    "labels-separate_loss-cross-entropy",
    "loss-cross-entropy",
]


@pytest.fixture(scope="module")
def run(tiny_run: TinyRun) -> TinyRun:
    if tiny_run.executor != "slurm":
        pytest.skip(f"SLURM not installed: {', '.join(SLURM_MISSING)}")
    return tiny_run


def test_the_report_is_built_through_slurm(run: TinyRun) -> None:
    for name in ["thesis.html", "thesis.pdf"]:
        assert (run.root / "results/report" / name).stat().st_size > 0, name
    for each in RUNS:
        assert (run.root / "results/runs" / each / "selection.json").is_file(), each
    assert "submitted with SLURM jobid" in run.output
    assert run.slurm_jobs["report"], "the report was a SLURM job"


def test_each_training_run_is_a_slurm_job_holding_one_gpu(run: TinyRun) -> None:
    jobs = run.slurm_jobs["train"]
    assert sorted(job["log_folder"] for job in jobs.values()) == RUNS  # one folder per run id
    for job in jobs.values():
        assert job["JobState"] == "COMPLETED", job
        assert job["WorkDir"] == str(run.root), job
        assert job["TresPerJob"] == "gres:gpu:1", job
        assert job["CpusPerTres"] == "gres:gpu:1", job  # cpus_per_gpu = threads = 1


def group_jobs(run: TinyRun, group: str) -> dict[str, dict[str, str]]:
    """The SLURM jobs of a group (logs under group_<group>_<its rules>/)."""
    return {
        job_id: job
        for name, jobs in run.slurm_jobs.items()
        if name.startswith(f"group_{group}_")
        for job_id, job in jobs.items()
    }


def test_other_jobs_run_on_slurm_without_a_gpu(run: TinyRun) -> None:
    for rule in ["subject", "pack", "select", "final_test", "report"]:  # n4: in group `subject`
        jobs = run.slurm_jobs.get(rule) or group_jobs(run, rule)
        assert jobs, rule
        for job in jobs.values():
            assert job["JobState"] == "COMPLETED", job
            assert "gpu" not in job.get("TresPerJob", ""), job


def test_per_subject_preprocessing_goes_to_slurm_grouped(run: TinyRun) -> None:
    """Nine subjects, up to ten per submission (slurm/config.yaml group-components): each group
    of per-subject rules takes fewer submissions than there are subjects (Snakemake forms a
    group job of the subjects whose jobs are ready together, and of one set of rules: the
    unlabelled subjects have no mask jobs), and none of its rules is submitted on its own."""
    grouped = {
        "check": ["cohort_subject", "ingest_check"],
        "subject": ["ingest_image", "ingest_mask", "n4", "crop_centre"],
        "crop": ["crop_image", "crop_mask"],
    }
    for group, rules in grouped.items():
        assert 0 < len(group_jobs(run, group)) < SUBJECTS, group
        assert not [rule for rule in rules if rule in run.slurm_jobs], group


def test_successive_halving_runs_its_rungs_on_slurm(run: TinyRun, tmp_path) -> None:
    """From a copy of the tiny run's preprocessing, a halving sweep up to the final choice:
    each rung's trainings are SLURM jobs holding a GPU, its decision a checkpoint whose file
    the run's own jobs then follow (the pruned end at the rung, the promoted train on)."""
    root = seed(run.root, tmp_path / "halving")
    sweep = {**TINY_SWEEP, "budget": {"method": "halving", "eta": 2, "min_epochs": 1}}
    configure(root, TINY_CONFIG, sweep)
    result = run_on_slurm(root, layout.FINAL)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    jobs = slurm_job_records(root)
    assert sorted(job["log_folder"] for job in jobs["train_rung"].values()) == [
        f"{r}_1" for r in RUNS
    ]
    assert {job["TresPerJob"] for job in jobs["train_rung"].values()} == {"gres:gpu:1"}
    decision = pd.read_csv(root / layout.path(layout.RUNG_DECISION, epochs="1"))
    promoted = set(decision.query("decision == 'promoted'")["configuration"])
    assert len(promoted) == 2
    for each in RUNS:
        at_rung = pd.read_csv(
            root / layout.path(layout.at_rung(layout.RUN_LOG), run=each, epochs="1")
        )
        assert len(at_rung) == 1, each
        # the promoted went on to the last epoch; the choice needs no job of the pruned
        if each in promoted:
            assert len(pd.read_csv(root / layout.path(layout.RUN_LOG, run=each))) == 2, each
    final = pd.read_csv(root / layout.FINAL)
    assert set(final["run_id"]) <= promoted
