"""Batched data augmentation of 2D slices on the training device (off by default, as in the knee
thesis's final setting).

Each transform is applied to each slice independently with probability `aug_p`:
- `aug_flip`: left-right flip (true/false);
- `aug_shift`: translation by up to this fraction of the image size in each direction;
- `aug_rotate`: rotation by up to this many degrees either way;
- `aug_brightness`: adds up to ± this (in units of the normalised intensity);
- `aug_contrast`: scales around the slice mean by 1 ± up to this;
- `aug_gamma`: sign-preserving power |x|^γ · sign(x) with log γ uniform in ± this.
Flips, shifts (by whole pixels) and rotations are one resampling of the batch (bilinear for
images, nearest for labels, zeros outside); a batch without any of them is not resampled.
A value of 0 turns a transform off. Randomness comes from one `torch.Generator` seeded by the
run, whose state is part of a resumable training state.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F

DEFAULTS = {
    "aug_p": 0.5,
    "aug_flip": True,
    "aug_shift": 0.1,
    "aug_rotate": 10.0,
    "aug_brightness": 0.1,
    "aug_contrast": 0.1,
    "aug_gamma": 0.2,
}


class Augmenter:
    """Random flips, shifts, rotations and intensity changes of image/label batches.

    All random numbers of a batch are drawn up front, in a fixed order, from the generator; the
    geometric transforms are one resampling of the batch; contrast and brightness are one fused
    multiply-add and gamma touches only the slices drawn for it.
    """

    def __init__(self, hp: dict[str, Any], generator: torch.Generator) -> None:
        self.cfg = {k: hp.get(k, v) for k, v in DEFAULTS.items()}
        self.generator = generator

    def _draw(self, n: int, scale: float, enabled: bool) -> torch.Tensor:
        """Per slice: a value uniform in ±scale where the transform applies, else 0."""
        chosen = torch.rand(n, generator=self.generator) < self.cfg["aug_p"]
        value = (torch.rand(n, generator=self.generator) * 2 - 1) * scale
        return value * (chosen & enabled)

    def __call__(
        self, images: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """images [B, C, H, W] float, target [B, H, W] long → the augmented batch. Works in
        place: pass a gathered copy (`x[index]`), as training does, not the dataset itself."""
        cfg, n = self.cfg, images.shape[0]
        height, width = images.shape[-2:]
        flip = self._draw(n, 1.0, bool(cfg["aug_flip"])) != 0
        shift_y = self._draw(n, cfg["aug_shift"] * height, cfg["aug_shift"] > 0).round().long()
        shift_x = self._draw(n, cfg["aug_shift"] * width, cfg["aug_shift"] > 0).round().long()
        angle = self._draw(n, math.radians(cfg["aug_rotate"]), cfg["aug_rotate"] > 0)
        contrast = 1 + self._draw(n, cfg["aug_contrast"], cfg["aug_contrast"] > 0)
        brightness = self._draw(n, cfg["aug_brightness"], cfg["aug_brightness"] > 0)
        log_gamma = self._draw(n, cfg["aug_gamma"], cfg["aug_gamma"] > 0)

        moved = flip | (shift_x != 0) | (shift_y != 0) | (angle != 0)
        if moved.any():
            images, target = _resampled(images, target, flip, angle, shift_y, shift_x)
        self._intensity(images, contrast, brightness, log_gamma)
        return images, target

    @staticmethod
    def _intensity(images, contrast, brightness, log_gamma) -> None:
        """In place: contrast around each slice's mean and brightness as one multiply-add over
        the batch, then gamma on the slices drawn for it."""
        if ((contrast != 1) | (brightness != 0)).any():
            shape = (-1, *([1] * (images.ndim - 1)))
            scale = contrast.to(images).view(shape)
            mean = images.mean(dim=tuple(range(1, images.ndim)), keepdim=True)
            images.mul_(scale).add_(brightness.to(images).view(shape) + (1 - scale) * mean)
        chosen = log_gamma != 0
        if chosen.any():
            gamma = log_gamma[chosen].exp().to(images).view(-1, *([1] * (images.ndim - 1)))
            part = images[chosen]
            images[chosen] = part.abs().pow(gamma).mul_(part.sign())


@functools.lru_cache(maxsize=8)
def _base_grid(height: int, width: int, device: torch.device, dtype) -> torch.Tensor:
    """Homogeneous pixel-centre coordinates (x, y, 1) in [-1, 1] (align_corners=False),
    [1, H·W, 3]; cached, as every batch of a run has the same size."""
    x = (torch.arange(width, device=device, dtype=dtype) * 2 + 1) / width - 1
    y = (torch.arange(height, device=device, dtype=dtype) * 2 + 1) / height - 1
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return torch.stack([xx, yy, torch.ones_like(xx)], dim=-1).view(1, height * width, 3)


def _resampled(images, target, flip, angle, shift_y, shift_x):
    """Flip, rotate and shift the whole batch with one resampling: bilinear images, nearest
    labels, zeros outside. Identity, flips and whole-pixel shifts land exactly on pixel centres
    (align_corners=False), so they only move values.

    Output pixel (x, y) reads input (s·(cos·x − sin·y) + dx, sin·x + cos·y + dy), normalised,
    with s = −1 for a left-right flip; the grid is one batched matrix product with the cached
    base grid (cheaper than `affine_grid`).
    """
    n, (height, width) = images.shape[0], images.shape[-2:]
    sign = 1 - 2 * flip.to(torch.float32)
    cos, sin = torch.cos(angle), torch.sin(angle)
    dx, dy = -2 * shift_x / width, -2 * shift_y / height
    theta = torch.stack(
        [torch.stack([sign * cos, -sign * sin, dx], 1), torch.stack([sin, cos, dy], 1)], 1
    ).to(images)
    base = _base_grid(height, width, images.device, images.dtype)
    grid = torch.bmm(base.expand(n, -1, -1), theta.transpose(1, 2)).view(n, height, width, 2)
    images = F.grid_sample(images, grid, align_corners=False)
    labels = target.unsqueeze(1).to(images.dtype)
    labels = F.grid_sample(labels, grid, mode="nearest", align_corners=False)
    return images, labels.squeeze(1).long()  # nearest samples are exact class indices
