"""Class-index label maps of a loaded model on channels-last slices (the 2D layout of a split;
a 3D run's `VolumeSlices` model takes them as whole volumes)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from segsweep.model.checkpoints import BATCH_SIZE, slices_per_batch
from segsweep.model.tensors import to_tensor


@torch.no_grad()
def predict_labels(
    model: nn.Module, images: np.ndarray, device: torch.device | str, batch_size: int = BATCH_SIZE
) -> np.ndarray:
    """Argmax class index uint8 [n, H, W] of channels-last slices [n, H, W, c]; a
    `VolumeSlices` model gets whole volumes (at least one per batch); no slices give [0, H, W]."""
    model.eval()
    batch_size = slices_per_batch(model, batch_size)
    labels = [
        model(to_tensor(images[start : start + batch_size]).to(device)).argmax(dim=1).cpu()
        for start in range(0, len(images), batch_size)
    ]
    if not labels:
        return np.zeros(images.shape[:3], dtype=np.uint8)
    return torch.cat(labels).numpy().astype(np.uint8)
