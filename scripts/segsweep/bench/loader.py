"""Input pipeline benchmark (SPEC §9): can the loader starve a GPU?

At thesis scale (224x224 single-channel slices, batch 16, the default augmentation switched on) it
measures, in slices per second over the same shuffled batches:
- the loader: what `segsweep.train.loop` does per batch — the augmented batch straight from the
  in-memory split (`segsweep.model.augment.Augmenter.batch` with its defaults, the gather fused in);
- a plain memory copy of the same batches (the gather alone): the physical limit;
- one CPU training step of the thesis-scale 2D U-Net (forward, backward, Adam).
Last line: `loader: slices_per_s=<n> efficiency=<loader ÷ memory copy> ratio=<loader ÷ train
step>`; targets efficiency ≥ 0.25 and ratio ≥ 50.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from segsweep.config_schema import complete
from segsweep.model.augment import Augmenter
from segsweep.model.losses import Criterion
from segsweep.model.optimizers import make_optimizer
from segsweep.model.unet import build_model


def _rate(fn, batches: list[torch.Tensor], batch_size: int, repeats: int) -> float:
    """Slices per second of `fn` over the batches (best of `repeats` passes)."""
    return _rates({"fn": fn}, batches, batch_size, repeats)["fn"]


def _rates(
    fns: dict[str, Callable[[torch.Tensor], object]],
    batches: list[torch.Tensor],
    batch_size: int,
    repeats: int,
) -> dict[str, float]:
    """Slices per second of each function over the batches, best of `repeats` passes; the
    functions take turns pass by pass, so a burst of load from other processes on a shared
    machine hits them alike instead of skewing their ratio."""
    for fn in fns.values():
        fn(batches[0])  # warm up
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            for index in batches:
                fn(index)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: len(batches) * batch_size / seconds for name, seconds in best.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="segsweep.bench loader", description=__doc__)
    parser.add_argument("--size", type=int, default=224, help="slice height and width")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--slices", type=int, default=512, help="slices in the in-memory split")
    parser.add_argument("--batches", type=int, default=32, help="batches per timed pass")
    parser.add_argument("--depth", type=int, default=5, help="U-Net depth of the training step")
    parser.add_argument("--base-channels", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    shape = (args.slices, 1, args.size, args.size)
    images = torch.randn(shape, generator=generator)
    labels = torch.randint(0, 2, (args.slices, args.size, args.size), generator=generator)
    order = torch.randperm(args.slices, generator=generator)
    batches = [
        order[(i * args.batch_size) % args.slices :][: args.batch_size] for i in range(args.batches)
    ]
    hp = complete({"augment": True, "lr": 1e-3, "loss": "dice", "labels": "merged"}, "train")
    augment = Augmenter(hp, torch.Generator().manual_seed(1))

    def copy(index: torch.Tensor):
        return images[index], labels[index]

    def load(index: torch.Tensor):
        return augment.batch(images, labels, index)

    rates = _rates({"copy": copy, "load": load}, batches, args.batch_size, repeats=10)
    copy_rate, load_rate = rates["copy"], rates["load"]
    print(f"memory copy: {copy_rate:.0f} slices/s", flush=True)
    print(f"loader (gather + augmentation): {load_rate:.0f} slices/s", flush=True)

    model_hp = {**hp, "depth": args.depth, "base_channels": args.base_channels}
    model = build_model(model_hp, 1, 2).train()
    optimizer = make_optimizer(model_hp, model.parameters())
    criterion = Criterion(model_hp)

    def step(index: torch.Tensor) -> None:
        x, t = load(index)
        optimizer.zero_grad()
        criterion(model, x, t).backward()
        optimizer.step()

    train_rate = _rate(step, batches[:1], args.batch_size, repeats=1)
    print(
        f"training step (U-Net depth {args.depth}, base {args.base_channels}, CPU): "
        f"{train_rate:.2f} slices/s",
        flush=True,
    )
    print(
        f"loader: slices_per_s={load_rate:.0f} efficiency={load_rate / copy_rate:.3f} "
        f"ratio={load_rate / train_rate:.0f}"
    )


if __name__ == "__main__":
    main()
