"""One GPU per training job, locally, and the same numbers whatever the concurrency.

The real Snakefile trains a sweep of six runs on the tiny cohort with `--cores 8 --resources
gpu=4` and a device count of four (SEGSWEEP_GPU_COUNT; on a CPU machine the leases are real, the
computation runs on the CPU). From the runs' provenance.json (leased device index, start and end)
the test checks that four trainings ran at once on four distinct devices, never more than four,
and that trainings running at the same time never shared a device. Then the same configuration
runs again in a fresh directory with `--cores 2` and no GPUs (two trainings at a time, no
leases): every run's validation tables and selection.json are byte-for-byte identical. Both
start from the tiny cohort's preprocessing (tests/conftest.py `seeded`). The devices are
leased on this CPU machine: the test runs in every CI.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import pytest
import yaml
from runs import configure, snakemake, succeeded
from tiny import TINY_CONFIG

GPUS = 4
# Long enough that the first four trainings certainly overlap: on this 2-core machine they lease
# within 0.25 s of each other and then train for 4–10 s (four at once, depending on the load).
EPOCHS = 40
SWEEP = {
    "grids": {
        "six": {"loss": ["cross_entropy", "dice", "ce_dice"], "labels": ["merged", "separate"]}
    }
}
RUNS = [  # ids of the sweep's runs (base: loss dice, labels merged)
    "default",
    "labels-separate",
    "labels-separate_loss-ce-dice",
    "labels-separate_loss-cross-entropy",
    "loss-ce-dice",
    "loss-cross-entropy",
]
COMPARED = ["val/per_slice.csv", "val/per_patient.csv", "selection.json"]

pytestmark = pytest.mark.workflow


def run_to_validation(workdir: Path, env: dict[str, str], *args: str, cores: int) -> None:
    """Run the Snakefile in the seeded `workdir` up to every run's validation tables."""
    config = yaml.safe_load(yaml.safe_dump(TINY_CONFIG))
    config["train"].update(epochs=EPOCHS, checkpoint_every=EPOCHS // 2)
    configure(workdir, config, SWEEP)
    targets = [f"results/runs/{run}/{name}" for run in RUNS for name in COMPARED]
    succeeded(snakemake(workdir, *targets, *args, cores=cores, env=env, timeout=900))


def leases(workdir: Path) -> list[tuple[float, float, int | None]]:
    """(start, end, leased device index) of every training, from its provenance.json."""
    spans = []
    for run in RUNS:
        record = json.loads((workdir / "results/runs" / run / "provenance.json").read_text())
        start, end = (
            datetime.datetime.fromisoformat(record[key]).timestamp()
            for key in ("started_utc", "ended_utc")
        )
        spans.append((start, end, record["device_index"]))
    return spans


def most_at_once(spans: list[tuple[float, float, int | None]]) -> int:
    """The largest number of trainings running at the same instant."""
    events = sorted([(s, 1) for s, _, _ in spans] + [(e, -1) for _, e, _ in spans])
    running = peak = 0
    for _, step in events:  # an end sorts before a start at the same instant
        running += step
        peak = max(peak, running)
    return peak


def test_four_devices_at_once_and_identical_numbers_at_any_concurrency(
    seeded, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEGSWEEP_", "CUDA_"))}
    parallel, serial = seeded("gpus"), seeded("cpu")
    gpu_env = {**env, "SEGSWEEP_GPU_COUNT": str(GPUS), "SEGSWEEP_LOCK_DIR": str(tmp_path / "lk")}
    run_to_validation(parallel, gpu_env, "--resources", f"gpu={GPUS}", cores=8)
    spans = leases(parallel)
    assert sorted({index for _, _, index in spans}) == list(range(GPUS))
    assert most_at_once(spans) == GPUS, spans
    for i, (start, end, index) in enumerate(spans):
        for other_start, other_end, other_index in spans[i + 1 :]:
            if start < other_end and other_start < end:
                assert index != other_index, spans

    run_to_validation(serial, env, cores=2)
    assert {index for _, _, index in leases(serial)} == {None}  # no GPUs: no lease
    for run in RUNS:
        for name in COMPARED:
            one = (parallel / "results/runs" / run / name).read_bytes()
            two = (serial / "results/runs" / run / name).read_bytes()
            assert one == two, f"{run}/{name} differs between the two runs"
