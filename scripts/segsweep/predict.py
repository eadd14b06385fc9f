"""Load a run's checkpoint and predict class-index label maps for 2D slices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segsweep.models import build_model
from segsweep.train import to_tensor


def load_checkpoint(path: Path, device: torch.device | str) -> tuple[nn.Module, dict[str, Any]]:
    """The model of a checkpoint, in eval mode on `device`, and the checkpoint's metadata
    (epoch, step, hp, classes, label_mode, in_channels, out_channels).

    Checkpoints hold only tensors and plain types, so they load with `weights_only=True`.
    """
    checkpoint = torch.load(path, map_location=device, weights_only=True)
    meta = {k: v for k, v in checkpoint.items() if k != "model"}
    model = build_model(meta["hp"], meta["in_channels"], meta["out_channels"])
    model.load_state_dict(checkpoint["model"])
    return model.to(device).eval(), meta


@torch.no_grad()
def predict_labels(
    model: nn.Module, images: np.ndarray, device: torch.device | str, batch_size: int = 32
) -> np.ndarray:
    """Argmax class index uint8 [n, H, W] of channels-last slices [n, H, W, c]."""
    model.eval()
    labels = [
        model(to_tensor(images[start : start + batch_size]).to(device)).argmax(dim=1).cpu()
        for start in range(0, len(images), batch_size)
    ]
    if not labels:
        return np.zeros(images.shape[:3], dtype=np.uint8)
    return torch.cat(labels).numpy().astype(np.uint8)
