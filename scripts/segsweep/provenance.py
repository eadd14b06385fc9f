"""What produced a training run.

provenance.json, next to every run: the run's hyperparameters (hashed), the hash of the whole
configuration and sweep, package versions, the git revision of the workflow, the host, the device
and leased device index, the attempt, the status (ok | failed), the start and end time (UTC) and
what the training cost on the device: on CUDA `device_s` (seconds the job trained on the device)
and `device_peak_mb` (the peak memory torch allocated there, MB of 2^20 bytes); both null on the
CPU, whose cost Snakemake's benchmark of the job measures (`segsweep.sweep.cost`); and where the
run's weights started (`starting_weights`, `segsweep.train.job`). It answers
"were these two runs trained with the same code and settings?", through the lease index and times
"which runs trained at once, on which device?", and "what did this run cost on the GPU?".

Kept light (standard library only): `config_hash` also runs when the Snakefile is parsed.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("segsweep", "torch", "numpy", "SimpleITK", "h5py", "snakemake")
WORKFLOW_DIR = Path(__file__).resolve().parents[2]  # scripts/segsweep → the repository


def _hash(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def config_hash(config: dict[str, Any], sweep: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of config and sweep: equal hashes mean equal settings."""
    return _hash({"config": config, "sweep": sweep})


def params_hash(hp: dict[str, Any]) -> str:
    """sha256 of a run's hyperparameters (the run id included)."""
    return _hash(hp)


def utc_now() -> str:
    """The current time as ISO 8601 UTC with microseconds (orderable as text)."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")


def package_version(name: str) -> str:
    """The installed version; a package already imported (torch in a training job) as it
    reports itself, with its build (torch 2.14.1+cu130: one release is a CPU or a CUDA build)."""
    module = sys.modules.get(name)
    if module is not None and isinstance(getattr(module, "__version__", None), str):
        return module.__version__
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def package_versions() -> dict[str, str]:
    """Python and the versions of the packages a run depends on."""
    return {"python": platform.python_version(), **{p: package_version(p) for p in PACKAGES}}


def _git(where: Path, *args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None


def git_revision(where: Path = WORKFLOW_DIR) -> str:
    """The commit of the workflow checkout, "+dirty" when tracked files differ from it, or
    "unknown" outside a git checkout (or without git): never an error."""
    head = _git(where, "rev-parse", "HEAD")
    if head is None or head.returncode != 0 or not head.stdout.strip():
        return "unknown"
    diff = _git(where, "diff", "--quiet", "HEAD", "--")
    dirty = diff is not None and diff.returncode == 1
    return head.stdout.strip() + ("+dirty" if dirty else "")


def provenance(
    hp: dict[str, Any],
    *,
    config_hash: str | None,
    device: str,
    device_index: int | None,
    started: str,
    ended: str,
    status: str,
    attempt: int,
    starting_weights: list[dict[str, Any]],
    device_s: float | None,
    device_peak_mb: float | None,
) -> dict[str, Any]:
    """The provenance record of one training job (see the module docstring)."""
    return {
        "run_id": hp.get("run_id"),
        "status": status,
        "attempt": attempt,
        "params_hash": params_hash(hp),
        "config_hash": config_hash or "unknown",
        "git_revision": git_revision(),
        "packages": package_versions(),
        "host": socket.gethostname(),
        "device": device,
        "device_index": device_index,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "started_utc": started,
        "ended_utc": ended,
        "device_s": device_s,
        "device_peak_mb": device_peak_mb,
        "starting_weights": starting_weights,
    }
