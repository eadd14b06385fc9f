"""Device leases: concurrent processes hold distinct devices; a killed one frees its device."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from segsweep.devices import lease_device

SCRIPTS = str(Path(__file__).resolve().parents[1] / "scripts")


def _env(tmp_path, count: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    return {
        **env,
        "SEGSWEEP_GPU_COUNT": str(count),
        "SEGSWEEP_LOCK_DIR": str(tmp_path / "locks"),
        "PYTHONPATH": SCRIPTS,
    }


def _holder(env: dict[str, str], hold: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "segsweep.devices", "--hold", str(hold)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def _leased(process: subprocess.Popen) -> int:
    line = process.stdout.readline().split()
    assert line[0] == "leased", line
    return int(line[1])


def test_concurrent_jobs_hold_distinct_devices_and_a_killed_one_frees_its_device(tmp_path):
    env = _env(tmp_path, 3)
    holders = [_holder(env, 60) for _ in range(3)]
    try:
        indices = [_leased(p) for p in holders]
        assert sorted(indices) == [0, 1, 2]
        waiting = _holder(env, 0)  # a fourth job waits while all three are held
        time.sleep(1.5)
        assert waiting.poll() is None
        victim = holders[1]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        assert _leased(waiting) == indices[1]  # the kernel dropped the killed job's lock
        waiting.wait(timeout=30)
    finally:
        for process in holders:
            process.kill()
            process.wait()


def test_lease_in_process_without_gpu_runs_on_cpu(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("SEGSWEEP_GPU_COUNT", "2")
    lock_dir = tmp_path / "locks"
    first, second = lease_device(lock_dir), lease_device(lock_dir)
    assert (first.index, second.index) == (0, 1)
    if not torch.cuda.is_available():
        assert first.device == torch.device("cpu")
    with pytest.raises(TimeoutError, match="all 2 devices"):
        lease_device(lock_dir, poll_s=0.05, timeout_s=0.1)
    first.release()
    assert lease_device(lock_dir).index == 0
    monkeypatch.setenv("SEGSWEEP_GPU_COUNT", "0")
    assert lease_device(lock_dir).device == torch.device("cpu")


def test_existing_cuda_visible_devices_is_honoured_without_locks(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    monkeypatch.setenv("SEGSWEEP_GPU_COUNT", "1")
    lease = lease_device(tmp_path / "locks")
    assert lease.index is None and lease.handle is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    assert not (tmp_path / "locks").exists()
