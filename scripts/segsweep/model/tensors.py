"""Samples of a split as network inputs: the splits store channels last, torch wants them first."""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """Channels-last numpy slices [n, H, W, c] (volumes [p, z, H, W, c]) as a float tensor
    [n, c, H, W] ([p, c, z, H, W])."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(images, -1, 1), dtype=np.float32))
