"""What a run's network sees: a subset of the packed channels, and Hounsfield-style windows of
them, as the sweep hyperparameter `inputs` (the PET/CT thesis's "channels" and "windowing":
PET/CT, CT only, PET only, CT windows of several centres and widths, several windows at once).

The splits are packed once for all runs. Their channels have names (`segsweep.channels`): the
manifest's `data.channels` columns (`image` without them); with `preprocess.normalise: window`,
channel 0 is one packed channel per window, named `ct[low,high]`. A run's `inputs` lists what its
network gets, in order, each entry either
- a packed channel's name (`pet`, or `ct[-160,240]` under window normalisation), as packed; or
- `name[low,high]`: that channel windowed on the fly, clipped to [low, high] in the original
  units (HU for CT) and scaled to [0, 1]. The original units come back from the packed values
  through the normalisation's shift and scale, so only linearly normalised channels (`zscore`,
  `minmax`) can be windowed; the window then needs no repacking, so centre and width can be
  swept.
`inputs: null` (the default) feeds all packed channels as they are.

Every entry is one affine map of one packed channel, optionally clipped to [0, 1]: training
applies it to the split once (`InputChannels.apply`), and the checkpoint stores it, so
`segsweep.model.checkpoints.load_checkpoint` puts the same map in front of the network
(`segsweep.model.checkpoints.InputLayer`) and every later stage feeds the packed slices unchanged.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from segsweep.channels import channel_names
from segsweep.errors import ConfigError

LINEAR = ("zscore", "minmax")  # normalisations a window can be computed back through
_WINDOW = re.compile(r"^(?P<name>[^\[\]]+)\[(?P<low>[^,\[\]]+),(?P<high>[^,\[\]]+)\]$")


def _parse_window(spec: str) -> tuple[str, float, float] | None:
    """(channel, low, high) of a `name[low,high]` entry, None for a plain name."""
    match = _WINDOW.match(spec.replace(" ", ""))
    if match is None:
        return None
    try:
        low, high = float(match["low"]), float(match["high"])
    except ValueError:
        return None
    return match["name"], low, high


def check(specs: list[str] | None, names: list[str], method: str, where: str = "inputs") -> None:
    """A ConfigError naming the first entry of `specs` that is not a packed channel (`names`)
    or a valid window of one, and listing what is allowed."""
    allowed = ", ".join(names)
    if method in LINEAR:
        allowed += f"; or a window `name[low,high]` (low < high) of one of {', '.join(names)}"
    for spec in specs or []:
        if spec in names:
            continue
        window = _parse_window(spec)
        if window is None or window[0] not in names:
            raise ConfigError(where, spec, f"a packed channel: {allowed}")
        if method not in LINEAR:
            raise ConfigError(
                where,
                spec,
                f"a packed channel ({allowed}); windows on the fly need preprocess.normalise "
                f"{' or '.join(LINEAR)}, the channels are '{method}'-normalised",
            )
        if not (math.isfinite(window[1]) and math.isfinite(window[2]) and window[1] < window[2]):
            raise ConfigError(where, spec, "a window [low,high] with finite low < high")


@dataclass(frozen=True)
class InputChannels:
    """Per network input channel k: packed channel `index[k]`, mapped to
    `scale[k] · x + offset[k]` and clipped to [0, 1] where `clip[k]`."""

    names: list[str]
    index: list[int]
    scale: list[float]
    offset: list[float]
    clip: list[bool]

    def apply(self, images: np.ndarray) -> np.ndarray:
        """Channels-last packed images [..., c] → the network's inputs [..., k], float32."""
        out = images[..., self.index] * np.asarray(self.scale, np.float32)
        out += np.asarray(self.offset, np.float32)
        clipped = np.asarray(self.clip)
        if clipped.any():
            out[..., clipped] = np.clip(out[..., clipped], 0.0, 1.0)
        return out.astype(np.float32, copy=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve(specs: list[str], stats: dict[str, Any]) -> InputChannels:
    """The maps of `specs` (see the module docstring) on splits packed with normalisation
    `stats` (the `normalisation` attribute of a packed split)."""
    method = stats.get("method", "zscore")
    count = len(stats["mean"])
    names = stats.get("channel_names") or channel_names(None, count, method, stats.get("windows"))
    check(specs, names, method)
    shift = stats.get("shift", stats["mean"])
    scale = stats.get("scale", stats["std"])
    index, scales, offsets, clips = [], [], [], []
    for spec in specs:
        if spec in names:
            index.append(names.index(spec))
            scales.append(1.0)
            offsets.append(0.0)
            clips.append(False)
            continue
        channel, low, high = _parse_window(spec)
        i = names.index(channel)
        # original = packed · scale + shift; windowed = (original − low) / (high − low)
        index.append(i)
        scales.append(float(scale[i]) / (high - low))
        offsets.append((float(shift[i]) - low) / (high - low))
        clips.append(True)
    return InputChannels(list(specs), index, scales, offsets, clips)
