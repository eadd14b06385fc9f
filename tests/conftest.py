"""The workflow runs that several test files assert on, made once per session.

- `tiny_run`: the tiny segmentation cohort and sweep (tests/tiny.py) to the thesis. Where SLURM
  is installed (always in CI) it runs through `--profile slurm` on the single-node test cluster
  (tests/slurm_cluster.sh), so the same run serves the workflow, report, LaTeX and SLURM checks;
  elsewhere it runs locally and the SLURM checks are skipped with the reason.
- `prepared_cohort`: the tiny cohort's preprocessing alone (to the packed datasets), run
  locally; `seeded` copies it into a fresh folder (tests/runs.py `seed`) for the
  cross-validation, fault and four-device tests, which differ from it in training keys.
- `classification_run`: the tiny classification cohort and sweep to the thesis.

Tests must not change these folders (a test that needs to, copies them). With pytest-xdist
(`-n 2`, the project's default) the files of one shared run go to one worker, so each run is
made once per session (`SHARED_RUN_FILES`, `SharedRunScheduling`).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
from runs import IN_CI, REPO, SLURM_MISSING, configure, finished, seed, snakemake, succeeded
from tiny import TINY_CLASSIFICATION, TINY_CLASSIFICATION_SWEEP, TINY_CONFIG, TINY_SWEEP

from segsweep import layout

# The test profile's waits: the first status check a second after a submission (the plugin adds
# 10 s per round in which nothing finished, and drops back when something does).
SLURM_STATUS_WAIT = "1"


@dataclass
class TinyRun:
    """The finished tiny segmentation run: its folder, Snakemake's output, the executor it ran
    on ("slurm" or "local") and, on SLURM, `scontrol show job` of each job by rule."""

    root: Path
    output: str
    executor: str
    slurm_jobs: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)


def start_cluster() -> None:
    result = subprocess.run(
        ["bash", str(REPO / "tests/slurm_cluster.sh")], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


def slurm_job_records(root: Path) -> dict[str, dict[str, dict[str, str]]]:
    """rule (or group_<group>_<its rules>) → SLURM job id → `scontrol show job` as key →
    value, for every job whose log --slurm-keep-successful-logs kept (read right after the run,
    before MinJobAge passes)."""
    records: dict[str, dict[str, dict[str, str]]] = {}
    for folder in sorted((root / ".snakemake/slurm_logs").glob("*_*")):
        rule = folder.name.removeprefix("rule_")
        for log in sorted(folder.rglob("*.log")):
            out = subprocess.run(
                ["scontrol", "--oneliner", "show", "job", log.stem],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            record = dict(re.findall(r"(\S+?)=(\S*)", out))
            record["log_folder"] = log.parent.name
            records.setdefault(rule, {})[log.stem] = record
    return records


def run_on_slurm(root: Path, *targets: str) -> subprocess.CompletedProcess:
    """The workflow in `root` (to `targets`, else to its end) through the repository's SLURM
    profile, on the test cluster."""
    # The test cluster, not whatever cluster the caller's environment points at.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SBATCH_", "SLURM_"))}
    command = [
        # snakemake waits for running jobs on SIGTERM, hence -k
        *("timeout", "-k", "30", "1800"),
        *(sys.executable, "-m", "snakemake"),
        *("--profile", str(REPO / "slurm")),
        *("--snakefile", str(REPO / "Snakefile")),
        *("--directory", str(root)),
        *("--configfile", str(root / "config.yaml")),
        # No accounting database here: job states come from squeue (MinJobAge is long enough).
        *("--slurm-status-command", "squeue"),
        *("--slurm-init-seconds-before-status-checks", SLURM_STATUS_WAIT),
        *("--latency-wait", "5"),  # one local file system: outputs are there when a job ends
        # The node's CPUs: a group's jobs that would need more run in series in its submission.
        *("--cores", "2"),
        "--slurm-keep-successful-logs",
        *targets,
    ]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=1900)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    root = tmp_path_factory.mktemp("tiny")
    configure(root, TINY_CONFIG, TINY_SWEEP)
    if SLURM_MISSING and not IN_CI:
        finished(root, TINY_CONFIG, TINY_SWEEP)
        return TinyRun(root, "", "local")
    assert not SLURM_MISSING, (
        f"CI must install SLURM (slurmctld slurmd munge slurm-client): {SLURM_MISSING}"
    )
    start_cluster()
    result = run_on_slurm(root)
    succeeded(result)
    return TinyRun(root, result.stdout + result.stderr, "slurm", slurm_job_records(root))


@pytest.fixture(scope="session")
def prepared_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packed datasets, and the crops of the unlabelled subjects too (the final models
    predict them), once the data manifest has listed the subjects."""
    root = tmp_path_factory.mktemp("prepared")
    configure(root, TINY_CONFIG, TINY_SWEEP)
    targets = [layout.path(layout.DATASET, split=split) for split in ("train", "val", "test")]
    succeeded(snakemake(root, *targets))
    subjects = pd.read_csv(root / layout.DATA_MANIFEST, dtype={"subject_id": str})
    crops = [layout.path(layout.CROP_IMAGE, subject=s) for s in subjects["subject_id"]]
    succeeded(snakemake(root, *crops))
    return root


