"""Learning-rate policies as pure functions of the global step.

A policy has no state besides the step, so a resumed run recomputes exactly the learning rate an
uninterrupted one would use. Time is counted in optimiser steps t = 0, 1, ...; policies measured
in epochs (`lr_step_epochs`, `lr_t0`) use the fractional epoch e = t / steps_per_epoch, as
PyTorch's CosineAnnealingWarmRestarts does when stepped per batch.

- `constant`: lr
- `time`: lr / (1 + decay · t)  (Keras' `decay`, the knee thesis: lr 1e-3, decay 1e-3)
- `step`: lr · lr_gamma ** floor(e / lr_step_epochs)
- `poly`: lr · (1 - t / T) ** lr_power, T the run's total steps
- `cosine`: SGDR (Loshchilov & Hutter; PET/CT thesis Table 4.5): within a cycle of length
  T_i = lr_t0 · lr_t_mult**i epochs, lr_min + (lr - lr_min) (1 + cos(π e_i / T_i)) / 2, with e_i
  the epochs since the cycle began; the rate restarts at lr at each cycle's end.
"""

from __future__ import annotations

import math
from typing import Any

POLICIES = ("constant", "time", "step", "poly", "cosine")


def _cosine_position(epoch: float, t0: float, t_mult: float) -> tuple[float, float]:
    """(epochs into the current cycle, length of the current cycle)."""
    start, length = 0.0, t0
    while epoch >= start + length:
        start, length = start + length, length * t_mult
    return epoch - start, length


def learning_rate(hp: dict[str, Any], step: int, steps_per_epoch: int, total_steps: int) -> float:
    """The learning rate of optimiser step `step` (0-based) under the run's policy."""
    lr = float(hp["lr"])
    policy = hp["lr_policy"]
    epoch = step / steps_per_epoch
    if policy == "constant":
        return lr
    if policy == "time":
        return lr / (1 + float(hp["decay"]) * step)
    if policy == "step":
        return lr * float(hp["lr_gamma"]) ** math.floor(epoch / float(hp["lr_step_epochs"]))
    if policy == "poly":
        return lr * max(0.0, 1 - step / total_steps) ** float(hp["lr_power"])
    if policy == "cosine":
        lr_min = float(hp["lr_min"])
        into, length = _cosine_position(epoch, float(hp["lr_t0"]), float(hp["lr_t_mult"]))
        return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * into / length)) / 2
    raise ValueError(f"unknown lr_policy {policy!r}; known: {', '.join(POLICIES)}")
