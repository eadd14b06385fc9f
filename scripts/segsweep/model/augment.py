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

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F

# the hyperparameters of augmentation (their defaults: the config schema)
SETTINGS = (
    "aug_p",
    "aug_flip",
    "aug_shift",
    "aug_rotate",
    "aug_brightness",
    "aug_contrast",
    "aug_gamma",
)


# Slices resampled (and gamma-corrected) per step: their temporaries (gathered slices,
# results) then stay ~2 MB at 224x224, small enough for the allocator to reuse batch after
# batch; a whole batch's worth (~14 MB) made glibc return the memory to the system and fault it
# back in every batch, at times tripling the cost of a batch. Four cost fewer calls than two
# (measured: about 8 % less time per batch at 224x224) and still keep two CPU threads busy.
# The sampling grids of a batch live in one buffer reused from batch to batch.
CHUNK = 4


class Augmenter:
    """Random flips, shifts, rotations and intensity changes of image/label batches.

    All random numbers of a batch are drawn up front from the generator in one call and the
    per-slice decisions are made on plain Python numbers. `batch` fuses the gather of a batch
    from the in-memory split into the transforms: every output slice is written once, straight
    from its dataset slice (a copy, a window copy for a move, a resampling for a rotation), so
    the cost stays a small multiple of gathering the batch.
    """

    def __init__(self, hp: dict[str, Any], generator: torch.Generator) -> None:
        self.cfg = {k: hp[k] for k in SETTINGS}
        self.generator = generator
        self._grids = torch.empty(0)  # reused batch after batch (see CHUNK)

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
        slots = out.unbind(0), out_labels.view(n, *planes.shape[1:]).unbind(0)
        turned = [i for i in range(n) if angle[i] != 0]
        if turned:
            coefficients = _coefficients([(flip[i], angle[i], *shift[i]) for i in turned])
            if self._grids.numel() < len(turned) * height * width * 2:
                self._grids = torch.empty(n * height * width * 2)
            grids = self._grids[: len(turned) * height * width * 2].view(-1, height, width, 2)
            _grid(coefficients, grids)
            sources = [rows[i] for i in turned]
            for start in range(0, len(turned), CHUNK):
                chunk = slice(start, start + CHUNK)
                grid = grids[chunk].to(images.device, images.dtype)
                _resample((images, planes), slots, sources[chunk], turned[chunk], grid)
        for i, row in enumerate(rows):
            if angle[i] == 0:
                move = _Move(flip[i], *shift[i], height, width)
                move(slots[0][i], images, row)
                move(slots[1][i], planes, row)
        _intensity(out, slots[0], draw["contrast"], draw["brightness"], draw["gamma"])
        return out, out_labels


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


def _put(slices: tuple[torch.Tensor, ...], index: list[int], values: torch.Tensor) -> None:
    """slices[i] = values[k] for the k-th i of `index` (reshaped to a slot, converting dtype
    on the way), one block copy per slice: on the CPU several times faster than
    `index_copy_`, whose per-element path dominated the cost."""
    values = values.view(len(index), *slices[0].shape)
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


def _coefficients(slices: list[tuple[bool, float, int, int]]) -> torch.Tensor:
    """Per slice (flip, angle, dy, dx) of shift(rotate(flip(slice))), the six numbers of its
    sampling grid (see `_grid`), in pixels: output pixel at offset (u, v) from the centre
    reads the input at (s·(cos·(u − dx) + sin·(v − dy)), −sin·(u − dx) + cos·(v − dy)),
    s = −1 for a flip."""
    coefficients = []
    for flip, angle, dy, dx in slices:
        sign, cos, sin = -1.0 if flip else 1.0, math.cos(angle), math.sin(angle)
        per_u, per_v = (sign * cos, -sin), (sign * sin, cos)
        const = tuple(-a * dx - b * dy for a, b in zip(per_u, per_v, strict=True))
        coefficients.append((*per_u, *per_v, *const))
    return torch.tensor(coefficients, dtype=torch.float64)


