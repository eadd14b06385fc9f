"""The resume state of a training run: everything a job killed at any point (even by SIGKILL)
needs to continue exactly where it was, so that on CPU the resumed run ends with the weights of
an uninterrupted one.

`state/resume.pt` (torch.save of tensors and plain types) holds the hyperparameters it was
written for, the weights, the optimiser and gradient-scaler state, the RNG states (torch, numpy's
shuffling generator, the augmentation generator, CUDA) and the `Progress`. It is written
atomically after every epoch and every checkpoint. The state folder is deliberately not a
declared output of the workflow, so it survives Snakemake's removal of a failed job's outputs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segsweep.io.records import write_atomic


@dataclass
class Progress:
    """Everything besides weights and optimiser that a resumed run must restore."""

    epoch: int = 1  # the epoch in progress (1-based)
    position: int = 0  # batches of this epoch already done
    step: int = 0
    order: list[int] | None = None  # this epoch's shuffled sample order
    total: float = 0.0  # summed training loss of this epoch so far
    start_time: float = 0.0  # time_s of this epoch spent before an interruption
    rows: list[dict[str, Any]] = field(default_factory=list)  # train_log.csv so far
    saved: list[dict[str, Any]] = field(default_factory=list)  # checkpoints written
    best: float | None = None  # early stopping: best signed metric and epochs without gain
    bad_epochs: int = 0
    done: bool = False


def rng_states(rng: np.random.Generator, aug: torch.Generator, device) -> dict[str, Any]:
    states = {
        "torch": torch.get_rng_state(),
        "numpy": json.dumps(rng.bit_generator.state),
        "augment": aug.get_state(),
    }
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def set_rng_states(states, rng: np.random.Generator, aug: torch.Generator, device) -> None:
    torch.set_rng_state(states["torch"])
    rng.bit_generator.state = json.loads(states["numpy"])
    aug.set_state(states["augment"])
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)


def save_state(path: Path, hp: dict[str, Any], parts: dict[str, Any], progress: Progress) -> None:
    """Write the state: `parts` holds model, optimizer, scaler and rng (state dicts)."""
    state = {"hp": hp, **parts, "progress": asdict(progress)}
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def load_state(path: Path, hp: dict[str, Any], device: torch.device) -> dict[str, Any] | None:
    """The saved training state, if there is one and it belongs to these hyperparameters."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location=device, weights_only=True)
    if state["hp"] != hp:
        print(f"ignoring {path}: written for other hyperparameters", flush=True)
        return None
    for key in ("torch", "augment"):
        state["rng"][key] = state["rng"][key].cpu()
    return state
