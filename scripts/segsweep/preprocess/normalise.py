"""Intensity normalisation with training-split statistics: the one normalisation of packing and
of every inference path (the test set is packed with it, unlabelled subjects are normalised with
it before prediction), so the two cannot drift.

Methods (`preprocess.normalise`): zscore, the training population's mean and std per channel
(knee thesis); minmax, the training min and max to [0, 1] (feature scaling); image_zscore, each
image by its own mean and std; window, CT windows of channel 0, each clipped to [low, high] and
scaled to [0, 1] as one channel (PET/CT thesis), other channels z-scored with training
statistics. Statistics come from the training subjects only, so nothing about validation or test
images leaks into the model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from segsweep.channels import channel_names
from segsweep.errors import ConfigError, InputError
from segsweep.io.images import channels_last, read_volume

METHODS = ("zscore", "minmax", "image_zscore", "window")
DEFAULT_WINDOWS = [[-160.0, 240.0]]  # CT soft-tissue window (level 40, width 400)


def compute_stats(
    image_paths: list[Path],
    method: str = "zscore",
    windows: list[list[float]] | None = None,
    channels: list[str] | None = None,
) -> dict:
    """Per-channel mean, (population) std, min and max over all voxels of the training images,
    the shift/scale each method applies: normalised = (x - shift) / scale, and the names of the
    packed channels (`segsweep.channels.channel_names` of the manifest's `channels`).

    Per-image moments are merged with Chan's parallel formula, so precision does not depend on
    the number or size of the images.
    """
    if method not in METHODS:
        raise ConfigError("preprocess.normalise", method, " | ".join(METHODS))
    windows = [list(map(float, w)) for w in (windows or DEFAULT_WINDOWS)]
    if any(len(w) != 2 or w[1] <= w[0] for w in windows):
        raise ConfigError("preprocess.windows", windows, "a list of [low, high] with low < high")
    if not image_paths:
        raise InputError(None, None, "no training images to compute normalisation statistics")
    count, mean, m2, low, high = 0, None, None, None, None
    for path in map(Path, image_paths):
        array = channels_last(read_volume(path))
        voxels = array.reshape(-1, array.shape[-1])
        if not np.isfinite(voxels).all():
            raise InputError(None, str(path), "image has NaN or infinite voxels")
        if mean is not None and voxels.shape[1] != mean.size:
            raise InputError(None, str(path), f"{voxels.shape[1]} channels, expected {mean.size}")
        n_b, mean_b = voxels.shape[0], voxels.mean(axis=0)
        m2_b = ((voxels - mean_b) ** 2).sum(axis=0)
        low_b, high_b = voxels.min(axis=0), voxels.max(axis=0)
        if mean is None:
            count, mean, m2, low, high = n_b, mean_b, m2_b, low_b, high_b
            continue
        low, high = np.minimum(low, low_b), np.maximum(high, high_b)
        delta = mean_b - mean
        total = count + n_b
        mean = mean + delta * n_b / total
        m2 = m2 + m2_b + delta**2 * count * n_b / total
        count = total
    std = np.sqrt(m2 / count)
    if (std == 0).any() and method in ("zscore", "minmax"):
        raise InputError(None, None, "training images have a constant channel (std 0)")
    shift, scale = (low, high - low) if method == "minmax" else (mean, std)
    stats = {"method": method, "mean": mean.tolist(), "std": std.tolist()}
    stats |= {"min": low.tolist(), "max": high.tolist()}
    stats |= {"shift": shift.tolist(), "scale": scale.tolist()}
    if method == "window":
        stats["windows"] = windows
    stats["channel_names"] = channel_names(channels, mean.size, method, windows)
    return stats


def output_channels(stats: dict) -> int:
    """Channels after normalisation: one per window plus the other input channels for
    `window`, else as many as the input has."""
    if stats.get("method") == "window":
        return len(stats["windows"]) + len(stats["mean"]) - 1
    return len(stats["mean"])


def normalise(image: np.ndarray, stats: dict) -> np.ndarray:
    """[z, y, x, c] voxels normalised as `stats` (from `compute_stats`) says, float32."""
    method = stats.get("method", "zscore")
    if method == "image_zscore":
        std = image.std(axis=(0, 1, 2))
        out = (image - image.mean(axis=(0, 1, 2))) / np.where(std > 0, std, 1.0)
    elif method == "window":
        shift = np.asarray(stats["shift"][1:], np.float64)
        scale = np.asarray(stats["scale"][1:], np.float64)
        parts = [
            (np.clip(image[..., :1], low, high) - low) / (high - low)
            for low, high in stats["windows"]
        ]
        out = np.concatenate([*parts, (image[..., 1:] - shift) / scale], axis=-1)
    else:
        shift = np.asarray(stats.get("shift", stats["mean"]), np.float64)
        scale = np.asarray(stats.get("scale", stats["std"]), np.float64)
        out = (image - shift) / scale
    return out.astype(np.float32)


def normalised_volume(image: sitk.Image, stats: dict) -> np.ndarray:
    """A cropped image's voxels as normalised slices [z, y, x, c'] (float32): what packing
    writes into every split and what every inference path feeds a network."""
    return normalise(channels_last(image), stats)
