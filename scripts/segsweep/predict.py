"""Load a run's checkpoint and predict class-index label maps for 2D slices.

A run fed a selection or windows of the packed channels (`train.inputs`, see `segsweep.inputs`)
gets them from an `InputLayer` in front of its network, so every stage hands any model the
packed slices as they are.

A 3D run predicts through the same 2D layout: its checkpoint records the depth of the training
volumes (`volume_slices`), `load_checkpoint` wraps the network in `VolumeSlices`, and
`predict_labels` hands it whole volumes. Selection, evaluation and export therefore read the
per-slice arrays of the HDF5 splits for 2D and 3D runs alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segsweep.models import build_model
from segsweep.train import to_tensor


class VolumeSlices(nn.Module):
    """A 3D network seen through the 2D layout: slices [n, C, H, W] in which every `slices`
    consecutive slices are one volume in z order (as the splits store them) → per-slice logits
    [n, K, H, W] of the network run on each volume."""

    def __init__(self, net: nn.Module, slices: int) -> None:
        super().__init__()
        self.net = net
        self.slices = slices

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, height, width = x.shape
        if n % self.slices:
            raise ValueError(
                f"{n} slices are not whole volumes of {self.slices} slices "
                "(the depth of the 3D run's training volumes)"
            )
        volumes = x.reshape(n // self.slices, self.slices, c, height, width).transpose(1, 2)
        logits = self.net(volumes)  # [volumes, K, slices, H, W]
        return logits.transpose(1, 2).reshape(n, -1, height, width)


class InputLayer(nn.Module):
    """`InputChannels` in front of a network: packed slices [n, c, H, W] (volumes
    [n, c, Z, H, W]) → the network's inputs [n, k, …], then the network."""

    def __init__(self, net: nn.Module, channels: dict[str, Any]) -> None:
        super().__init__()
        self.net = net
        self.names = list(channels["names"])
        self.register_buffer("index", torch.tensor(channels["index"]), persistent=False)
        self.register_buffer("scale", torch.tensor(channels["scale"]), persistent=False)
        self.register_buffer("offset", torch.tensor(channels["offset"]), persistent=False)
        self.register_buffer("clip", torch.tensor(channels["clip"]), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1, *(1 for _ in x.shape[2:]))
        picked = x.index_select(1, self.index)
        mapped = picked * self.scale.to(x.dtype).view(shape) + self.offset.to(x.dtype).view(shape)
        mapped = torch.where(self.clip.view(shape), mapped.clamp(0.0, 1.0), mapped)
        return self.net(mapped)


def load_checkpoint(path: Path, device: torch.device | str) -> tuple[nn.Module, dict[str, Any]]:
    """The model of a checkpoint, in eval mode on `device`, and the checkpoint's metadata
    (epoch, step, hp, classes, label_mode, in_channels, out_channels; `volume_slices` for a 3D
    run, whose model then takes and returns slices, see `VolumeSlices`; `inputs` for a run
    fed a selection or windows of the packed channels, which the model then makes itself from
    the packed slices, see `InputLayer`).

    Checkpoints hold only tensors and plain types, so they load with `weights_only=True`.
    """
    checkpoint = torch.load(path, map_location=device, weights_only=True)
    meta = {k: v for k, v in checkpoint.items() if k != "model"}
    model = build_model(meta["hp"], meta["in_channels"], meta["out_channels"])
    model.load_state_dict(checkpoint["model"])
    if meta.get("inputs"):
        model = InputLayer(model, meta["inputs"])
    if meta.get("volume_slices"):
        model = VolumeSlices(model, int(meta["volume_slices"]))
    return model.to(device).eval(), meta


def slices_per_batch(model: nn.Module, batch_size: int) -> int:
    """`batch_size` slices, rounded to whole volumes (at least one) for a `VolumeSlices` model,
    which takes whole volumes only."""
    if isinstance(model, VolumeSlices):
        return max(1, batch_size // model.slices) * model.slices
    return batch_size


@torch.no_grad()
def predict_labels(
    model: nn.Module, images: np.ndarray, device: torch.device | str, batch_size: int = 32
) -> np.ndarray:
    """Argmax class index uint8 [n, H, W] of channels-last slices [n, H, W, c]; a
    `VolumeSlices` model gets whole volumes (at least one per batch)."""
    model.eval()
    batch_size = slices_per_batch(model, batch_size)
    labels = [
        model(to_tensor(images[start : start + batch_size]).to(device)).argmax(dim=1).cpu()
        for start in range(0, len(images), batch_size)
    ]
    if not labels:
        return np.zeros(images.shape[:3], dtype=np.uint8)
    return torch.cat(labels).numpy().astype(np.uint8)
