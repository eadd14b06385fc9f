"""The real Snakefile on a tiny sweep through `--profile slurm`, all the way to the report, on a
real single-node SLURM cluster (tests/slurm_cluster.sh: munged, slurmctld, slurmd, two fake GPUs).

Skipped only where SLURM is not installed and CI is not set; in CI a missing SLURM fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny import TINY_CONFIG, TINY_SWEEP

REPO = Path(__file__).resolve().parents[1]
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
BINARIES = ["munged", "slurmctld", "slurmd", "sbatch", "squeue", "srun", "scontrol"]
MISSING = [name for name in BINARIES if shutil.which(name, path=SEARCH_PATH) is None]
IN_CI = bool(os.environ.get("CI"))

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(
        bool(MISSING) and not IN_CI, reason=f"SLURM not installed: {', '.join(MISSING)}"
    ),
]

RUNS = [
    "default",
    "labels-separate",
    "labels-separate_loss-cross-entropy",
    "loss-cross-entropy",
]


@pytest.fixture(scope="module")
def cluster() -> None:
    assert not MISSING, f"CI must install SLURM (slurmctld slurmd munge slurm-client): {MISSING}"
    result = subprocess.run(
        ["bash", str(REPO / "tests/slurm_cluster.sh")], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def workdir(cluster: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One workflow run through the profile; slurmd must be able to read this directory."""
    root = tmp_path_factory.mktemp("slurm")
    (root / "config").mkdir()
    (root / "config.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    (root / "config" / "sweep.yaml").write_text(yaml.safe_dump(TINY_SWEEP))
    # The test cluster, not whatever cluster the caller's environment points at.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SBATCH_", "SLURM_"))}
    command = [
        # ~72 jobs, 10-17 min on 2 CPUs; snakemake waits for running jobs on SIGTERM, hence -k.
        *("timeout", "-k", "30", "2400"),
        *(sys.executable, "-m", "snakemake"),
        *("--profile", str(REPO / "slurm")),
        *("--snakefile", str(REPO / "Snakefile")),
        *("--directory", str(root)),
        *("--configfile", str(root / "config.yaml")),
        # No accounting database here: job states come from squeue (MinJobAge is long enough).
        *("--slurm-status-command", "squeue"),
        *("--slurm-init-seconds-before-status-checks", "5"),
        "--slurm-keep-successful-logs",
    ]
    result = subprocess.run(
        command, cwd=root, env=env, capture_output=True, text=True, timeout=2500
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    return root, output


def slurm_jobs(root: Path, rule: str) -> dict[str, Path]:
    """SLURM job id → log of each job of `rule` (kept by --slurm-keep-successful-logs)."""
    logs = (root / ".snakemake/slurm_logs" / f"rule_{rule}").rglob("*.log")
    return {log.stem: log for log in logs}


def show_job(job_id: str) -> dict[str, str]:
    """`scontrol show job` as key → value; finished jobs stay visible for MinJobAge."""
    out = subprocess.run(
        ["scontrol", "--oneliner", "show", "job", job_id],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(re.findall(r"(\S+?)=(\S*)", out))


def test_the_report_is_built_through_slurm(workdir: tuple[Path, str]) -> None:
    root, output = workdir
    for name in ["thesis.html", "thesis.pdf"]:
        assert (root / "results/report" / name).stat().st_size > 0, name
    for run in RUNS:
        assert (root / "results/runs" / run / "selection.json").is_file(), run
    assert "submitted with SLURM jobid" in output


def test_each_training_run_is_a_slurm_job_holding_one_gpu(workdir: tuple[Path, str]) -> None:
    root, _ = workdir
    jobs = slurm_jobs(root, "train")
    assert sorted(log.parent.name for log in jobs.values()) == RUNS  # one folder per run id
    for job_id in jobs:
        job = show_job(job_id)
        assert job["JobState"] == "COMPLETED", job
        assert job["WorkDir"] == str(root), job
        assert job["TresPerJob"] == "gres:gpu:1", job
        assert job["CpusPerTres"] == "gres:gpu:1", job  # cpus_per_gpu = threads = 1


def test_other_jobs_run_on_slurm_without_a_gpu(workdir: tuple[Path, str]) -> None:
    root, _ = workdir
    for rule in ["n4", "pack", "select", "final_test", "report"]:
        jobs = slurm_jobs(root, rule)
        assert jobs, rule
        for job_id in jobs:
            job = show_job(job_id)
            assert job["JobState"] == "COMPLETED", job
            assert "gpu" not in job.get("TresPerJob", ""), job
