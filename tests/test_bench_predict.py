"""The prediction bench's parts on a tiny scale: the scan it makes (size and physical extent),
time and peak memory of stub commands, the native resampling's measurement and the printed
figures' format. (The bench on a real package: `python -m segsweep.bench predict`.)"""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from segsweep.bench import predict as bench
from segsweep.bench.predict import Measurement

TINY = (64, 64, 20)
EPI_EXTENT = (160.0, 160.0, 123.0)  # the epi source's native 800 x 800 x 41 of 0.2 x 0.2 x 3 mm
PYTHON = sys.executable


def _corner(image: sitk.Image) -> np.ndarray:
    """The first voxel's outer corner: origin - direction @ spacing / 2."""
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    return np.asarray(image.GetOrigin()) - direction @ (np.asarray(image.GetSpacing()) / 2)


def test_synthetic_scan_has_the_size_over_the_native_extent(tmp_path):
    path = bench.make_scan(tmp_path, TINY)
    assert path.name == "epi-012.mhd" and path.with_suffix(".zraw").is_file()
    image = sitk.ReadImage(str(path))
    assert image.GetSize() == TINY
    assert bench.extent(image) == pytest.approx(EPI_EXTENT)
    assert image.GetPixelID() == sitk.sitkFloat32
    assert float(sitk.GetArrayViewFromImage(image).max()) > 0


def test_a_given_scan_is_resampled_over_its_own_box(tmp_path):
    source = sitk.GetImageFromArray(np.full((10, 20, 30), 7, np.int16))
    source.SetSpacing((0.5, 0.7, 3.0))
    source.SetOrigin((-40.0, 12.5, 3.0))
    source.SetDirection((1, 0, 0, 0, 0, -1, 0, 1, 0))  # coronal, as the cohort's epi scans
    sitk.WriteImage(source, str(tmp_path / "knee.nii.gz"))

    path = bench.make_scan(tmp_path / "out", TINY, scan=tmp_path / "knee.nii.gz")
    image = sitk.ReadImage(str(path))
    assert path.name == "knee.mhd"
    assert image.GetSize() == TINY
    assert bench.extent(image) == pytest.approx(bench.extent(source))
    assert _corner(image) == pytest.approx(_corner(source))
    assert image.GetDirection() == source.GetDirection()
    assert image.GetPixelID() == sitk.sitkInt16
    assert np.all(sitk.GetArrayViewFromImage(image) == 7)  # linear on a constant stays constant


def test_measure_times_and_peaks_each_command_on_its_own(tmp_path):
    big = f"import numpy, time; a = numpy.ones({96 * 2**20 // 8}); time.sleep(0.2)"
    large = bench.measure([PYTHON, "-c", big], tmp_path / "big.log")
    small = bench.measure([PYTHON, "-c", "print('done')"], tmp_path / "small.log")
    assert large.seconds >= 0.2 and large.peak_mib >= 96
    assert small.peak_mib < large.peak_mib - 64  # the first command's peak does not carry over
    assert (tmp_path / "small.log").read_text().strip() == "done"


def test_measure_stops_at_a_failing_command(tmp_path):
    failing = [PYTHON, "-c", "import sys; print('bad input'); sys.exit(3)"]
    with pytest.raises(RuntimeError, match="exited 3: bad input"):
        bench.measure(failing, tmp_path / "failing.log")


def test_stages_sum_seconds_and_take_the_largest_peak(tmp_path):
    stages = [
        ("sleep", [PYTHON, "-c", "import time; time.sleep(0.3)"]),
        ("allocate", [PYTHON, "-c", f"import numpy; a = numpy.ones({64 * 2**20 // 8})"]),
    ]
    total, each = bench.measure_stages(stages, tmp_path / "logs")
    assert list(each) == ["sleep", "allocate"]
    assert total.seconds == pytest.approx(sum(m.seconds for m in each.values()))
    assert total.peak_mib == max(m.peak_mib for m in each.values()) == each["allocate"].peak_mib
    assert (tmp_path / "logs" / "allocate.log").is_file()


def test_peak_added_counts_a_map_made_in_the_call():
    voxels = 256 * 256 * 160  # 40 MiB as float32: over glibc's largest mmap threshold, 32 MiB
    calls = []

    def make_maps():
        small = sitk.Image([256, 256, 160], sitk.sitkUInt8) + 1
        return sitk.Image([256, 256, 160], sitk.sitkFloat32) + 1.0, small

    measured = bench.peak_added(lambda: make_maps()[0], calls)
    kept = measured()
    assert kept.GetSize() == (256, 256, 160) and len(calls) == 1
    assert calls[0]["bytes"] == 4 and calls[0]["how"] in {"reset", "sampled"}
    summary = bench.resampling_summary(calls, voxels)
    # one float32 map kept, its temporary twin and the uint8 map: 2.25 copies at most
    assert 0.9 <= summary["copies"] <= 2.5
    assert summary["copy_mib"] == pytest.approx(40.0)


