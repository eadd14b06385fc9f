"""Segmentation losses on logits [B, K, H, W] (softmax over K; class 0 is background) and
targets of class indices [B, H, W] (long).

- `cross_entropy`: mean pixelwise cross entropy over all K classes.
- `soft_dice` ("dice"): 1 - mean over the foreground classes 1..K-1 of
  (2 Σ p·g + eps) / (Σ p + Σ g + eps), sums over the whole batch (all slices and pixels), with p
  the softmax probability and g the one-hot target. Summing over the batch, not per slice, keeps
  the loss defined for slices without the class; eps = 1 (Keras-style smoothing) keeps it defined
  and its gradient finite for a batch without the class at all. This is the thesis's F1 loss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def _check(logits: torch.Tensor, target: torch.Tensor) -> None:
    if logits.ndim != 4 or target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"expected logits [B, K, H, W] and target [B, H, W], "
            f"got {tuple(logits.shape)} and {tuple(target.shape)}"
        )


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross entropy over every pixel of the batch."""
    _check(logits, target)
    return F.cross_entropy(logits, target)


def soft_dice(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - mean soft Dice of the foreground classes over the whole batch."""
    _check(logits, target)
    n_classes = logits.shape[1]
    if n_classes < 2:
        raise ValueError("soft Dice needs a background and at least one foreground class")
    prob = torch.softmax(logits, dim=1)[:, 1:]
    onehot = F.one_hot(target, n_classes).permute(0, 3, 1, 2)[:, 1:].to(prob.dtype)
    dims = (0, 2, 3)
    overlap = (prob * onehot).sum(dims)
    dice = (2 * overlap + eps) / (prob.sum(dims) + onehot.sum(dims) + eps)
    return 1 - dice.mean()


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cross_entropy": cross_entropy,
    "dice": soft_dice,
}


def get_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss function called `name` in the config (`train.loss`)."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(LOSSES)}") from None
