"""Names of the packed image channels, which packing records, a run's `inputs` refers to and the
report lists; light (standard library only), since the workflow checks names when it plans.

The channels are the manifest's `data.channels` columns (`image` without them); with
`preprocess.normalise: window`, channel 0 becomes one packed channel per window, named
`name[low,high]` (e.g. `ct[-160,240]`).
"""

from __future__ import annotations

from segsweep.errors import ConfigError


def _number(value: float) -> str:
    return format(value, "g")


def window_name(channel: str, low: float, high: float) -> str:
    """The name of channel `channel` windowed to [low, high]: `ct[-160,240]`."""
    return f"{channel}[{_number(low)},{_number(high)}]"


def channel_names(channels: list[str] | None, count: int, method: str, windows=None) -> list[str]:
    """Names of the packed channels: `channels` (the manifest columns; default `image` for one
    channel, `channel0`, `channel1`, … for more), with `window` normalisation channel 0
    replaced by one channel per window."""
    names = list(channels) if channels else None
    if names is None:
        names = ["image"] if count == 1 else [f"channel{i}" for i in range(count)]
    if len(names) != count:
        raise ConfigError("data.channels", names, f"{count} image channels")
    if method == "window":
        return [window_name(names[0], *w) for w in windows] + names[1:]
    return names
