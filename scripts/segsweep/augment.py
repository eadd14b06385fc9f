"""Batched data augmentation of 2D slices on the training device (off by default, as in the knee
thesis's final setting).

Each transform is applied to each slice independently with probability `aug_p`:
- `aug_flip`: left-right flip (true/false);
- `aug_shift`: translation by up to this fraction of the image size in each direction, rounded
  to whole pixels (rows and columns drawn independently);
- `aug_rotate`: rotation about the slice centre by up to this many degrees either way;
- `aug_brightness`: adds up to ± this (in units of the normalised intensity);
- `aug_contrast`: scales around the slice mean by 1 ± up to this;
- `aug_gamma`: sign-preserving power |x|^γ · sign(x) with log γ uniform in ± this.
The geometric transforms compose as shift(rotate(flip(slice))) with zeros coming in from
outside. A slice that drew a rotation is resampled once (bilinear images, nearest labels); flips
and shifts of the other slices only move values (exact for images and labels alike). Intensity
changes follow, in the order contrast and brightness, then gamma. Label planes (`[B, H, W]` or
`[B, K, H, W]`) always move with their slice. A value of 0 turns a transform off. Randomness
comes from one `torch.Generator` seeded by the run, whose state is part of a resumable training
state; the same state gives the same batch.
"""

