"""Train one run of the sweep: a 2D U-Net on the slices of train.h5, validated on val.h5.

Outputs in the run directory (see the workflow's contracts):
- params.yaml: every effective hyperparameter and the run_id;
- train_log.csv: one row per epoch (epoch, step, lr, train_loss, val_loss, val_dice, time_s);
- checkpoints/epoch-XXXX.pt every `checkpoint_every` epochs and at the last epoch;
- checkpoints/index.json, written last: its presence means the run is complete.

Training is deterministic on CPU for a fixed `seed`: the weights are initialised after
`torch.manual_seed(seed)`, slices are shuffled every epoch with `numpy.random.default_rng(seed)`,
and torch is asked for deterministic algorithms. The learning rate follows the knee thesis's
time-based decay, lr / (1 + decay * t) with t the global step (Keras' `decay`).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import yaml

from segsweep.devices import choose_device
from segsweep.errors import InputError
from segsweep.losses import get_loss
from segsweep.metrics import confusion_counts, overlap_metrics
from segsweep.models import build_model

LABEL_MODES = ("merged", "separate")
OPTIMIZERS = ("adam", "sgd")
LOG_COLUMNS = ("epoch", "step", "lr", "train_loss", "val_loss", "val_dice", "time_s")


@dataclass(frozen=True)
class Split:
    """One packed split in memory (the datasets are small)."""

    images: np.ndarray  # float32 [n, rows, cols, c]
    masks: np.ndarray  # uint8 [n, rows, cols, m], one 0/1 channel per class
    patient_id: np.ndarray  # str [n]
    slice_id: np.ndarray  # int [n]
    classes: list[str]  # names of the mask channels


def read_split(path: Path) -> Split:
    """All slices of one HDF5 split, with an InputError naming a missing dataset or attribute."""
    path = Path(path)
    if not path.is_file():
        raise InputError(None, str(path), "dataset file not found")
    with h5py.File(path, "r") as h5:
        for name in ("images", "masks", "patient_id", "slice_id"):
            if name not in h5:
                raise InputError(None, str(path), f"missing HDF5 dataset '{name}'")
        if "classes" not in h5.attrs:
            raise InputError(None, str(path), "missing HDF5 attribute 'classes'")
        ids = [p.decode() if isinstance(p, bytes) else str(p) for p in h5["patient_id"][()]]
        split = Split(
            images=np.asarray(h5["images"][()], dtype=np.float32),
            masks=np.asarray(h5["masks"][()], dtype=np.uint8),
            patient_id=np.asarray(ids, dtype=str),
            slice_id=np.asarray(h5["slice_id"][()], dtype=np.int64),
            classes=list(json.loads(h5.attrs["classes"])),
        )
    if split.images.ndim != 4 or split.masks.shape[:3] != split.images.shape[:3]:
        raise InputError(
            None, str(path), f"images {split.images.shape} and masks {split.masks.shape} disagree"
        )
    if split.masks.shape[-1] != len(split.classes):
        raise InputError(
            None, str(path), f"{split.masks.shape[-1]} mask channels, classes {split.classes}"
        )
    return split


def targets(masks: np.ndarray, classes: list[str], label_mode: str) -> tuple[np.ndarray, list]:
    """Class-index targets [n, rows, cols] and the run's foreground class names.

    merged: 1 wherever any class is present (one "foreground" class); separate: 1 + the index of
    the mask channel (channel order = data classes), 0 for background.
    """
    present = masks.any(axis=-1)
    if label_mode == "merged":
        return present.astype(np.int64), ["foreground"]
    if label_mode == "separate":
        return np.where(present, masks.argmax(axis=-1) + 1, 0).astype(np.int64), list(classes)
    raise ValueError(f"unknown label mode {label_mode!r}; known: {', '.join(LABEL_MODES)}")


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """Channels-last numpy slices [n, H, W, c] as a float tensor [n, c, H, W]."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32))


def make_optimizer(hp: dict[str, Any], params) -> torch.optim.Optimizer:
    """Adam, or SGD with momentum 0.9 (the thesis's two choices)."""
    name = hp.get("optimizer", "adam")
    if name == "adam":
        return torch.optim.Adam(params, lr=hp["lr"])
    if name == "sgd":
        return torch.optim.SGD(params, lr=hp["lr"], momentum=0.9)
    raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")


