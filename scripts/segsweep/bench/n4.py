"""N4 benchmark: our in-plane-shrunk N4 against SimpleITK's default N4 on the same volumes.

Volumes come from the synthetic generator, which knows the true multiplicative bias field. The
remaining bias of a correction is the spread (standard deviation) of log(estimated / true field)
over the tissue voxels: a perfect estimate differs from the truth only by a constant factor, so
the spread is 0. Last line: `n4: ratio=<default time / our time> residual=<ours / default>`
(target: ratio >= 15, residual <= 1.05).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import SimpleITK as sitk

from segsweep.data.cohort import plan_cohort, render
from segsweep.preprocess.n4 import DEFAULTS, n4_correct

OURS = {k: DEFAULTS[k] for k in ("shrink", "iterations", "convergence")}


def _volumes(n: int, scale: float, seed: int) -> list[tuple[str, sitk.Image, np.ndarray]]:
    """(subject id, image, true bias array) of the first n coronal (`epi`) synthetic subjects."""
    specs = plan_cohort({"seed": seed, "scale": scale, "sources": {"epi": {"n": n, "labelled": 0}}})
    out = []
    for spec in specs:
        rendered = render(spec)
        image = sitk.GetImageFromArray(rendered.image.astype(np.float32))
        image.SetSpacing(rendered.spacing)
        image.SetOrigin(rendered.origin)
        image.SetDirection(rendered.direction)
        out.append((spec.subject_id, image, rendered.bias))
    return out


def default_n4(image: sitk.Image) -> tuple[sitk.Image, sitk.Image]:
    """SimpleITK's N4 with default settings on the full-resolution image and an Otsu mask."""
    mask = sitk.OtsuThreshold(image, 0, 1)
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrected = corrector.Execute(image, mask)
    field = sitk.Exp(corrector.GetLogBiasFieldAsImage(image))
    return corrected, field


def residual_bias(field: sitk.Image, truth: np.ndarray, tissue: np.ndarray) -> float:
    """Standard deviation of log(estimated / true field) over `tissue` (0 = perfect up to scale)."""
    estimated = sitk.GetArrayFromImage(field).astype(np.float64)
    return float(np.std(np.log(estimated[tissue]) - np.log(truth[tissue])))


def _tissue(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.OtsuThreshold(image, 0, 1)).astype(bool)


def _timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    """Print per-volume times and residuals, then the summary line."""
    parser = argparse.ArgumentParser(prog="segsweep.bench n4", description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=2, help="number of synthetic volumes")
    parser.add_argument(
        "--scale", type=float, default=0.25, help="in-plane scale of the native 800x800x41"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=1, help="ITK threads for both variants")
    args = parser.parse_args(argv)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)

    total = {"default": 0.0, "ours": 0.0}
    spread = {"default": [], "ours": []}
    for subject, image, truth in _volumes(args.volumes, args.scale, args.seed):
        tissue = _tissue(image)
        (_, field_default), t_default = _timed(default_n4, image)
        (_, field_ours), t_ours = _timed(n4_correct, image, **OURS)
        r_default = residual_bias(field_default, truth, tissue)
        r_ours = residual_bias(field_ours, truth, tissue)
        none = residual_bias(sitk.Image(image) * 0 + 1, truth, tissue)
        total["default"] += t_default
        total["ours"] += t_ours
        spread["default"].append(r_default)
        spread["ours"].append(r_ours)
        print(
            f"{subject} {'x'.join(map(str, image.GetSize()))}: default {t_default:.2f} s "
            f"residual {r_default:.4f}; ours {t_ours:.2f} s residual {r_ours:.4f}; "
            f"uncorrected {none:.4f}",
            flush=True,
        )
    ratio = total["default"] / total["ours"]
    residual = float(np.mean(spread["ours"]) / np.mean(spread["default"]))
    print(f"n4: ratio={ratio:.1f} residual={residual:.3f}")


if __name__ == "__main__":
    main()
