"""The optimisers of the theses: Adam, or SGD with momentum."""

from __future__ import annotations

from typing import Any

import torch

OPTIMIZERS = ("adam", "sgd")


def make_optimizer(hp: dict[str, Any], params) -> torch.optim.Optimizer:
    """The run's optimiser (`optimizer`, `lr`, SGD's `momentum`, the L2 `weight_decay` of both,
    0 when absent) over `params`."""
    name = hp["optimizer"]
    decay = float(hp.get("weight_decay", 0.0))
    if name == "adam":
        return torch.optim.Adam(params, lr=hp["lr"], weight_decay=decay)
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=hp["lr"], momentum=float(hp["momentum"]), weight_decay=decay
        )
    raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
