"""N4 bias field correction: fit on an in-plane shrunk image, apply the field at full resolution.

The bias field is smooth, so fitting it on a shrunk copy loses nothing and is much faster (the
thesis measured 60-120 s per image at full resolution). Only x and y are shrunk: MR slices are
already thick, and shrinking across them would leave too few slices for the B-spline fit.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from segsweep.config_schema import defaults
from segsweep.errors import ConfigError
from segsweep.io.images import read_volume, write_image

# Fraction of the intensity range used as the positive floor of the fitting image (see _positive).
FLOOR_FRACTION = 1e-3
# The shrink factor is capped so the fitting image keeps at least this many pixels in-plane.
MIN_FIT_PIXELS = 32
# Defaults (as in the config schema): two B-spline levels fit the smooth field; a third level's
# finer control grid starts to follow anatomy (measured by `python -m segsweep.bench n4`).
DEFAULTS = defaults("preprocess", "n4")  # shrink, iterations, convergence, mask (the schema's)
MASKS = ("otsu", "all")


def _positive_shift(image: sitk.Image) -> float:
    """Offset that makes every voxel at least 1e-3 of the intensity range.

    N4 models log(intensity) = log(true) + log(bias), so zeros or negatives (air in magnitude
    images, interpolation undershoot, rescaled data with an offset) give -inf/NaN and break the
    fit. Treating such an offset as additive, N4 fits the shifted image and the shift is removed
    after dividing by the field. For ordinary magnitude images (minimum about 0) the shift is at
    most the tiny floor, so the result is image / field up to 1e-3 of the range.
    """
    array = sitk.GetArrayViewFromImage(image)
    low, high = float(array.min()), float(array.max())
    floor = FLOOR_FRACTION * max(high - low, 1e-12)
    return max(0.0, floor - low)


def fit_shrink(size: Sequence[int], shrink: int) -> int:
    """In-plane shrink factor actually used: `shrink`, capped to keep MIN_FIT_PIXELS in-plane."""
    return max(1, min(int(shrink), min(size[:2]) // MIN_FIT_PIXELS))


def n4_correct(
    image: sitk.Image,
    shrink: int = DEFAULTS["shrink"],
    iterations: Sequence[int] = DEFAULTS["iterations"],
    convergence: float = DEFAULTS["convergence"],
    mask: sitk.Image | str | None = None,
) -> tuple[sitk.Image, sitk.Image]:
    """Correct a multiplicative bias field; returns (corrected, bias_field), float32, input grid.

    `iterations` gives the maximum iterations of each B-spline fitting level; its length is the
    number of levels (SimpleITK has no separate setting). The foreground is an Otsu mask of the
    shrunk image (`mask` None or "otsu"), every voxel ("all"), or a given mask image (same grid
    as `image`, non-zero = foreground). Multi-channel images are corrected channel by channel.
    """
    if image.GetNumberOfComponentsPerPixel() > 1:
        channels = [
            n4_correct(
                sitk.VectorIndexSelectionCast(image, c), shrink, iterations, convergence, mask
            )
            for c in range(image.GetNumberOfComponentsPerPixel())
        ]
        return tuple(sitk.Compose([pair[i] for pair in channels]) for i in (0, 1))
    iterations = [int(i) for i in iterations]
    if not iterations:
        raise ConfigError("preprocess.n4.iterations", iterations, "one maximum per fitting level")
    if shrink < 1:
        raise ConfigError("preprocess.n4.shrink", shrink, "an integer >= 1")
    full = sitk.Cast(image, sitk.sitkFloat32)
    shift = _positive_shift(full)
    positive = full + shift
    factor = fit_shrink(full.GetSize(), shrink)
    factors = [factor, factor] + [1] * (full.GetDimension() - 2)
    small = sitk.Shrink(positive, factors)
    if mask is None or (isinstance(mask, str) and mask == "otsu"):
        # Otsu splits dark air from tissue; inside value 1 marks tissue (default is the reverse).
        small_mask = sitk.OtsuThreshold(small, 0, 1)
    elif isinstance(mask, str):
        if mask not in MASKS:
            raise ConfigError("preprocess.n4.mask", mask, " | ".join(MASKS))
        small_mask = sitk.Cast(small * 0 + 1, sitk.sitkUInt8)
    else:
        small_mask = sitk.Shrink(sitk.Cast(mask != 0, sitk.sitkUInt8), factors)
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations(iterations)
    corrector.SetConvergenceThreshold(float(convergence))
    with _one_thread():
        corrector.Execute(small, small_mask)
    log_field = corrector.GetLogBiasFieldAsImage(full)
    field = sitk.Cast(sitk.Exp(log_field), sitk.sitkFloat32)
    field.CopyInformation(full)
    corrected = sitk.Cast(positive / field - shift, sitk.sitkFloat32)
    corrected.CopyInformation(full)
    return corrected, field


@contextmanager
def _one_thread() -> Iterator[None]:
    """ITK's N4 fit sums in an order that depends on the thread count, so the same image
    corrects slightly differently on machines with different cores; fitting on one thread makes
    it the same everywhere (a model package reproduces the workflow's preprocessing exactly).
    The fit runs on the shrunk image, so this costs little."""
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def _ones_like(image: sitk.Image) -> sitk.Image:
    field = sitk.Image(image.GetSize(), sitk.sitkFloat32) + 1.0
    field.CopyInformation(image)
    if image.GetNumberOfComponentsPerPixel() > 1:
        return sitk.Compose([field] * image.GetNumberOfComponentsPerPixel())
    return field


def _first_channel(image: sitk.Image) -> np.ndarray:
    if image.GetNumberOfComponentsPerPixel() > 1:
        image = sitk.VectorIndexSelectionCast(image, 0)
    return sitk.GetArrayFromImage(image)


def qc_figure(
    image: sitk.Image, field: sitk.Image, corrected: sitk.Image, out_png: str | Path
) -> None:
    """Middle slice before correction, the estimated field and after (first channel)."""
    from matplotlib.figure import Figure

    from segsweep.plotting import save, without_ticks

    before, bias, after = (_first_channel(x) for x in (image, field, corrected))
    k = before.shape[0] // 2
    low, high = np.percentile(before, [1, 99.5])
    sx, sy = image.GetSpacing()[:2]
    aspect = sy / sx
    fig = Figure(figsize=(11, 4), layout="tight")
    axes = fig.subplots(1, 3)
    axes[0].imshow(before[k], cmap="gray", vmin=low, vmax=high, aspect=aspect)
    axes[0].set_title(f"before (slice {k})")
    shown = axes[1].imshow(bias[k], cmap="magma", aspect=aspect)
    fig.colorbar(shown, ax=axes[1], fraction=0.046)
    axes[1].set_title(f"bias field ({bias.min():.2f}-{bias.max():.2f})")
    axes[2].imshow(after[k], cmap="gray", vmin=low, vmax=high, aspect=aspect)
    axes[2].set_title("after N4")
    without_ticks(axes)
    save(fig, out_png, dpi=70)


def main(argv: list[str] | None = None) -> None:
    """`python -m segsweep n4 --image in --config-json '{...}' --out-image o --out-field f`."""
    parser = argparse.ArgumentParser(prog="segsweep n4", description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True)
    parser.add_argument(
        "--config-json",
        default="{}",
        help="preprocess.n4 section: {enabled, shrink, iterations, convergence, mask}",
    )
    parser.add_argument("--out-image", required=True)
    parser.add_argument("--out-field", required=True)
    parser.add_argument("--out-qc", help="QC figure: before, field, after")
    args = parser.parse_args(argv)
    cfg = {**DEFAULTS, **json.loads(args.config_json)}
    image = read_volume(args.image)
    if image.GetNumberOfComponentsPerPixel() == 1:
        image = sitk.Cast(image, sitk.sitkFloat32)
    if not cfg.get("enabled", True):
        corrected, field = image, _ones_like(image)
    else:
        corrected, field = n4_correct(
            image,
            shrink=int(cfg["shrink"]),
            iterations=cfg["iterations"],
            convergence=float(cfg["convergence"]),
            mask=cfg["mask"],
        )
    write_image(corrected, args.out_image)
    write_image(field, args.out_field)
    if args.out_qc:
        qc_figure(image, field, corrected, args.out_qc)


if __name__ == "__main__":
    main()
