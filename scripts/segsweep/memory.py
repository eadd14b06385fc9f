"""How much of a split a job may hold at once: the memory budget that decides whether training,
selection and evaluation keep a split resident or stream it from its HDF5 file.

The budget is `memory_budget_gb` when set, else `memory_share` of the device's memory: a CUDA
device's total memory (where the resident split lives), or the machine's physical RAM on the
CPU. `train.data` chooses: `resident` and `streamed` force a mode, `auto` keeps a split resident
when its tensors fit the budget. Bytes are counted as the network sees them: float32 images,
int64 targets.
"""

from __future__ import annotations

import os
from typing import Any

import torch

MODES = ("auto", "resident", "streamed")


def device_memory(device: torch.device) -> int:
    """Bytes of memory of `device`: a GPU's total memory, or the machine's physical RAM."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def budget_bytes(hp: dict[str, Any], device: torch.device) -> int:
    """The job's memory budget in bytes (see the module docstring)."""
    if hp.get("memory_budget_gb") is not None:
        return int(float(hp["memory_budget_gb"]) * 2**30)
    return int(float(hp.get("memory_share", 0.5)) * device_memory(device))


def streams(hp: dict[str, Any], nbytes: int, device: torch.device) -> bool:
    """Whether a job whose data takes `nbytes` streams it (`train.data`, the budget)."""
    mode = hp.get("data", "auto")
    if mode not in MODES:
        raise ValueError(f"train.data must be one of {', '.join(MODES)}, not {mode!r}")
    return mode == "streamed" or (mode == "auto" and nbytes > budget_bytes(hp, device))
