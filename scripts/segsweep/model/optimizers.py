"""The optimisers of the theses: Adam, or SGD with momentum."""

from __future__ import annotations

from typing import Any

import torch

OPTIMIZERS = ("adam", "sgd")


def make_optimizer(hp: dict[str, Any], params) -> torch.optim.Optimizer:
    """The run's optimiser (`optimizer`, `lr`, SGD's `momentum`) over `params`."""
    name = hp["optimizer"]
    if name == "adam":
        return torch.optim.Adam(params, lr=hp["lr"])
    if name == "sgd":
        return torch.optim.SGD(params, lr=hp["lr"], momentum=float(hp["momentum"]))
    raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