def test_resampling_bounds_follow_the_stated_two_maps_per_call():
    calls = [
        {"before_kib": 1000, "peak_kib": 1000 + 50 * 1024, "bytes": 1, "how": "reset"},
        {"before_kib": 1000 + 25 * 1024, "peak_kib": 1000 + 230 * 1024, "bytes": 4, "how": "reset"},
    ]
    each, total = bench.resampling_bounds(calls)
    assert each == [0.5, 2.0] and total == pytest.approx(2.25)
    for call in calls:
        call["process_peak_kib"] = 900 * 1024
    summary = bench.resampling_summary(calls, 100 * 2**20 // 4)  # a 100 MiB float32 copy
    assert summary["copies"] == pytest.approx(2.3)
    assert [c["copies"] for c in summary["calls"]] == pytest.approx([0.5, 2.05])
    line = bench.resampling_line(summary)
    assert re.fullmatch(
        r"native resampling \(to_native, 26,214,400 native voxels; one float32 copy 100\.0 MiB\):"
        r" labels \+50 MiB \(0\.50 copies, bound 0\.50\); uncertainty \+205 MiB \(2\.05 copies,"
        r" bound 2\.00\); both \+230 MiB = 2\.30 copies against the stated bound 2\.25 \(peak"
        r" reset; over 1 MiB resident, the process's peak before it 900 MiB\)",
        line,
    ), line


def test_printed_figures():
    packages = [Measurement(20.0, 1800.0), Measurement(22.0, 1900.0)]
    workflows = [Measurement(50.0, 1000.0), Measurement(40.0, 1000.0)]
    stages = {"n4": Measurement(30.0, 1000.0), "predict": Measurement(10.0, 900.0)}
    line = bench.round_line(1, packages[0], workflows[0], stages)
    assert line == (
        "round 1: package 20.0 s, peak 1800 MiB; workflow 50.0 s (n4 30.0, predict 10.0), "
        "peak 1000 MiB (largest: n4); package/workflow time 0.40, peak 1.80"
    )
    resampling = {"copies": 2.18, "bound": 2.25}
    lines = bench.summary_lines(packages, workflows, resampling)
    assert lines == [
        "package (segsweep predict): 21.0 s per case (20.0–22.0), peak 1850 MiB (1800–1900)",
        "workflow: 45.0 s per case (40.0–50.0), peak 1000 MiB (1000–1000)",
        "package/workflow: time 0.48 (0.40–0.55), peak memory 1.85 (1.80–1.90) over 2 rounds",
        "predict: package/workflow time 0.48 (0.40–0.55), peak memory 1.85 (1.80–1.90); "
        "native resampling 2.18 copies (bound 2.25)",
    ]
    one = bench.summary_lines(packages[:1], workflows[:1], None)
    assert one[-1] == "predict: package/workflow time 0.40, peak memory 1.80; native resampling n/a"


def test_scan_line(tmp_path):
    path = bench.make_scan(tmp_path, TINY)
    assert bench.scan_line(path) == (
        "scan epi-012.mhd: 64x64x20 voxels of 2.5 x 2.5 x 6.15 mm (160 x 160 x 123 mm), "
        "0.3 MiB as float32"
    )


MANIFEST = {
    "labels": {"femur": 1, "tibia": 2, "fibula": 3},
    "n4": {"enabled": True, "shrink": 8, "iterations": [50, 50], "convergence": 0.001},
    "crop": {
        "centre": "joint",
        "centre_mm": None,
        "plan": {"margin": 0.1, "window_mm": 116.0},
        "size": 64,
        "slices": 24,
        "window": "planned",
        "window_mm": 116.0,
    },
}


def test_workflow_stages_are_the_rules_commands(tmp_path):
    scan = tmp_path / "epi-012.mhd"
    stages = bench.workflow_stages("m.zip", MANIFEST, scan, tmp_path / "results", "cpu", 2)
    names = [name for name, _ in stages]
    assert names == ["ingest_check", "ingest_image", "n4", "crop_centre", "crop_image", "predict"]
    commands = dict(stages)
    assert commands["ingest_image"][1:5] == ["-m", "segsweep", "ingest", "image"]
    crop = commands["crop_image"]
    config = json.loads(crop[crop.index("--config-json") + 1])
    assert config["window_mm"] == "auto" and config["margin"] == 0.1
    plan = crop[crop.index("--plan-json") + 1]
    assert json.loads(open(plan).read())["window_mm"] == 116.0
    assert "workflow-predict" in commands["predict"]
    assert commands["predict"][-4:] == ["--device", "cpu", "--threads", "2"]

    fixed = {**MANIFEST, "crop": {**MANIFEST["crop"], "window": "config", "plan": None}}
    config, plan = bench.crop_settings(fixed)
    assert config["window_mm"] == 116.0 and plan is None