@functools.lru_cache(maxsize=4)
def _axes(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel offsets from the centre along u [1, W, 1] and v [1, H, 1], and the pixel-to-
    normalised scale (2/W, 2/H) of `grid_sample` (align_corners=False)."""
    u = (torch.arange(width, dtype=torch.float32) - (width - 1) / 2).view(1, width, 1)
    v = (torch.arange(height, dtype=torch.float32) - (height - 1) / 2).view(1, height, 1)
    return u, v, torch.tensor([2 / width, 2 / height], dtype=torch.float64)


def _grid(coefficients: torch.Tensor, out: torch.Tensor) -> None:
    """Sampling grids [n, H, W, 2] for `grid_sample` (align_corners=False) from n rows of
    `_coefficients`, written into `out`. Every grid row is one (x, y) pattern along u plus v
    times a per-slice pair: one contiguous multiply-add, no per-pixel matrix product."""
    (n, height, width, _), (u, v, scale) = out.shape, _axes(*out.shape[1:3])
    coefficient = (coefficients.view(-1, 3, 2) * scale).float()
    row = u * coefficient[:, None, 0] + coefficient[:, None, 2]  # [n, W, 2]
    along_v = coefficient[:, None, 1].expand(n, width, 2).reshape(n, 1, 2 * width)
    torch.addcmul(row.reshape(n, 1, 2 * width), v, along_v, out=out.view(n, height, 2 * width))


def _resample(
    sources: tuple[torch.Tensor, torch.Tensor],
    targets: tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]],
    rows: list[int],
    slots: list[int],
    grid: torch.Tensor,
) -> None:
    """Split images and label planes `rows` resampled on the grid into the batch slices
    `slots` of `targets` (images, label planes): bilinear images and nearest labels (nearest
    samples are exact class indices), zeros outside; a volume's slices are its channels."""
    (images, planes), (out, out_planes) = sources, targets
    chosen = images.index_select(0, torch.tensor(rows, device=images.device)).flatten(1, -3)
    _put(out, slots, F.grid_sample(chosen, grid, align_corners=False))
    labels = _take(planes, rows, grid.dtype)
    _put(out_planes, slots, F.grid_sample(labels, grid, mode="nearest", align_corners=False))


class _Move:
    """Row `row` of a split [N, ..., H, W] flipped left-right (if `flip`), then shifted by
    whole pixels (dy, dx, |dy| < H, |dx| < W) with zeros coming in, written into its batch
    slot: one copy of the overlapping window (mirrored for a flip; the whole slice when there
    is no shift) and only the uncovered border strips zeroed. The windows are worked out once
    for the images and labels of a slice."""

    def __init__(self, flip: bool, dy: int, dx: int, height: int, width: int) -> None:
        rows, cols = slice(max(dy, 0), height + min(dy, 0)), slice(max(dx, 0), width + min(dx, 0))
        source_cols = cols if flip else slice(max(-dx, 0), width + min(-dx, 0))
        self.flip, self.target = flip, (..., rows, cols) if dy or dx else None
        self.source = (..., slice(max(-dy, 0), height + min(-dy, 0)), source_cols)
        self.borders = [(..., _border(dy, height), slice(None))] if dy else []
        self.borders += [(..., _border(dx, width))] if dx else []

    def __call__(self, out: torch.Tensor, split: torch.Tensor, row: int) -> None:
        window = split[(row, *self.source)] if self.target else split[row]
        target = out[self.target] if self.target else out
        target.copy_(window.flip(-1) if self.flip else window)
        for border in self.borders:
            out[border].zero_()


def _border(offset: int, size: int) -> slice:
    """The strip a shift by `offset` ≠ 0 leaves uncovered along an axis of `size`."""
    return slice(0, offset) if offset > 0 else slice(size + offset, size)


def _intensity(
    images: torch.Tensor,
    slices: tuple[torch.Tensor, ...],
    contrast: list[float],
    brightness: list[float],
    log_gamma: list[float],
) -> None:
    """In place on a batch and its `slices`: contrast around each slice's mean and
    brightness as one multiply-add over the batch, then gamma on the slices drawn for it, as
    exp2(γ/ln 2 · log1p(|x| − 1)) = |x|^γ (on the CPU log1p costs about half of log2; the
    rounding of |x| − 1 costs precision: relative error < 1e-4 for |x| > 1e-3, absolute
    < 1e-6 below, far inside the ±20 % of a drawn γ), the sign restored from the slice while
    writing it back."""
    dims, like = tuple(range(1, images.ndim)), {"device": images.device, "dtype": images.dtype}
    shape = (-1, *(1 for _ in dims))
    if any(contrast) or any(brightness):
        scale = torch.tensor([1 + value for value in contrast], **like).view(shape)
        mean = images.mean(dim=dims, keepdim=True)
        offset = torch.tensor(brightness, **like).view(shape) + (1 - scale) * mean
        images.mul_(scale).add_(offset)
    chosen = [i for i, value in enumerate(log_gamma) if value != 0]
    if not chosen:
        return
    gammas = [math.exp(log_gamma[i]) / math.log(2) for i in chosen]
    gammas, rows = (
        torch.tensor(gammas, **like).view(shape),
        torch.tensor(chosen, device=images.device),
    )
    for start in range(0, len(chosen), CHUNK):
        part = slice(start, start + CHUNK)
        powered = images.index_select(0, rows[part]).abs_().sub_(1).log1p_()
        powered.mul_(gammas[part]).exp2_()
        for value, target in zip(powered.unbind(0), chosen[part], strict=True):
            torch.copysign(value, slices[target], out=slices[target])
