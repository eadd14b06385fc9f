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
from collections.abc import Iterator
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


# Slices resampled (and gamma-corrected) per step: their temporaries (grid, gathered slices,
# results) then stay ~1 MB at 224x224, small enough for the allocator to reuse batch after
# batch; a whole batch's worth (~14 MB) made glibc return the memory to the system and fault it
# back in every batch, at times tripling the cost of a batch. Two keep two CPU threads busy.
CHUNK = 2


class Augmenter:
    """Random flips, shifts, rotations and intensity changes of image/label batches.

    All random numbers of a batch are drawn up front from the generator in one call and the
    per-slice decisions are made on plain Python numbers. `batch` fuses the gather of a batch
    from the in-memory split into the transforms: every output slice is written once, straight
    from its dataset slice (a copy, a window copy for a move, a resampling for a rotation), so
    the cost stays a small multiple of gathering the batch.
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
        """The augmented copy of a whole batch (see `batch`); the inputs are left alone."""
        return self.batch(images, labels)

    def batch(
        self, images: torch.Tensor, labels: torch.Tensor, index: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows `index` (default: all) of a split, images [N, C, H, W] float (volumes
        [N, C, Z, H, W]: all slices of a volume move alike) and labels [N, H, W] or
        [N, K, H, W] integer, augmented: new tensors equal to `self(images[index],
        labels[index])`, without the intermediate gathered copy."""
        planes = _label_planes(images, labels)
        rows = range(len(images)) if index is None else torch.as_tensor(index).tolist()
        cfg, n, (height, width) = self.cfg, len(rows), images.shape[-2:]
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
        out = _empty(images, n)
        out_labels = labels.new_empty((n, *labels.shape[1:]))
        out_planes = out_labels.view(n, *planes.shape[1:])
        for rotated in _chunks([i for i in range(n) if angle[i] != 0]):
            grid = _grid([(flip[i], angle[i], *shift[i]) for i in rotated], height, width)
            grid = grid.to(images.device, images.dtype)
            sources = [rows[i] for i in rotated]
            _resample((images, planes), (out, out_planes), sources, rotated, grid)
        slots = zip(out.unbind(0), out_planes.unbind(0), rows, strict=True)
        for i, (target, target_planes, row) in enumerate(slots):
            if angle[i] == 0:
                move = _Move(flip[i], *shift[i], height, width)
                move(target, images[row])
                move(target_planes, planes[row])
        _intensity(out, draw["contrast"], draw["brightness"], draw["gamma"])
        return out, out_labels


def _chunks(slots: list[int]) -> Iterator[list[int]]:
    """`slots` in groups of CHUNK."""
    return (slots[i : i + CHUNK] for i in range(0, len(slots), CHUNK))


def _empty(images: torch.Tensor, n: int) -> torch.Tensor:
    """An uninitialised batch of n samples of `images`, in its memory format (channels_last
    on CUDA stays so)."""
    return torch.empty_like(images[:1].expand(n, *images.shape[1:]))


def _take(tensor: torch.Tensor, index: list[int], dtype: torch.dtype) -> torch.Tensor:
    """tensor[index] as `dtype`, converted while copying (one pass instead of two)."""
    out = tensor.new_empty((len(index), *tensor.shape[1:]), dtype=dtype)
    for target, source in zip(out.unbind(0), index, strict=True):
        target.copy_(tensor[source])
    return out


def _put(tensor: torch.Tensor, index: list[int], values: torch.Tensor) -> None:
    """tensor[index] = values (reshaped to a sample of `tensor`), one block copy per slice
    (converting dtype on the way): on the CPU several times faster than `index_copy_`, whose
    per-element path dominated the cost."""
    slices, values = tensor.unbind(0), values.view(len(index), *tensor.shape[1:])
    for value, target in zip(values.unbind(0), index, strict=True):
        slices[target].copy_(value)


def _label_planes(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """labels as a [B, K, H, W] view; one clear error for bad shapes."""
    if images.ndim not in (4, 5) or not images.is_floating_point():
        raise ValueError(
            "augment: images must be float [B, C, H, W] or [B, C, Z, H, W], got "
            f"{images.dtype} {list(images.shape)}"
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
    sources: tuple[torch.Tensor, torch.Tensor],
    targets: tuple[torch.Tensor, torch.Tensor],
    rows: list[int],
    slots: list[int],
    grid: torch.Tensor,
) -> None:
    """Split images and label planes `rows` resampled on the grid into batch slots `slots`:
    bilinear images and nearest labels (nearest samples are exact class indices), zeros
    outside; a volume's slices are its channels."""
    (images, planes), (out, out_planes) = sources, targets
    chosen = images.index_select(0, torch.tensor(rows, device=images.device))
    _put(out, slots, F.grid_sample(chosen.flatten(1, -3), grid, align_corners=False))
    labels = _take(planes, rows, grid.dtype)
    _put(out_planes, slots, F.grid_sample(labels, grid, mode="nearest", align_corners=False))


class _Move:
    """A slice [..., H, W] flipped left-right (if `flip`), then shifted by whole pixels
    (dy, dx, |dy| < H, |dx| < W) with zeros coming in, written into its batch slot: one copy
    of the overlapping window (mirrored for a flip) and only the uncovered border strips
    zeroed. The windows are worked out once for the images and labels of a slice."""

    def __init__(self, flip: bool, dy: int, dx: int, height: int, width: int) -> None:
        rows, cols = slice(max(dy, 0), height + min(dy, 0)), slice(max(dx, 0), width + min(dx, 0))
        source_cols = cols if flip else slice(max(-dx, 0), width + min(-dx, 0))
        self.flip, self.target = flip, (..., rows, cols)
        self.source = (..., slice(max(-dy, 0), height + min(-dy, 0)), source_cols)
        self.borders = [(..., _border(dy, height), slice(None))] if dy else []
        self.borders += [(..., _border(dx, width))] if dx else []

    def __call__(self, out: torch.Tensor, source: torch.Tensor) -> None:
        window = source[self.source]
        out[self.target].copy_(window.flip(-1) if self.flip else window)
        for border in self.borders:
            out[border].zero_()


def _border(offset: int, size: int) -> slice:
    """The strip a shift by `offset` ≠ 0 leaves uncovered along an axis of `size`."""
    return slice(0, offset) if offset > 0 else slice(size + offset, size)


def _intensity(
    images: torch.Tensor, contrast: list[float], brightness: list[float], log_gamma: list[float]
) -> None:
    """In place: contrast around each slice's mean and brightness as one multiply-add over
    the batch, then gamma (as exp2(γ·log2|x|), the sign restored from the slice while writing
    it back) on the slices drawn for it."""
    dims, like = tuple(range(1, images.ndim)), {"device": images.device, "dtype": images.dtype}
    shape = (-1, *(1 for _ in dims))
    if any(contrast) or any(brightness):
        scale = torch.tensor([1 + value for value in contrast], **like).view(shape)
        mean = images.mean(dim=dims, keepdim=True)
        offset = torch.tensor(brightness, **like).view(shape) + (1 - scale) * mean
        images.mul_(scale).add_(offset)
    slices = images.unbind(0)
    for chosen in _chunks([i for i, value in enumerate(log_gamma) if value != 0]):
        gamma = torch.tensor([math.exp(log_gamma[i]) for i in chosen], **like).view(shape)
        rows = torch.tensor(chosen, device=images.device)
        powered = images.index_select(0, rows).abs_().log2_().mul_(gamma).exp2_()
        for value, target in zip(powered.unbind(0), chosen, strict=True):
            torch.copysign(value, slices[target], out=slices[target])
