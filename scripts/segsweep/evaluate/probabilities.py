"""Class probabilities of packed images (`segsweep.io.image_sets`) from classifier checkpoints
(`segsweep.train.classify`): one model's, or a fold ensemble's mean.

Images [N, S, S] float32 (as packed) are fed as one grey channel, resized on the device to the
checkpoint's `input_size` exactly as in training (`segsweep.model.classifiers.resize_images`),
in eval mode without gradients, with mixed precision and channels_last only on CUDA. The result
is [N, K] float64 probabilities (softmax; rows sum to 1) over the checkpoint's `classes`; an
empty set gives [0, K].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segsweep.errors import InputError
from segsweep.model.checkpoints import load_checkpoint
from segsweep.model.classifiers import build_classifier, resize_images


@torch.no_grad()
def predict_probabilities(
    model: nn.Module,
    images: np.ndarray,
    meta: dict[str, Any],
    device: torch.device | str,
    batch_size: int = 64,
) -> np.ndarray:
    """Probabilities [N, K] of `model` (a classifier checkpoint's, with its `meta`) for
    `images` [N, S, S] (see the module docstring)."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    layout = torch.channels_last if cuda else torch.contiguous_format
    size, n_classes = int(meta["input_size"]), len(meta["classes"])
    model.eval()
    out = np.zeros((len(images), n_classes), np.float64)
    for start in range(0, len(images), batch_size):
        batch = np.ascontiguousarray(images[start : start + batch_size], dtype=np.float32)
        x = torch.from_numpy(batch)[:, None].to(device)
        x = resize_images(x, size).contiguous(memory_format=layout)
        with torch.autocast(device.type, enabled=cuda):
            logits = model(x)
        probabilities = torch.softmax(logits.double(), dim=1)
        out[start : start + len(batch)] = probabilities.cpu().numpy()
    return out


def ensemble_probabilities(
    checkpoints: list[Path], images: np.ndarray, classes: list[str], device: torch.device | str
) -> np.ndarray:
    """The mean of the probabilities [N, K] of one or several classifier checkpoints (a final
    model's fold models) for the test `images` [N, S, S] of `classes`; a checkpoint that predicts
    other classes is an InputError."""
    if not checkpoints:
        raise ValueError("an ensemble needs at least one checkpoint")
    total = None
    for path in checkpoints:
        model, meta = load_checkpoint(path, device, build_classifier)
        if meta["classes"] != classes:
            raise InputError(None, str(path), f"predicts {meta['classes']}, test has {classes}")
        probabilities = predict_probabilities(model, images, meta, device)
        total = probabilities if total is None else total + probabilities
    return total / len(checkpoints)
