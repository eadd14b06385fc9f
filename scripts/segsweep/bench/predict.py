"""Prediction benchmark: `segsweep predict` against the workflow's own inference of one scan.

Seconds and peak memory of a model package's `segsweep predict` and of the workflow's jobs on
the same scan, and the memory that taking the maps back to the scan's grid adds.

The scan (`make_scan`, written to a temporary folder as MetaImage): by default a synthetic
subject the package's training cohort resembles — the default cohort's source `epi` (coronal,
as most of its subjects), subject index 12 (`epi-012`: one beyond the default cohort's 12 epi
subjects, so no default run has seen it) — rendered by `segsweep.data.cohort` at `--size`
(x y z voxels, default the thesis size 512 512 100) over the source's native physical extent
(800 x 800 x 41 voxels of 0.2 x 0.2 x 3 mm: 160 x 160 x 123 mm), so only the spacing changes.
With `--scan FILE` that scan is resampled to `--size` instead, with SimpleITK's linear
interpolation, keeping its physical extent (the box of its voxel edges: size x spacing from the
same corner, the direction unchanged) and its pixel type.

Time and peak memory (`measure`): each command runs under its own small Python wrapper
process, which times it and reads `resource.getrusage(RUSAGE_CHILDREN).ru_maxrss` after it
ends, so that the peaks of different commands do not mix; peak = the largest resident set of
the command's processes.
  (a) package: `segsweep predict --model ZIP --input SCAN --output DIR` (label map and
      uncertainty map in the scan's geometry, qc.csv);
  (b) workflow: the workflow's per-subject jobs on the same scan, one after another as the
      rules run them (workflow/rules/data.smk, preprocess.smk): `segsweep ingest check` (the
      ingest.json the native maps need), `ingest image`, `n4` (with its QC figure), `crop
      centre`, `crop image` (with the package's crop settings and plan, and its QC figure), then
      the prediction of the crop as rule predict_unlabelled makes it with the package's
      networks: `Predictor.predict_prepared` on the crop, crop.json and ingest.json read from
      the files, the label map written as that rule writes it (its overlay figure of several
      subjects aside; `workflow-predict` below). Seconds are summed over the jobs, the peak is
      their largest; Snakemake's own scheduling and job start-up are not counted.
Both get the same torch threads (`--threads`, default 2: the default config's `threads`) and
device (`--device`). Each of `--repeats` rounds runs (a) then (b); the figures are the median
and the range over the rounds. The two label maps are compared voxel by voxel.

Native resampling (`workflow-resampling` below, its own process): `Predictor.predict` on the
scan with `segsweep.deploy.predictor.to_native` wrapped; at each call the resident set before
it is read and the peak reset (/proc/self/clear_refs, 5), and after it the peak read (VmHWM),
so the added memory is that of the resampling alone, with everything the predictor already
holds as the baseline (glibc's mmap threshold fixed at 128 KiB in that process, so that memory
freed earlier cannot hide a new map: `MMAP_THRESHOLD`). It is given in copies of the native
volume as float32 (native voxels x 4 bytes) against the bound to_native states: two maps of the
native grid at once per call (the resampled canonical map and its reoriented copy) — for the
uint8 label map 0.5 copies, for the float32 uncertainty 2, plus the label map kept from the
first call: 2.25.

Last line: `predict: package/workflow time R (lo–hi), peak memory M (lo–hi); native
resampling C copies (bound B)`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from segsweep.data.cohort import plan_cohort, render
from segsweep.io.images import read_image, read_volume, write_image

THESIS_SIZE = (512, 512, 100)  # x, y, z voxels
SOURCE, INDEX, SEED = "epi", 12, 42  # the synthetic scan: subject epi-012 of seed 42
THREADS = 2  # the default config's `threads`
MIB = 1024**2
# glibc serves blocks under its (dynamic, up to 32 MiB) mmap threshold from memory freed earlier,
# already resident, so the resident set would not show a map of that size being made; fixed at
# 128 KiB, every map is its own mapping, made resident when written and returned when freed.
MMAP_THRESHOLD = 128 * 1024

# Runs one command as its only child; writes {"seconds", "peak_kib", "rc"} to argv[1] and the
# command's output to argv[2]. ru_maxrss of RUSAGE_CHILDREN is in KiB on Linux.
_WRAPPER = """
import json, resource, subprocess, sys, time
out, log, command = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(log, "wb") as fh:
    start = time.perf_counter()
    rc = subprocess.call(command, stdout=fh, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
with open(out, "w") as fh:
    json.dump({"seconds": seconds, "peak_kib": peak, "rc": rc}, fh)
"""


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One command's wall seconds and peak resident set (MiB)."""

    seconds: float
    peak_mib: float


# -- the scan ------------------------------------------------------------------------------


def extent(image: sitk.Image) -> np.ndarray:
    """The physical extent (mm) of an image's voxel box: size x spacing, per axis."""
    return np.asarray(image.GetSize(), float) * np.asarray(image.GetSpacing(), float)


def synthetic_scan(
    size: Sequence[int], seed: int = SEED, source: str = SOURCE, index: int = INDEX
) -> tuple[str, sitk.Image]:
    """(subject id, image) of synthetic subject `index` of `source` rendered with `size` voxels
    (x, y, z) over the source's native physical extent."""
    cohort = {"seed": seed, "scale": 1.0, "sources": {source: {"n": index + 1, "labelled": 0}}}
    spec = plan_cohort(cohort)[index]
    native = np.asarray(spec.size, float) * np.asarray(spec.spacing, float)
    size = tuple(int(n) for n in size)
    spec = dataclasses.replace(
        spec, size=size, spacing=tuple(float(v) for v in native / np.asarray(size, float))
    )
    rendered = render(spec)
    image = sitk.GetImageFromArray(rendered.image)
    image.SetSpacing(rendered.spacing)
    image.SetOrigin(rendered.origin)
    image.SetDirection(rendered.direction)
    return spec.subject_id, image


def resampled(image: sitk.Image, size: Sequence[int]) -> sitk.Image:
    """`image` on `size` voxels over the same physical box (linear, its pixel type kept)."""
    old_spacing = np.asarray(image.GetSpacing(), float)
    spacing = extent(image) / np.asarray(size, float)
    direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
    # the first voxel edge stays where it was: origin - direction @ spacing / 2
    origin = np.asarray(image.GetOrigin(), float) + direction @ ((spacing - old_spacing) / 2)
    return sitk.Resample(
        image,
        [int(n) for n in size],
        sitk.Transform(),
        sitk.sitkLinear,
        origin.tolist(),
        spacing.tolist(),
        image.GetDirection(),
        0.0,
        image.GetPixelID(),
    )


def make_scan(
    folder: str | Path, size: Sequence[int], scan: str | Path | None = None, seed: int = SEED
) -> Path:
    """Write the benchmark's scan (module docstring) as `folder/<case>.mhd` (compressed, as the
    synthetic cohort's raw scans) and return its path."""
    if scan is None:
        name, image = synthetic_scan(size, seed)
    else:
        name = Path(scan).name.split(".")[0] or "scan"
        image = resampled(read_image(str(scan)), size)
    path = Path(folder) / f"{name}.mhd"
    write_image(image, path)
    return path


# -- measuring -----------------------------------------------------------------------------


def measure(
    command: Sequence[str], log: str | Path, env: dict[str, str] | None = None
) -> Measurement:
    """Seconds and peak resident set of `command`, run under its own wrapper process (with
    `env` added to the environment); its output goes to `log`. A command that fails raises
    RuntimeError with the log's tail."""
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "measured.json"
        args = [sys.executable, "-c", _WRAPPER, str(result), str(log), *map(str, command)]
        subprocess.run(args, check=True, env={**os.environ, **(env or {})})
        measured = json.loads(result.read_text())
    if measured["rc"] != 0:
        tail = Path(log).read_text(errors="replace").strip().splitlines()[-5:]
        raise RuntimeError(
            f"{' '.join(map(str, command[:4]))} … exited {measured['rc']}: " + "\n".join(tail)
        )
    return Measurement(measured["seconds"], measured["peak_kib"] / 1024)


def measure_stages(
    stages: Sequence[tuple[str, Sequence[str]]], logs: str | Path
) -> tuple[Measurement, dict[str, Measurement]]:
    """Each (name, command) measured in turn (logs/<name>.log): (seconds summed and the largest
    peak, each stage's measurement)."""
    Path(logs).mkdir(parents=True, exist_ok=True)
    each = {name: measure(command, Path(logs) / f"{name}.log") for name, command in stages}
    total = Measurement(
        sum(m.seconds for m in each.values()), max(m.peak_mib for m in each.values())
    )
    return total, each


# -- the two inference paths ---------------------------------------------------------------


def read_manifest(model: str | Path) -> dict[str, Any]:
    """The package's manifest."""
    from segsweep.deploy.archive import open_archive

    return open_archive(model).manifest


def package_command(
    model: str | Path, scan: str | Path, out: str | Path, device: str, threads: int
) -> list[str]:
    """`segsweep predict` on the scan."""
    return [
        *(sys.executable, "-m", "segsweep", "predict", "--model", str(model)),
        *("--input", str(scan), "--output", str(out), "--device", device),
        *("--threads", str(threads)),
    ]


def crop_settings(manifest: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(preprocess.crop as the workflow's crop jobs get it, the crop plan or None): a planned
    window is `auto` with the plan, as the workflow ran."""
    crop = manifest["crop"]
    plan = crop.get("plan") if crop.get("window") == "planned" else None
    config = {key: crop[key] for key in ("size", "slices", "centre", "centre_mm")}
    config["window_mm"] = "auto" if plan is not None else float(crop["window_mm"])
    if plan is not None and "margin" in plan:
        config["margin"] = plan["margin"]
    return config, plan


def workflow_stages(
    model: str | Path,
    manifest: dict[str, Any],
    scan: str | Path,
    folder: str | Path,
    device: str,
    threads: int,
) -> list[tuple[str, list[str]]]:
    """The workflow's jobs for one new scan, as its rules run them (module docstring), with
    their files under `folder` (results/-like); the crop plan is written there now."""
    folder = Path(folder)
    subject = Path(scan).name.split(".")[0]
    data, n4, crop = (folder / part / subject for part in ("data", "n4", "crop"))
    for part in (data, n4, crop):
        part.mkdir(parents=True, exist_ok=True)
    config, plan = crop_settings(manifest)
    plan_args = []
    if plan is not None:
        (folder / "crop" / "plan.json").write_text(json.dumps(plan))
        plan_args = ["--plan-json", str(folder / "crop" / "plan.json")]
    labels = json.dumps(manifest["labels"])
    segsweep = [sys.executable, "-m", "segsweep"]
    centre = {key: config[key] for key in ("centre", "centre_mm")}
    return [
        (
            "ingest_check",
            [
                *segsweep,
                *("ingest", "check", "--subject", subject, "--image", str(scan)),
                *("--labels-json", labels, "--tolerance", "0.001", "--extra-json", "{}"),
                *("--on-invalid", "skip", "--out-json", str(data / "ingest.json")),
            ],
        ),
        (
            "ingest_image",
            [
                *segsweep,
                *("ingest", "image", "--subject", subject, "--image", str(scan)),
                *("--out-image", str(data / "image.nii.gz")),
            ],
        ),
        (
            "n4",
            [
                *segsweep,
                *("n4", "--image", str(data / "image.nii.gz")),
                *("--config-json", json.dumps(manifest["n4"])),
                *("--out-image", str(n4 / "image.nii.gz")),
                *("--out-field", str(n4 / "bias_field.nii.gz"), "--out-qc", str(n4 / "qc.png")),
            ],
        ),
        (
            "crop_centre",
            [
                *segsweep,
                *("crop", "centre", "--image", str(n4 / "image.nii.gz")),
                *("--labels-json", labels, "--config-json", json.dumps(centre)),
                *("--out-json", str(crop / "centre.json")),
            ],
        ),
        (
            "crop_image",
            [
                *segsweep,
                *("crop", "image", "--image", str(n4 / "image.nii.gz")),
                *("--centre-json", str(crop / "centre.json"), *plan_args),
                *("--config-json", json.dumps(config)),
                *("--out-image", str(crop / "image.nii.gz")),
                *("--out-json", str(crop / "crop.json"), "--out-qc", str(crop / "qc.png")),
            ],
        ),
        (
            "predict",
            [
                *(sys.executable, "-m", "segsweep.bench.predict", "workflow-predict"),
                *("--model", str(model), "--subject", subject),
                *("--crop", str(crop / "image.nii.gz"), "--crop-json", str(crop / "crop.json")),
                *("--ingest-json", str(data / "ingest.json")),
                *("--out-dir", str(folder / "unlabelled"), "--device", device),
                *("--threads", str(threads)),
            ],
        ),
    ]


def compare_labels(a: str | Path, b: str | Path) -> str:
    """Whether two label maps agree: `identical`, or how many voxels differ (or the geometry)."""
    first, second = sitk.ReadImage(str(a)), sitk.ReadImage(str(b))
    if first.GetSize() != second.GetSize():
        return f"different sizes {first.GetSize()} and {second.GetSize()}"
    same_grid = all(
        np.allclose(getattr(first, f"Get{what}")(), getattr(second, f"Get{what}")(), atol=1e-4)
        for what in ("Spacing", "Origin", "Direction")
    )
    differ = int(
        np.count_nonzero(sitk.GetArrayViewFromImage(first) != sitk.GetArrayViewFromImage(second))
    )
    grid = "" if same_grid else " (and their spacing, origin or direction differ)"
    return ("identical" if differ == 0 else f"{differ:,} voxels differ") + grid


# -- the native resampling -----------------------------------------------------------------


def _status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, KiB."""
    text = Path("/proc/self/status").read_text()
    return {key: int(re.search(rf"{key}:\s+(\d+)", text).group(1)) for key in ("VmRSS", "VmHWM")}


def _reset_peak() -> bool:
    """Reset this process's peak resident set to its current one (Linux ≥ 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class _Sampler:
    """The largest VmRSS seen while it runs (every millisecond): the fallback where the peak
    cannot be reset."""

    def __init__(self) -> None:
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _status()["VmRSS"])
            time.sleep(0.001)

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status()["VmRSS"])


def peak_added(function: Callable, calls: list[dict[str, Any]]) -> Callable:
    """`function` wrapped so that each call appends to `calls` the resident set before it
    (`before_kib`), the peak during it (`peak_kib`), the result's bytes per voxel, how the
    peak was taken (`reset`: the kernel's peak after resetting it; `sampled`: every ms) and the
    process's peak before it (`process_peak_kib`)."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        status = _status()
        before = status["VmRSS"]
        if _reset_peak():
            result = function(*args, **kwargs)
            peak, how = _status()["VmHWM"], "reset"
        else:
            with _Sampler() as sampler:
                result = function(*args, **kwargs)
            peak, how = sampler.peak, "sampled"
        voxel = (
            getattr(result, "GetSizeOfPixelComponent", lambda: 0)()
            * getattr(result, "GetNumberOfComponentsPerPixel", lambda: 1)()
        )
        calls.append(
            {
                "before_kib": before,
                "peak_kib": peak,
                "bytes": voxel,
                "how": how,
                "process_peak_kib": status["VmHWM"],  # the process's peak up to this call
            }
        )
        return result

    return wrapped


def resampling_bounds(calls: list[dict[str, Any]]) -> tuple[list[float], float]:
    """The stated bounds in float32 copies: of each call's peak over the resident set before
    it, two maps of its result's pixel type at once; of all calls' peak over the first call's
    baseline, the largest of those plus the maps the calls before it returned."""
    each = [2 * call["bytes"] / 4 for call in calls]
    kept = np.cumsum([0.0] + [call["bytes"] / 4 for call in calls[:-1]])
    return each, float(max(kept + np.asarray(each))) if calls else 0.0


def resampling_summary(calls: list[dict[str, Any]], voxels: int) -> dict[str, Any]:
    """Added MiB and float32 copies per call and for all calls together (the largest peak over
    the first call's baseline), with their bounds."""
    copy_mib = voxels * 4 / MIB
    bounds, bound = resampling_bounds(calls)
    each = [
        {
            "added_mib": (c["peak_kib"] - c["before_kib"]) / 1024,
            "copies": (c["peak_kib"] - c["before_kib"]) / 1024 / copy_mib,
            "bound": b,
        }
        for c, b in zip(calls, bounds, strict=True)
    ]
    added = (max(c["peak_kib"] for c in calls) - calls[0]["before_kib"]) / 1024
    return {
        "voxels": voxels,
        "copy_mib": copy_mib,
        "calls": each,
        "added_mib": added,
        "copies": added / copy_mib,
        "bound": bound,
        "how": sorted({c["how"] for c in calls}),
        "resident_mib": calls[0]["before_kib"] / 1024,
        "process_peak_mib": calls[0]["process_peak_kib"] / 1024,
    }


def resampling_line(
    summary: dict[str, Any], names: Sequence[str] = ("labels", "uncertainty")
) -> str:
    """The native resampling's report line."""
    parts = [
        f"{name} +{c['added_mib']:.0f} MiB ({c['copies']:.2f} copies, bound {c['bound']:.2f})"
        for name, c in zip(names, summary["calls"], strict=False)
    ]
    return (
        f"native resampling (to_native, {summary['voxels']:,} native voxels; one float32 copy "
        f"{summary['copy_mib']:.1f} MiB): {'; '.join(parts)}; both +{summary['added_mib']:.0f} "
        f"MiB = {summary['copies']:.2f} copies against the stated bound {summary['bound']:.2f} "
        f"(peak {'/'.join(summary['how'])}; over {summary['resident_mib']:.0f} MiB resident, "
        f"the process's peak before it {summary['process_peak_mib']:.0f} MiB)"
    )


# -- the report ----------------------------------------------------------------------------


def spread(values: Sequence[float], digits: int = 1, unit: str = "") -> str:
    """`median<unit> (min–max)`, or the value alone for one."""
    values = list(values)
    middle = f"{float(np.median(values)):.{digits}f}{unit}"
    if len(values) < 2:
        return middle
    return f"{middle} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def round_line(
    number: int, package: Measurement, workflow: Measurement, stages: dict[str, Measurement]
) -> str:
    """One round's figures."""
    jobs = ", ".join(f"{name} {m.seconds:.1f}" for name, m in stages.items())
    return (
        f"round {number}: package {package.seconds:.1f} s, peak {package.peak_mib:.0f} MiB; "
        f"workflow {workflow.seconds:.1f} s ({jobs}), peak {workflow.peak_mib:.0f} MiB "
        f"(largest: {max(stages, key=lambda s: stages[s].peak_mib)}); package/workflow time "
        f"{package.seconds / workflow.seconds:.2f}, peak {package.peak_mib / workflow.peak_mib:.2f}"
    )


def summary_lines(
    packages: Sequence[Measurement],
    workflows: Sequence[Measurement],
    resampling: dict[str, Any] | None,
) -> list[str]:
    """Per-path figures, the ratios and, last, the summary line (module docstring)."""
    time_ratio = [p.seconds / w.seconds for p, w in zip(packages, workflows, strict=True)]
    peak_ratio = [p.peak_mib / w.peak_mib for p, w in zip(packages, workflows, strict=True)]
    lines = [
        f"{name}: {spread([m.seconds for m in runs], 1, ' s per case')}, peak "
        f"{spread([m.peak_mib for m in runs], 0, ' MiB')}"
        for name, runs in (("package (segsweep predict)", packages), ("workflow", workflows))
    ]
    lines.append(
        f"package/workflow: time {spread(time_ratio, 2)}, peak memory {spread(peak_ratio, 2)} "
        f"over {len(packages)} round{'s' if len(packages) != 1 else ''}"
    )
    native = (
        "n/a"
        if resampling is None
        else f"{resampling['copies']:.2f} copies (bound {resampling['bound']:.2f})"
    )
    lines.append(
        f"predict: package/workflow time {spread(time_ratio, 2)}, peak memory "
        f"{spread(peak_ratio, 2)}; native resampling {native}"
    )
    return lines


def scan_line(path: Path) -> str:
    """What the scan is: file, size, spacing, extent, float32 size."""
    header = sitk.ImageFileReader()
    header.SetFileName(str(path))
    header.ReadImageInformation()
    size, spacing = header.GetSize(), header.GetSpacing()
    box = np.asarray(size) * np.asarray(spacing)
    return (
        f"scan {path.name}: {'x'.join(map(str, size))} voxels of "
        f"{' x '.join(f'{s:.4g}' for s in spacing)} mm ({' x '.join(f'{e:.4g}' for e in box)} "
        f"mm), {math.prod(size) * 4 / MIB:.1f} MiB as float32"
    )


# -- the jobs run in their own processes -----------------------------------------------------


def workflow_predict(argv: Sequence[str]) -> None:
    """`workflow-predict`: the crop's prediction as rule predict_unlabelled makes it, with the
    package's networks; writes the label map <out-dir>/<subject>.nii.gz."""
    parser = argparse.ArgumentParser(prog="segsweep.bench.predict workflow-predict")
    for name in ("model", "subject", "crop", "crop-json", "ingest-json", "out-dir"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=THREADS)
    args = parser.parse_args(argv)
    import torch

    from segsweep.deploy.predictor import Predictor, Prepared
    from segsweep.io.records import read_json

    torch.set_num_threads(args.threads)
    predictor = Predictor.load(args.model, args.device)
    prepared = Prepared(
        read_volume(args.crop, args.subject),
        read_json(args.crop_json),
        read_json(args.ingest_json)["original"],
    )
    prediction = predictor.predict_prepared(prepared)
    out = Path(args.out_dir)
    write_image(prediction.labels, out / f"{args.subject}.nii.gz")


def workflow_resampling(argv: Sequence[str]) -> None:
    """`workflow-resampling`: `Predictor.predict` on the scan with to_native measured
    (`peak_added`); writes the calls and the native voxel count as JSON to --out."""
    parser = argparse.ArgumentParser(prog="segsweep.bench.predict workflow-resampling")
    for name in ("model", "scan", "out"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=THREADS)
    args = parser.parse_args(argv)
    import torch

    from segsweep.deploy import predictor as module

    torch.set_num_threads(args.threads)
    calls: list[dict[str, Any]] = []
    module.to_native = peak_added(module.to_native, calls)
    predictor = module.Predictor.load(args.model, args.device)
    prediction = predictor.predict(predictor.read([args.scan]))
    voxels = math.prod(prediction.labels.GetSize())
    Path(args.out).write_text(json.dumps({"voxels": voxels, "calls": calls}))


JOBS = {"workflow-predict": workflow_predict, "workflow-resampling": workflow_resampling}


def measure_resampling(
    model: str | Path, scan: str | Path, folder: Path, device: str, threads: int
) -> dict[str, Any]:
    """The native resampling's summary (`resampling_summary`), measured in its own process."""
    out = folder / "resampling.json"
    command = [
        *(sys.executable, "-m", "segsweep.bench.predict", "workflow-resampling"),
        *("--model", str(model), "--scan", str(scan), "--out", str(out)),
        *("--device", device, "--threads", str(threads)),
    ]
    measure(command, folder / "resampling.log", {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)})
    measured = json.loads(out.read_text())
    return resampling_summary(measured["calls"], measured["voxels"])


def main(argv: list[str] | None = None) -> None:
    """Print the scan, each round's figures, the medians and ranges, the native resampling
    and, last, the summary line."""
    parser = argparse.ArgumentParser(
        prog="python -m segsweep.bench predict", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model", required=True, type=Path, help="the package zip")
    parser.add_argument(
        "--size",
        type=int,
        nargs=3,
        default=list(THESIS_SIZE),
        metavar=("X", "Y", "Z"),
        help="the scan's voxels (default: the thesis size 512 512 100)",
    )
    parser.add_argument("--scan", type=Path, help="resample this scan (else synthetic epi-012)")
    parser.add_argument("--seed", type=int, default=SEED, help="the synthetic cohort's seed")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of (a) then (b)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=int, default=THREADS, help="torch CPU threads")
    parser.add_argument("--keep", type=Path, help="work here and keep the files (else a temp)")
    args = parser.parse_args(argv)
    manifest = read_manifest(args.model)

    with tempfile.TemporaryDirectory(prefix="bench-predict-") as temporary:
        folder = args.keep or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        scan = make_scan(folder / "scan", args.size, args.scan, args.seed)
        print(f"{scan_line(scan)}; made in {time.perf_counter() - start:.1f} s", flush=True)
        packages, workflows = [], []
        for number in range(1, args.repeats + 1):
            here = folder / f"round-{number}"
            package = measure(
                package_command(args.model, scan, here / "package", args.device, args.threads),
                here / "package.log",
            )
            stages = workflow_stages(
                args.model, manifest, scan, here / "results", args.device, args.threads
            )
            workflow, each = measure_stages(stages, here / "logs")
            packages.append(package)
            workflows.append(workflow)
            print(round_line(number, package, workflow, each), flush=True)
        case = scan.name.split(".")[0]
        agreement = compare_labels(
            here / "package" / f"{case}.nii.gz", here / "results" / "unlabelled" / f"{case}.nii.gz"
        )
        print(f"label maps, package against workflow: {agreement}", flush=True)
        resampling = measure_resampling(args.model, scan, folder, args.device, args.threads)
        print(resampling_line(resampling), flush=True)
        lines = summary_lines(packages, workflows, resampling)
        print("\n".join(lines))


if __name__ == "__main__":
    if sys.argv[1:2] and sys.argv[1] in JOBS:
        JOBS[sys.argv[1]](sys.argv[2:])
    else:
        main()