from __future__ import annotations

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

    All random numbers of a batch are drawn up front from the generator in one call and the
    per-slice decisions are made on plain Python numbers; each transform then touches only the
    slices it applies to, with whole-slice copies and a few batched tensor operations, so the
    cost stays a small multiple of gathering the batch.
    """

    def __init__(self, hp: dict[str, Any], generator: torch.Generator) -> None:
        self.cfg = {k: hp.get(k, v) for k, v in DEFAULTS.items()}
        self.generator = generator

    def _draw(self, n: int, scales: dict[str, float]) -> dict[str, list[float]]:
        """Per transform and slice: a value uniform in ±scale where the transform applies
        (probability `aug_p`), else 0; a scale of 0 turns the transform off."""
        uniform = torch.rand(len(scales), 2, n, generator=self.generator)
        scale = torch.tensor(list(scales.values()), dtype=torch.float32).unsqueeze(1)
        values = (uniform[:, 1] * 2 - 1) * scale * (uniform[:, 0] < self.cfg["aug_p"])
        return dict(zip(scales, values.tolist(), strict=True))

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """images [B, C, H, W] float, labels [B, H, W] or [B, K, H, W] integer → the augmented
        batch. Works in place: pass a gathered copy (`x[index]`), as training does, not the
        dataset itself."""
        planes = _label_planes(images, labels)
        cfg, (n, _, height, width) = self.cfg, images.shape
        draw = self._draw(
            n,
            {
                "flip": float(bool(cfg["aug_flip"])),
                "shift_y": cfg["aug_shift"] * height,
                "shift_x": cfg["aug_shift"] * width,
                "rotate": math.radians(cfg["aug_rotate"]),
                "contrast": cfg["aug_contrast"],
                "brightness": cfg["aug_brightness"],
                "gamma": cfg["aug_gamma"],
            },
        )
        flip = [value != 0 for value in draw["flip"]]
        shift = [
            (round(y), round(x)) for y, x in zip(draw["shift_y"], draw["shift_x"], strict=True)
        ]
        angle = draw["rotate"]
        rotated = [i for i in range(n) if angle[i] != 0]
        if rotated:
            grid = _grid([(flip[i], angle[i], *shift[i]) for i in rotated], height, width)
            _resample(images, planes, rotated, grid.to(images.device, images.dtype))
        # flipped slices first: `_move` mirrors the first `flips` of them
        moved = [i for i in range(n) if angle[i] == 0 and flip[i]]
        flips = len(moved)
        moved += [i for i in range(n) if angle[i] == 0 and not flip[i] and shift[i] != (0, 0)]
        if moved:
            for tensor in (images, planes):
                _move(tensor, moved, flips, [shift[i] for i in moved])
        _intensity(images, draw["contrast"], draw["brightness"], draw["gamma"])
        return images, labels


def _take(tensor: torch.Tensor, index: list[int], dtype: torch.dtype) -> torch.Tensor:
    """tensor[index] as `dtype`, converted while copying (one pass instead of two)."""
    out = tensor.new_empty((len(index), *tensor.shape[1:]), dtype=dtype)
    slices = tensor.unbind(0)
    for source, target in zip(out.unbind(0), index, strict=True):
        source.copy_(slices[target])
    return out


def _put(tensor: torch.Tensor, index: list[int], values: torch.Tensor) -> None:
    """tensor[index] = values, one block copy per slice (converting dtype on the way): on the
    CPU several times faster than `index_copy_`, whose per-element path dominated the cost."""
    slices = tensor.unbind(0)
    for value, target in zip(values.unbind(0), index, strict=True):
        slices[target].copy_(value)


def _label_planes(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """labels as a [B, K, H, W] view (writes go to `labels`); one clear error for bad shapes."""
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(
            f"augment: images must be float [B, C, H, W], got {images.dtype} {list(images.shape)}"
        )
    planes = labels.unsqueeze(1) if labels.ndim == 3 else labels
    if (
        planes.ndim != 4
        or planes.shape[0] != images.shape[0]
        or planes.shape[-2:] != images.shape[-2:]
        or planes.is_floating_point()
    ):
        raise ValueError(
            f"augment: labels must be integer [B, H, W] or [B, K, H, W] matching images "
            f"{list(images.shape)}, got {labels.dtype} {list(labels.shape)}"
        )
    return planes


def _grid(slices: list[tuple[bool, float, int, int]], height: int, width: int) -> torch.Tensor:
    """Sampling grid [n, H, W, 2] for `grid_sample` (align_corners=False) of
    shift(rotate(flip(slice))), one (flip, angle, dy, dx) per slice. Output pixel at offset
    (u, v) from the centre reads the input at (s·(cos·(u − dx) + sin·(v − dy)),
    −sin·(u − dx) + cos·(v − dy)), s = −1 for a flip; in normalised units an offset is
    2·offset/size. Every grid row is one (x, y) pattern along u plus v times a per-slice pair:
    one contiguous multiply-add, no per-pixel matrix product."""
    coefficients = []
    for flip, angle, dy, dx in slices:
        sign, cos, sin = -1.0 if flip else 1.0, math.cos(angle), math.sin(angle)
        per_u = (2 * sign * cos / width, -2 * sin / height)
        per_v = (2 * sign * sin / width, 2 * cos / height)
        const = tuple(-a * dx - b * dy for a, b in zip(per_u, per_v, strict=True))
        coefficients.append((*per_u, *per_v, *const))
    n, coefficient = len(slices), torch.tensor(coefficients, dtype=torch.float32)
    u = (torch.arange(width, dtype=torch.float32) - (width - 1) / 2).view(1, width, 1)
    v = (torch.arange(height, dtype=torch.float32) - (height - 1) / 2).view(1, height, 1)
    row = u * coefficient[:, None, 0:2] + coefficient[:, None, 4:6]  # [n, W, 2]
    along_v = coefficient[:, None, 2:4].expand(n, width, 2).reshape(n, 1, 2 * width)
    return torch.addcmul(row.reshape(n, 1, 2 * width), v, along_v).view(n, height, width, 2)


def _resample(
    images: torch.Tensor, planes: torch.Tensor, index: list[int], grid: torch.Tensor
) -> None:
    """In place: slices `index` resampled on the grid, bilinear images and nearest labels
    (nearest samples are exact class indices), zeros outside."""
    rows = torch.tensor(index, device=images.device)
    _put(images, index, F.grid_sample(images.index_select(0, rows), grid, align_corners=False))
    labels = _take(planes, index, grid.dtype)
    _put(planes, index, F.grid_sample(labels, grid, mode="nearest", align_corners=False))


def _move(tensor: torch.Tensor, index: list[int], flips: int, shift: list[tuple[int, int]]) -> None:
    """In place: slices `index` ([B, C, H, W]; the first `flips` flipped left-right) shifted
    by whole pixels (dy, dx), zeros coming in. The slices are copied into a zero-padded
    buffer, where every output row is one contiguous window: the shift is one row gather
    (`index_select`) per slice written straight back, with no per-value index arithmetic."""
    m, (_, channels, height, width) = len(index), tensor.shape
    pad = max(abs(value) for pair in shift for value in pair)
    tall, wide = height + 2 * pad, width + 2 * pad
    padded = tensor.new_empty(m, channels, tall, wide)
    inner = padded[:, :, pad : pad + height, pad : pad + width]
    if pad:  # zero only the border: the inside is overwritten next
        for border in (padded[:, :, :pad], padded[:, :, -pad:]):
            border.zero_()
        for border in (padded[:, :, pad:-pad, :pad], padded[:, :, pad:-pad, -pad:]):
            border.zero_()
    device, slices = tensor.device, tensor.unbind(0)
    for source, target in zip(inner[:flips].unbind(0), index[:flips], strict=True):
        source.copy_(slices[target].flip(-1))
    if flips < m:
        rows = torch.tensor(index[flips:], device=device)
        torch.index_select(tensor, 0, rows, out=inner[flips:])
    plane = torch.arange(channels, device=device).view(channels, 1) * tall
    row_start = ((plane + torch.arange(pad, pad + height, device=device)) * wide + pad).view(-1)
    offset = [((j * channels * tall) - dy) * wide - dx for j, (dy, dx) in enumerate(shift)]
    start = row_start + torch.tensor(offset, device=device).view(m, 1)
    windows = padded.view(-1).unfold(0, width, 1)  # every run of `width` consecutive values
    for first, target in zip(start.unbind(0), index, strict=True):
        out = slices[target]
        if out.is_contiguous():
            torch.index_select(windows, 0, first, out=out.view(-1, width))
        else:  # e.g. channels_last images on CUDA
            out.copy_(windows.index_select(0, first).view(out.shape))


def _intensity(
    images: torch.Tensor, contrast: list[float], brightness: list[float], log_gamma: list[float]
) -> None:
    """In place: contrast around each slice's mean and brightness as one multiply-add over
    the batch, then gamma (as exp2(γ·log2|x|), the sign restored from the slice while writing
    it back) on the slices drawn for it."""
    shape, like = (-1, 1, 1, 1), {"device": images.device, "dtype": images.dtype}
    if any(contrast) or any(brightness):
        scale = torch.tensor([1 + value for value in contrast], **like).view(shape)
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        offset = torch.tensor(brightness, **like).view(shape) + (1 - scale) * mean
        images.mul_(scale).add_(offset)
    chosen = [i for i, value in enumerate(log_gamma) if value != 0]
    if chosen:
        gamma = torch.tensor([math.exp(log_gamma[i]) for i in chosen], **like).view(shape)
        rows = torch.tensor(chosen, device=images.device)
        powered = images.index_select(0, rows).abs_().log2_().mul_(gamma).exp2_()
        slices = images.unbind(0)
        for value, target in zip(powered.unbind(0), chosen, strict=True):
            torch.copysign(value, slices[target], out=slices[target])