def write_atomic(path: Path, write) -> None:
    """Write through a temporary file and rename, so a reader never sees a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2) + "\n"))


@torch.no_grad()
def validate(model, images, target, loss_fn, batch_size: int) -> tuple[float, float]:
    """Mean loss (weighted by batch size) and foreground Dice over the whole set."""
    model.eval()
    total, foreground = 0.0, []
    for start in range(0, len(images), batch_size):
        logits = model(images[start : start + batch_size])
        total += loss_fn(logits, target[start : start + batch_size]).item() * len(logits)
        foreground.append(logits.argmax(dim=1).cpu().numpy() > 0)
    counts = confusion_counts(np.concatenate(foreground), target.cpu().numpy() > 0)
    return total / len(images), float(overlap_metrics(*counts)["dice"])


def train_run(
    hp: dict[str, Any],
    train_h5: Path,
    val_h5: Path,
    out_dir: Path,
    device: torch.device | str | None = None,
    threads: int | None = None,
) -> None:
    """Train one run and write its params, log, checkpoints and (last) checkpoint index."""
    out_dir = Path(out_dir)
    hp = {**hp, "run_id": hp.get("run_id", out_dir.name)}
    device = choose_device() if device is None else torch.device(device)
    if threads:
        torch.set_num_threads(threads)
    train, val = read_split(train_h5), read_split(val_h5)
    if len(train.images) == 0 or len(val.images) == 0:
        raise InputError(None, f"{train_h5}, {val_h5}", "training and validation need slices")
    if train.classes != val.classes:
        raise InputError(None, str(val_h5), f"classes {val.classes} != training {train.classes}")
    y_train, classes = targets(train.masks, train.classes, hp["labels"])
    y_val, _ = targets(val.masks, val.classes, hp["labels"])
    loss_fn = get_loss(hp["loss"])

    torch.manual_seed(hp["seed"])
    torch.use_deterministic_algorithms(True, warn_only=True)
    rng = np.random.default_rng(hp["seed"])
    in_channels, out_channels = train.images.shape[-1], 1 + len(classes)
    model = build_model(hp, in_channels, out_channels).to(device)
    optimizer = make_optimizer(hp, model.parameters())

    x_train, x_val = to_tensor(train.images).to(device), to_tensor(val.images).to(device)
    t_train, t_val = torch.from_numpy(y_train).to(device), torch.from_numpy(y_val).to(device)
    ckpt_dir = out_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "params.yaml").write_text(yaml.safe_dump(hp, sort_keys=True))
    meta = {
        "hp": hp,
        "classes": classes,
        "label_mode": hp["labels"],
        "in_channels": in_channels,
        "out_channels": out_channels,
    }
    batch_size, step, saved = int(hp["batch_size"]), 0, []
    with open(out_dir / "train_log.csv", "w", newline="") as log_file:
        log = csv.DictWriter(log_file, fieldnames=LOG_COLUMNS)
        log.writeheader()
        for epoch in range(1, int(hp["epochs"]) + 1):
            start_time = time.perf_counter()
            model.train()
            order = rng.permutation(len(x_train))
            total = 0.0
            for start in range(0, len(order), batch_size):
                index = torch.from_numpy(order[start : start + batch_size]).to(device)
                lr = hp["lr"] / (1 + hp.get("decay", 0.0) * step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                optimizer.zero_grad()
                loss = loss_fn(model(x_train[index]), t_train[index])
                loss.backward()
                optimizer.step()
                step += 1
                total += loss.item() * len(index)
            val_loss, val_dice = validate(model, x_val, t_val, loss_fn, batch_size)
            row = {
                "epoch": epoch,
                "step": step,
                "lr": lr,  # of the epoch's last step
                "train_loss": total / len(x_train),
                "val_loss": val_loss,
                "val_dice": val_dice,
                "time_s": round(time.perf_counter() - start_time, 3),
            }
            log.writerow(row)
            log_file.flush()
            print(", ".join(f"{k} {v:.4g}" for k, v in row.items()), flush=True)
            if epoch % int(hp["checkpoint_every"]) == 0 or epoch == int(hp["epochs"]):
                name = f"epoch-{epoch:04d}.pt"
                state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
                checkpoint = {"model": state, "epoch": epoch, "step": step, **meta}
                write_atomic(ckpt_dir / name, lambda tmp, c=checkpoint: torch.save(c, tmp))
                saved.append({"file": name, "epoch": epoch, "step": step})
    index = {"checkpoints": saved, "classes": classes, "label_mode": hp["labels"]}
    write_json(ckpt_dir / "index.json", index)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="segsweep train", description=__doc__.split("\n")[0])
    parser.add_argument("--hp-json", required=True, help="hyperparameters of the run (JSON)")
    parser.add_argument("--train", required=True, type=Path, help="train.h5")
    parser.add_argument("--val", required=True, type=Path, help="val.h5")
    parser.add_argument("--out", required=True, type=Path, help="run directory")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    args = parser.parse_args(argv)
    train_run(
        json.loads(args.hp_json),
        args.train,
        args.val,
        args.out,
        device=choose_device(args.device),
        threads=args.threads,
    )


if __name__ == "__main__":
    main()
