"""Training benchmark: does streaming keep pace with resident data, and does a split larger than
the memory budget train within it?

On whatever device it finds, at thesis scale (224 × 224 slices, batch 16, augmentation on; and a
3D case of 16 × 96 × 96 volumes, batch 2), the real training loop (`segsweep.train.loop.Trainer`)
trains one epoch on the same noisy split resident and streamed, in turns, twice (the best pass
of each counts, so a burst of load from elsewhere hits both alike), and reports:
- steps per second, resident and streamed (target: streamed ≥ 0.9 × resident);
- the share of a streamed step spent waiting for data (target ≤ 0.05);
- the peak memory of a child process that trains streamed on a split 4 × larger than its memory
  budget (`train.memory_budget_gb`: `--budget-gb`, 2 GB on the CPU and 4 on a GPU, above what
  the network itself needs; target: peak under the budget): its peak resident memory on the
  CPU, the peak memory torch allocated on a GPU. That split compresses well on disk (mostly
  empty slices) so the benchmark writes it fast; its tensors still take 4 × the budget.
Last line: `train: device=<d> resident_steps_per_s=<n> streamed_steps_per_s=<n>
data_wait_share=<f> peak_mem_gb=<f>` (the 2D case; the 3D case prints its own line before).
The network is the thesis's on a GPU (depth 5, 32 base channels) and a small one on the CPU
(depth 3, 8), so that the CPU run takes minutes; a smaller network makes the data path weigh more.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segsweep.config_schema import complete
from segsweep.devices import choose_device
from segsweep.io.splits import write_split
from segsweep.train.loop import RunFiles, Trainer, training_data

CLASSES = ["femur", "tibia", "fibula"]
OVER_BUDGET_STEPS = 20  # of the over-budget run: many blocks read and dropped


def bench_split(path: Path, n: int, shape: tuple[int, ...], noisy: bool, seed: int) -> Path:
    """n samples of `shape` (slices [H, W], 8 per patient; or volumes [Z, H, W], one per
    patient, in both layouts) with three square classes, written by the packing's writer;
    `noisy`: Gaussian noise as in MRI (it compresses as little), else mostly empty slices."""
    rng = np.random.default_rng(seed)
    per_patient = shape[0] if len(shape) == 3 else 8
    height, width = shape[-2:]
    counts = [per_patient] * math.ceil(n * (1 if len(shape) == 2 else per_patient) / per_patient)

    def samples():
        for _ in counts:
            mask = np.zeros((per_patient, height, width, 3), np.uint8)
            for k in range(per_patient):
                r, c = rng.integers(0, height // 2), rng.integers(0, width // 2)
                mask[k, r : r + height // 4, c : c + width // 4, k % 3] = 1
            image = mask @ np.array([2.0, 1.0, 3.0], np.float32)
            if noisy:
                image += rng.normal(0, 0.3, image.shape).astype(np.float32)
            yield image[..., None], mask

    subjects = [f"p{i:05d}" for i in range(len(counts))]
    write_split(
        path,
        subjects,
        counts,
        (height, width, 1, 3),
        CLASSES,
        {},
        [[1.0, 1.0, 1.0]] * len(subjects),
        samples(),
        volumes=len(shape) == 3,
    )
    return path


def epoch(hp: dict[str, Any], train: Path, val: Path, folder: Path, device) -> dict[str, float]:
    """One epoch of training (no validation) with `hp`: steps per second and the share of
    the epoch spent waiting for data."""
    data = training_data(hp, train, val, device=device)
    trainer = Trainer(hp, data, RunFiles.in_folder(folder), device)
    start = time.perf_counter()
    trainer.train_epoch(start)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    for samples in data.streamed or ():
        samples.close()
    return {"steps_per_s": trainer.steps_per_epoch / seconds, "wait": trainer.data_wait_s / seconds}


def over_budget(
    hp: dict[str, Any], train: str, val: str, folder: str, device: str, steps: int, out
) -> None:
    """Child process: `steps` steps of streamed training on a split over the budget (the
    first of its epoch); put its peak memory (GB)."""
    device = torch.device(device)
    data = training_data(hp, Path(train), Path(val), device=device)
    if data.streamed is None:
        raise RuntimeError("the over-budget split fits the budget: nothing streams")
    trainer = Trainer(hp, data, RunFiles.in_folder(folder), device)
    trainer.steps_per_epoch = min(trainer.steps_per_epoch, steps)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer.train_epoch(time.perf_counter())
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB → GB
    out.put(peak)


def case(
    name: str,
    hp: dict[str, Any],
    shape: tuple[int, ...],
    n: int,
    device,
    budget_gb: float,
    tmp: Path,
) -> str:
    """Resident against streamed on n noisy samples, and the peak memory over budget; the
    summary line of this case."""
    train = bench_split(tmp / f"{name}-train.h5", n, shape, noisy=True, seed=0)
    val = bench_split(tmp / f"{name}-val.h5", 2 * hp["batch_size"], shape, noisy=True, seed=1)
    best = {"resident": {"steps_per_s": 0.0}, "streamed": {"steps_per_s": 0.0}}
    for round_ in range(2):
        for mode in best:
            run = epoch({**hp, "data": mode}, train, val, tmp / f"{name}-{mode}-{round_}", device)
            print(f"{name} {mode}: {run['steps_per_s']:.3f} steps/s, wait {run['wait']:.3f}")
            if run["steps_per_s"] > best[mode]["steps_per_s"]:
                best[mode] = run
    sample_bytes = math.prod(shape) * (4 + 8)
    big_n = math.ceil(4 * budget_gb * 2**30 / sample_bytes)
    big = bench_split(tmp / f"{name}-big.h5", big_n, shape, noisy=False, seed=2)
    big_val = bench_split(tmp / f"{name}-big-val.h5", hp["batch_size"], shape, noisy=False, seed=3)
    gb = big_n * sample_bytes / 2**30
    print(f"{name}: over budget, {big_n} samples, {gb:.2f} GB as tensors, budget {budget_gb} GB")
    limited = {**hp, "data": "auto", "memory_budget_gb": budget_gb}
    context = multiprocessing.get_context("spawn")  # a fresh process: its own peak memory
    out = context.Queue()
    folder = str(tmp / f"{name}-big")
    child = context.Process(
        target=over_budget,
        args=(limited, str(big), str(big_val), folder, str(device), OVER_BUDGET_STEPS, out),
    )
    child.start()
    peak = out.get()
    child.join()
    ratio = best["streamed"]["steps_per_s"] / best["resident"]["steps_per_s"]
    print(f"{name}: streamed/resident {ratio:.3f}, peak {peak:.3f} GB of a {budget_gb} GB budget")
    return (
        f"device={device.type} resident_steps_per_s={best['resident']['steps_per_s']:.3f} "
        f"streamed_steps_per_s={best['streamed']['steps_per_s']:.3f} "
        f"data_wait_share={best['streamed']['wait']:.4f} peak_mem_gb={peak:.3f}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="segsweep.bench train", description=__doc__)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--steps", type=int, default=12, help="steps of a timed epoch")
    parser.add_argument(
        "--budget-gb",
        type=float,
        default=None,
        help="of the over-budget run (default: 2 CPU, 4 GPU)",
    )
    parser.add_argument("--size", type=int, default=224, help="2D slice height and width")
    parser.add_argument("--volume-size", type=int, default=96, help="3D volume height, width")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = choose_device(args.device)
    cuda = device.type == "cuda"
    budget_gb = args.budget_gb or (4.0 if cuda else 2.0)  # above the network's own memory
    network = {"depth": 5, "base_channels": 32} if cuda else {"depth": 3, "base_channels": 8}
    base = {"augment": True, "labels": "merged", "loss": "dice", "epochs": 1, **network}
    base |= {"checkpoint_every": 1000, "seed": 0}
    with tempfile.TemporaryDirectory(prefix="segsweep-bench-") as folder:
        tmp = Path(folder)
        hp3 = complete({**base, "model": "unet3d", "batch_size": 2, "depth": 3}, "train")
        line3 = case(
            "3d",
            hp3,
            (16, args.volume_size, args.volume_size),
            2 * args.steps,
            device,
            budget_gb,
            tmp,
        )
        print(f"train-3d: {line3}", flush=True)
        hp2 = complete({**base, "batch_size": 16}, "train")
        line2 = case("2d", hp2, (args.size, args.size), 16 * args.steps, device, budget_gb, tmp)
        print(f"train: {line2}", flush=True)


if __name__ == "__main__":
    main()