@pytest.fixture
def seeded(prepared_cohort: Path, tmp_path: Path) -> Callable[[str], Path]:
    """`seeded(name)`: a new folder tmp_path/name with the tiny cohort's preprocessing."""

    def make(name: str) -> Path:
        return seed(prepared_cohort, tmp_path / name)

    return make


@pytest.fixture(scope="session")
def classification_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("classification")
    return finished(root, TINY_CLASSIFICATION, TINY_CLASSIFICATION_SWEEP)


# The test files that assert on each shared run. With pytest-xdist (`-n 2`, the project's
# default) each group of files goes to one worker, so each run is made once per session; a test
# of a shared run in a file not listed here fails at collection.
SHARED_RUN_FILES = {
    "tiny_run": ("test_workflow.py", "test_slurm.py", "test_package_workflow.py"),
    "prepared_cohort": (
        "test_cv_workflow.py",
        "test_faults.py",
        "test_devices_workflow.py",
        "test_halving_workflow.py",
    ),
    "classification_run": ("test_classification_workflow.py",),
}
GROUP_OF_FILE = {name: run for run, names in SHARED_RUN_FILES.items() for name in names}


def work_unit(nodeid: str) -> str:
    """The xdist work unit of a test: its shared run's group, else its file (whose tests
    share the file's module-scoped runs)."""
    path = nodeid.split("::")[0]
    return GROUP_OF_FILE.get(Path(path).name, path)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The shared runs' tests first (the longest chains start at once on the two workers), the
    other workflow tests next, the unit tests last; the order within a file is kept."""
    runs = list(SHARED_RUN_FILES)
    for item in items:
        for run in runs:
            if run in getattr(item, "fixturenames", ()):
                assert Path(item.path).name in SHARED_RUN_FILES[run], (
                    f"{item.nodeid} uses {run}: list its file in conftest.SHARED_RUN_FILES"
                )

    def rank(item: pytest.Item) -> int:
        group = GROUP_OF_FILE.get(Path(item.path).name)
        if group:
            return runs.index(group)
        return len(runs) + (0 if item.get_closest_marker("workflow") else 1)

    items.sort(key=rank)


if importlib.util.find_spec("xdist"):
    from xdist.scheduler import LoadScopeScheduling

    class SharedRunScheduling(LoadScopeScheduling):
        """xdist's scope scheduling with the work units of `work_unit`, in collection order."""

        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(config: pytest.Config, log) -> SharedRunScheduling:
        config.option.loadscopereorder = False  # keep the order of pytest_collection_modifyitems
        return SharedRunScheduling(config, log)
