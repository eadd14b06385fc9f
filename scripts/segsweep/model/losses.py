"""Segmentation losses on logits [B, K, H, W] (softmax over K; class 0 is background) and
targets of class indices [B, H, W] (long). 3D logits [B, K, D, H, W] with targets [B, D, H, W]
work the same way (every sum runs over the batch and all spatial axes).

- `cross_entropy`: mean pixelwise cross entropy over all K classes.
- `soft_dice` ("dice"): 1 - mean over the foreground classes 1..K-1 of
  (2 Σ p·g + eps) / (Σ p + Σ g + eps), sums over the whole batch (all slices and pixels), with p
  the softmax probability and g the one-hot target. Summing over the batch, not per slice, keeps
  the loss defined for slices without the class; eps = 1 (Keras-style smoothing) keeps it defined
  and its gradient finite for a batch without the class at all. This is the knee thesis's F1 loss.
- `soft_fbeta` ("fbeta" with `beta`, or "fbeta2", "fbeta4", ...): the PET/CT thesis's F_β loss
  (Definition 2.3.10), one-versus-all and averaged over the foreground classes:
  1 - ((1 + β²) Σ p·g + eps) / (β² Σ g² + Σ p² + eps). The squares in the denominator follow
  Milletari et al.; β weighs sensitivity β times more than precision. At β = 1 without squares
  it is exactly `soft_dice`.
- `ce_dice`: cross_entropy + soft_dice (an unweighted sum).
- a dual head (`loss: dual`) trains one output layer per loss of `dual_losses`; see `Criterion`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
FBETA_NAME = re.compile(r"^fbeta(\d+(?:\.\d+)?)$")


def _check(logits: torch.Tensor, target: torch.Tensor) -> None:
    if logits.ndim not in (4, 5) or target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"expected logits [B, K, H, W] (or [B, K, D, H, W]) and target [B, H, W] "
            f"(or [B, D, H, W]), got {tuple(logits.shape)} and {tuple(target.shape)}"
        )


def _foreground(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax probabilities and one-hot targets of the foreground classes, [B, K-1, ...]."""
    _check(logits, target)
    n_classes = logits.shape[1]
    if n_classes < 2:
        raise ValueError("overlap losses need a background and at least one foreground class")
    prob = torch.softmax(logits, dim=1)[:, 1:]
    onehot = F.one_hot(target, n_classes).movedim(-1, 1)[:, 1:].to(prob.dtype)
    return prob, onehot


def _sum_dims(x: torch.Tensor) -> tuple[int, ...]:
    return (0, *range(2, x.ndim))


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross entropy over every pixel of the batch."""
    _check(logits, target)
    return F.cross_entropy(logits, target)


def soft_dice(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - mean soft Dice of the foreground classes over the whole batch."""
    prob, onehot = _foreground(logits, target)
    dims = _sum_dims(prob)
    overlap = (prob * onehot).sum(dims)
    dice = (2 * overlap + eps) / (prob.sum(dims) + onehot.sum(dims) + eps)
    return 1 - dice.mean()


def soft_fbeta(
    logits: torch.Tensor,
    target: torch.Tensor,
    beta: float = 2.0,
    eps: float = 1.0,
    squared: bool = True,
) -> torch.Tensor:
    """1 - mean soft F_β of the foreground classes over the whole batch (PET/CT thesis eq. 2.77)."""
    prob, onehot = _foreground(logits, target)
    dims = _sum_dims(prob)
    power = 2 if squared else 1
    b2 = beta * beta
    numerator = (1 + b2) * (prob * onehot).sum(dims) + eps
    denominator = b2 * (onehot**power).sum(dims) + (prob**power).sum(dims) + eps
    return 1 - (numerator / denominator).mean()


def ce_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross entropy plus soft Dice."""
    return cross_entropy(logits, target) + soft_dice(logits, target)


LOSSES: dict[str, LossFn] = {
    "cross_entropy": cross_entropy,
    "dice": soft_dice,
    "fbeta": soft_fbeta,
    "ce_dice": ce_dice,
}


def get_loss(name: str, beta: float | None = None) -> LossFn:
    """The loss function called `name` in the config (`train.loss`); `fbetaN` means β = N,
    `fbeta` takes `beta` (default 2)."""
    match = FBETA_NAME.match(name)
    if match:
        return partial(soft_fbeta, beta=float(match.group(1)))
    if name == "fbeta" and beta is not None:
        return partial(soft_fbeta, beta=float(beta))
    try:
        return LOSSES[name]
    except KeyError:
        known = ", ".join([*LOSSES, "fbeta<β>", "dual"])
        raise ValueError(f"unknown loss {name!r}; known losses: {known}") from None


class Criterion:
    """The training objective of a run, called on the model and a batch.

    - plain runs: `loss(model(x), target)`;
    - dual head (`loss: dual`): the model has one output layer per loss of `dual_losses`; the
      objective is the sum of each loss on its own head (`model.forward_heads`);
    - `labels: per_class`: the model holds one binary network per class
      (`model.members`); the objective is the sum over classes of the loss of member c on the
      target "class c vs the rest". Member parameters are disjoint, so each member's gradient
      is exactly that of its own binary loss — one model per class, trained side by side.
    """

    def __init__(self, hp: dict[str, Any]) -> None:
        beta = hp["beta"]
        if hp["loss"] == "dual":
            self.losses = [get_loss(n, beta) for n in hp["dual_losses"]]
        else:
            self.losses = [get_loss(hp["loss"], beta)]
        self.per_class = hp["labels"] == "per_class"

    def _single(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if len(self.losses) == 1:
            return self.losses[0](model(x), target)
        heads = model.forward_heads(x)
        return sum(loss(h, target) for loss, h in zip(self.losses, heads, strict=True))

    def __call__(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not self.per_class:
            return self._single(model, x, target)
        return sum(
            self._single(member, x, (target == c).long())
            for c, member in enumerate(model.members, 1)
        )
