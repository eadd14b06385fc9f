"""One way for the tests to call Snakemake on the real Snakefile, and the pieces of the runs that
several test files share (tests/conftest.py holds the session fixtures made from them).

A workflow test writes its config and sweep into a folder (`configure`), runs Snakemake there
(`snakemake`, `finished`), or starts from the preprocessing of a finished run (`seed`): the
synthetic cohort, ingest, N4, crops, split and packed datasets are copied with their mtimes and
Snakemake's metadata, so a test that changes only training keys trains at once, and one that
changes a preprocessing key reruns only what that key feeds (Snakemake's params trigger).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# The binaries of the visual, SLURM and LaTeX checks are optional off CI only: a check whose
# binary is missing is skipped with the reason there, and fails in CI.
IN_CI = bool(os.environ.get("CI"))
SLURM_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
SLURM_BINARIES = ["munged", "slurmctld", "slurmd", "sbatch", "squeue", "srun", "scontrol"]
SLURM_MISSING = [name for name in SLURM_BINARIES if shutil.which(name, path=SLURM_PATH) is None]

# What a seeded folder takes from a finished run: the per-subject and cohort-level
# preprocessing (results/), the logs and benchmarks (the report declares every job's
# benchmark), and Snakemake's records of the jobs that made them.
SEEDED = [
    "results/cohort",
    "results/data",
    "results/n4",
    "results/crop",
    "results/splits",
    "results/datasets",
]

# The log and benchmark folders (`layout.log("train/{run}")`) of the jobs after preprocessing,
# which a seeded folder runs anew (a training log is appended to on resume).
AFTER_PREPROCESSING = {
    "train",
    "select",
    "choose_final",
    "final",
    "predict_unlabelled",
    "external",
    "analysis",
    "report",
}


def snakemake(
    workdir: Path,
    *args: str,
    cores: int = 2,
    env: dict[str, str] | None = None,
    timeout: int = 1800,
    configfile: Path | None = None,
    snakefile: Path = REPO / "Snakefile",
) -> subprocess.CompletedProcess:
    """`snakemake ARGS` on the repository's Snakefile (or `snakefile`, e.g. a wrapper that
    includes it) in `workdir` with its config.yaml (or `configfile`).

    ARGS go first (targets, flags, `--resources gpu=4`): `--configfile` comes last, since it
    and `--resources` take every word after them."""
    command = [sys.executable, "-m", "snakemake", *args]
    command += ["--snakefile", str(snakefile), "--directory", str(workdir)]
    configfile = configfile or workdir / "config.yaml"
    command += ["--cores", str(cores), "--configfile", str(configfile)]
    return subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env
    )


def configure(root: Path, config: dict, sweep: dict | None = None) -> Path:
    """Write `config` to root/config.yaml and `sweep` to root/config/sweep.yaml (the config's
    default sweep path, relative to the working directory)."""
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    if sweep is not None:
        (root / "config" / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    return root / "config.yaml"


def succeeded(result: subprocess.CompletedProcess) -> None:
    """Fail with the end of Snakemake's output unless it succeeded."""
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-6000:]


def finished(root: Path, config: dict, sweep: dict | None, *args: str, **kwargs) -> Path:
    """`configure` then `snakemake`, which must succeed; returns `root`."""
    configure(root, config, sweep)
    succeeded(snakemake(root, *args, **kwargs))
    return root


def seed(source: Path, target: Path) -> Path:
    """Copy the preprocessing of the finished run in `source` into `target` (see the module's
    docstring); returns `target`."""
    for folder in SEEDED:
        if (source / folder).is_dir():
            shutil.copytree(source / folder, target / folder, symlinks=True)
    for folder in ("logs", "benchmarks"):
        for jobs in (source / folder).glob("*"):
            if jobs.stem in AFTER_PREPROCESSING:
                continue
            (target / folder).mkdir(parents=True, exist_ok=True)
            if jobs.is_dir():
                shutil.copytree(jobs, target / folder / jobs.name)
            else:
                shutil.copy2(jobs, target / folder / jobs.name)
    metadata = source / ".snakemake/metadata"
    if metadata.is_dir():
        shutil.copytree(metadata, target / ".snakemake/metadata")
    return target


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Job counts from the 'Job stats' table of a dry run."""
    counts = {}
    for line in result.stdout.splitlines():
        match = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if match and match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts
