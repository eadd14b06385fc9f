"""Which torch device a job computes on, and leasing one GPU per training job.

Locally, concurrent jobs take distinct GPUs: `lease_device` holds an exclusive `flock` on one
lock file per device (`<lock dir>/gpu-<i>.lock`) for the life of the process; the kernel frees
the lock when the process dies, however it dies (SIGKILL included), so a crashed job never
strands its GPU. When every device is held, the job waits for one.

An existing CUDA_VISIBLE_DEVICES is used as given, never rewritten: that is how SLURM hands out
GPUs, and the allocation already decides which device a job owns, so no lock is taken and "cuda"
means the first visible device. Without GPUs the job runs on the CPU.

Environment:
- SEGSWEEP_GPU_COUNT: number of devices to lease among (default: torch.cuda.device_count());
  tests set it on a CPU machine, where a lease is then real but the job computes on the CPU;
- SEGSWEEP_LOCK_DIR: where the lock files live (default: /tmp/segsweep-gpu-locks), shared by
  every job of the machine.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

CHOICES = ("auto", "cpu", "cuda")
DEFAULT_LOCK_DIR = "/tmp/segsweep-gpu-locks"


def choose_device(preferred: str = "auto") -> torch.device:
    """ "auto": the first visible GPU if there is one, else the CPU; "cpu"; "cuda" or "cuda:N"
    (an error when no GPU is visible, rather than a silent, slow fallback)."""
    if preferred == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preferred == "cpu":
        return torch.device("cpu")
    if preferred == "cuda" or preferred.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {preferred!r} requested but no CUDA device is visible")
        return torch.device(preferred)
    raise ValueError(f"unknown device {preferred!r}; choose one of {', '.join(CHOICES)} or cuda:N")


@dataclass
class Lease:
    """A device held by this process; `index` is None when no lock was needed."""

    device: torch.device
    index: int | None = None
    handle: object | None = None  # the open, flocked lock file

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()  # closing drops the flock
            self.handle = None


def device_count() -> int:
    """Devices to lease among: SEGSWEEP_GPU_COUNT if set, else the visible CUDA devices."""
    override = os.environ.get("SEGSWEEP_GPU_COUNT")
    if override not in (None, ""):
        return int(override)
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _try_lock(path: Path):
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def lease_device(
    lock_dir: str | Path | None = None, poll_s: float = 1.0, timeout_s: float | None = None
) -> Lease:
    """Lease a device for this process (see the module docstring); waits while all are held."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") not in (None, ""):
        return Lease(choose_device("auto"))
    count = device_count()
    if count == 0:
        return Lease(torch.device("cpu"))
    lock_dir = Path(lock_dir or os.environ.get("SEGSWEEP_LOCK_DIR") or DEFAULT_LOCK_DIR)
    lock_dir.mkdir(parents=True, exist_ok=True)
    start, announced = time.monotonic(), False
    while True:
        for index in range(count):
            handle = _try_lock(lock_dir / f"gpu-{index}.lock")
            if handle is not None:
                cuda = torch.cuda.is_available() and index < torch.cuda.device_count()
                device = torch.device(f"cuda:{index}" if cuda else "cpu")
                return Lease(device, index, handle)
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"all {count} devices in {lock_dir} stayed leased")
        if not announced:
            print(f"waiting for one of {count} devices ({lock_dir})", file=sys.stderr, flush=True)
            announced = True
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> None:
    """Lease a device, print `leased <index> <device>` and hold it for --hold seconds."""
    parser = argparse.ArgumentParser(prog="segsweep devices", description=main.__doc__)
    parser.add_argument("--hold", type=float, default=0.0, help="seconds to hold the lease")
    parser.add_argument("--lock-dir", default=None)
    args = parser.parse_args(argv)
    lease = lease_device(args.lock_dir)
    print(f"leased {lease.index} {lease.device}", flush=True)
    time.sleep(args.hold)
    lease.release()


if __name__ == "__main__":
    main()
