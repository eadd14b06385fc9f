"""Where a run's training stops and starts under successive halving (the sweep's `budget`).

A configuration trained through rungs is trained by several jobs of the workflow: one per rung
below the last, each training from the state the rung below left (`Rung.start`) to the rung's
epochs (`Rung.stop_at`) and leaving its state there (`Rung.snapshot`, a declared output the
next rung reads), then the run's own job, which either trains on to `train.epochs` (promoted
through every rung) or, for a configuration a rung pruned, ends the run at that rung
(`stop_at` without a snapshot: nothing more is trained). The learning-rate schedule and
everything else are those of the whole run, so on the CPU a configuration that reaches the last
rung ends with exactly the weights of an uninterrupted run.

A rung job that fails on its last attempt leaves a failure record as its snapshot: the rungs
above it and the run's own job then fail with that reason instead of training from nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from segsweep.errors import InputError
from segsweep.io.records import write_atomic


@dataclass(frozen=True)
class Rung:
    """How far one job trains a run: to `stop_at` epochs (None: to train.epochs), starting
    from the `start` snapshot (None: from the run's own state or afresh), leaving the state
    in `snapshot` (None: the job ends the run, writing its index and removing its state)."""

    stop_at: int | None = None
    start: Path | None = None
    snapshot: Path | None = None


WHOLE_RUN = Rung()  # no halving: the job trains the run to train.epochs


def _progress(path: Path) -> dict | None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("status") == "failed":
        raise InputError(None, str(path), f"the rung below failed: {state.get('error', '')}")
    return state


def start_from(snapshot: Path, working: Path) -> None:
    """Make the rung's `snapshot` the run's working state (`working`, the resume state),
    unless the working state is the same run's and already further along (a job of this rung
    killed and run again resumes where it was)."""
    given = _progress(snapshot)
    if working.is_file():
        current = torch.load(working, map_location="cpu", weights_only=True)
        if current["hp"] == given["hp"] and (
            current["progress"]["step"] > given["progress"]["step"]
        ):
            return
    write_atomic(working, lambda tmp: torch.save(given, tmp))


def record_failure(snapshot: Path, error: BaseException) -> None:
    """The snapshot of a rung whose training failed: a failure record the next job reports."""
    record = {"status": "failed", "error": f"{type(error).__name__}: {error}"}
    write_atomic(snapshot, lambda tmp: torch.save(record, tmp))
