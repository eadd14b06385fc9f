"""The checkpoint format: what training saves (`save_checkpoint`) and every later stage loads
(`load_checkpoint`), and which checkpoint a run's selection chose (`selected_checkpoint`).

A checkpoint file (torch.save of tensors and plain types only, so it loads with
`weights_only=True`) holds `model` (the state dict, on the CPU), `epoch`, `step` and the run's
metadata: `hp` (its hyperparameters), `classes` (the classes it predicts, output index i + 1),
`label_mode`, `in_channels`, `out_channels`, and optionally `volume_slices` (a 3D run: the depth
of its training volumes) and `inputs` (a run fed a selection or windows of the packed channels,
`segsweep.model.inputs`). A classifier's checkpoint (`task: "classification"`,
`segsweep.train.classify`) names all K classes in `classes` (output index i), has `label_mode`
"classification", and records the packed image side `size` and the side its network sees,
`input_size`.

Loading puts the run's input map in front of its network (`InputLayer`), and a 3D network behind
the 2D layout (`VolumeSlices`), so every stage hands any model the packed slices of a split as
they are, for 2D and 3D runs alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segsweep.io.records import write_atomic
from segsweep.model.unet import build_model


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


class Ensemble(nn.Module):
    """The fold models of a cross-validated configuration as one model (as nnU-Net ensembles
    its folds): the log of the mean of the members' softmax probabilities, [n, K, H, W], so
    its argmax is the ensemble's class and its softmax the mean probability. Members take the
    same inputs (2D slices; a 3D run's members take whole volumes, see `slices`)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        depths = {getattr(m, "slices", None) for m in members}
        if len(depths) > 1:
            raise ValueError(f"ensemble members take volumes of different depths {depths}")
        self.slices = depths.pop()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probabilities = [torch.softmax(member(x), dim=1) for member in self.members]
        return torch.stack(probabilities).mean(dim=0).log()


# a network of a run's hyperparameters, in and out channels: `segsweep.model.unet.build_model`
# (a U-Net) or `segsweep.model.classifiers.build_classifier`
Builder = Callable[[dict[str, Any], int, int], nn.Module]


def load_checkpoint(
    path: Path, device: torch.device | str, build: Builder = build_model
) -> tuple[nn.Module, dict[str, Any]]:
    """The model of a checkpoint, built by `build` (a U-Net unless the caller, a classifier's
    stage, hands its builder), in eval mode on `device`, and the checkpoint's metadata
    (epoch, step, hp, classes, label_mode, in_channels, out_channels; `volume_slices` for a 3D
    run, whose model then takes and returns slices, see `VolumeSlices`; `inputs` for a run
    fed a selection or windows of the packed channels, which the model then makes itself from
    the packed slices, see `InputLayer`). A classifier maps images [B, C, input_size,
    input_size] to logits [B, K].

    Checkpoints hold only tensors and plain types, so they load with `weights_only=True`.
    """
    checkpoint = torch.load(path, map_location=device, weights_only=True)
    meta = {k: v for k, v in checkpoint.items() if k != "model"}
    return model_from(meta, checkpoint["model"], device, build), meta


def model_from(
    meta: dict[str, Any],
    weights: dict[str, torch.Tensor],
    device: torch.device | str,
    build: Builder = build_model,
) -> nn.Module:
    """The model a checkpoint's metadata describes with `weights` (its state dict), in eval
    mode on `device`: what `load_checkpoint` returns, and what a model package rebuilds from its
    manifest and weight files."""
    model = build(meta["hp"], meta["in_channels"], meta["out_channels"])
    model.load_state_dict(weights)
    if meta.get("inputs"):
        model = InputLayer(model, meta["inputs"])
    if meta.get("volume_slices"):
        model = VolumeSlices(model, int(meta["volume_slices"]))
    return model.to(device).eval()


def save_checkpoint(path: Path, model: nn.Module, meta: dict[str, Any], epoch: int, step: int):
    """Write the model's weights (copied to the CPU) with the run's metadata, atomically."""
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    checkpoint = {"model": weights, "epoch": epoch, "step": step, **meta}
    write_atomic(path, lambda tmp: torch.save(checkpoint, tmp))


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Only the state dict of a checkpoint, on the CPU (to initialise another network)."""
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def selected_checkpoint(selection_json: Path, index_json: Path) -> Path:
    """The checkpoint file a run's selection.json chose: the checkpoints lie beside the run's
    checkpoint index (the declared output of training that lists them)."""
    selection = json.loads(Path(selection_json).read_text())
    return Path(index_json).parent / selection["selected"]["file"]


def selected_checkpoints(
    selections: list[str | Path], indices: list[str | Path]
) -> list[Path] | None:
    """The checkpoints the runs' selections chose (one run, or a configuration's folds); None
    when a run's training failed (its selection.json says so)."""
    if any(json.loads(Path(s).read_text()).get("status") == "failed" for s in selections):
        return None
    return [selected_checkpoint(s, i) for s, i in zip(selections, indices, strict=True)]


def load_models(paths: list[Path], device: torch.device | str) -> tuple[nn.Module, dict[str, Any]]:
    """One checkpoint's model, or the `Ensemble` of several (a configuration's folds), with the
    first checkpoint's metadata; the members must predict the same classes."""
    loaded = [load_checkpoint(path, device) for path in paths]
    if len(loaded) == 1:
        return loaded[0]
    metas = [meta for _, meta in loaded]
    if any(meta["classes"] != metas[0]["classes"] for meta in metas):
        raise ValueError(f"ensemble members predict different classes: {paths}")
    return Ensemble([model for model, _ in loaded]).to(device).eval(), metas[0]


BATCH_SIZE = 32  # slices per batch of every inference path (selection counts included)


def slices_per_batch(model: nn.Module, batch_size: int) -> int:
    """`batch_size` slices, rounded to whole volumes (at least one) for a model that takes
    whole volumes only (`VolumeSlices`, or an `Ensemble` of them)."""
    slices = getattr(model, "slices", None)
    if isinstance(model, VolumeSlices | Ensemble) and slices:
        return max(1, batch_size // slices) * slices
    return batch_size
