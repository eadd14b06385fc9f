"""Train one run of the sweep: a U-Net on train.h5, validated on val.h5 — a 2D U-Net on the
slices, a 3D one (`model: unet3d`) on the whole volumes of the splits' 3D layout (`volumes/`).

Outputs in the run directory (see the workflow's contracts):
- params.yaml: every effective hyperparameter and the run_id;
- train_log.csv: one row per epoch (epoch, step, lr, train_loss, val_loss, val_dice, time_s),
  also printed as one line per epoch (a progress bar over the batches is drawn on stderr when
  it is a terminal);
- checkpoints/epoch-XXXX.pt every `checkpoint_every` epochs (or checkpoints/step-XXXXXXX.pt
  every `checkpoint_every` steps with `checkpoint_unit: steps`) and at the last epoch;
- checkpoints/index.json, written last: its presence means the run is complete.

Resume. After every epoch and every checkpoint the complete training state — weights, optimiser,
gradient scaler, step, position in the epoch's shuffled order, RNG states (torch, numpy,
augmentation), early-stopping state, the log rows and the checkpoint list — is written atomically
to state/resume.pt. That file is deliberately not a declared output of the workflow, so it
survives Snakemake's removal of a failed job's outputs: a job killed (even by SIGKILL) and run
again continues from it and, on CPU, ends with exactly the weights of an uninterrupted run. A
state written for different hyperparameters is ignored. The state is removed once index.json is
written. 2D and 3D runs share this code: a sample is a slice or a volume.

Inputs. `inputs` (see `segsweep.inputs`) picks and windows the packed channels the network
sees; the map is applied to both splits once, and recorded in every checkpoint (`inputs`).

3D. A batch is `batch_size` volumes [B, C, Z, H, W]; augmentation gives all slices of a volume
the same in-plane transform (the volume's slices as channels). Checkpoints record the volume
depth (`volume_slices`), so predictions come back per slice in the 2D layout (`segsweep.predict`).

Determinism. On CPU, a fixed `seed` gives identical logs and checkpoints: the weights are
initialised after `torch.manual_seed(seed)`, slices are shuffled every epoch with
`numpy.random.default_rng(seed)`, augmentation draws from its own seeded generator, and torch is
asked for deterministic algorithms. Mixed precision and channels_last are used only on CUDA.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import yaml
from torch import nn
from tqdm import tqdm

from segsweep.augment import Augmenter
from segsweep.devices import choose_device, lease_device
from segsweep.errors import InputError
from segsweep.inputs import resolve as resolve_inputs
from segsweep.losses import Criterion
from segsweep.metrics import confusion_counts, overlap_metrics
from segsweep.models import build_model, encoder_blocks, model_dims
from segsweep.provenance import provenance, utc_now
from segsweep.schedules import learning_rate

LABEL_MODES = ("merged", "separate", "per_class")
OPTIMIZERS = ("adam", "sgd")
LOG_COLUMNS = ("epoch", "step", "lr", "train_loss", "val_loss", "val_dice", "time_s")
STOP_METRICS = {"val_dice": 1.0, "val_loss": -1.0}  # sign: higher is better after multiplying
SUBSET_SEED = 12345  # fixed, so training-set subsets are nested across runs and seeds


@dataclass(frozen=True)
class Split:
    """One packed split in memory (the datasets are small): its slices, or (`read_volumes`)
    its volumes, each sample then [z, rows, cols, ·] and slice_id [p, z]."""

    images: np.ndarray  # float32 [n, rows, cols, c]
    masks: np.ndarray  # uint8 [n, rows, cols, m], one 0/1 channel per class
    patient_id: np.ndarray  # str [n]
    slice_id: np.ndarray  # int [n]
    classes: list[str]  # names of the mask channels
    normalisation: dict = field(default_factory=dict)  # how the images were packed (pack.py)


def read_split(path: Path) -> Split:
    """All slices of one HDF5 split, with an InputError naming a missing dataset or attribute."""
    path = Path(path)
    if not path.is_file():
        raise InputError(None, str(path), "dataset file not found")
    with h5py.File(path, "r") as h5:
        for name in ("images", "masks", "patient_id", "slice_id"):
            if name not in h5:
                raise InputError(None, str(path), f"missing HDF5 dataset '{name}'")
        split = Split(
            images=np.asarray(h5["images"][()], dtype=np.float32),
            masks=np.asarray(h5["masks"][()], dtype=np.uint8),
            patient_id=_strings(h5["patient_id"]),
            slice_id=np.asarray(h5["slice_id"][()], dtype=np.int64),
            classes=_classes(h5, path),
            normalisation=json.loads(h5.attrs.get("normalisation", "{}")),
        )
    return _checked(split, path, spatial=2)


def read_volumes(path: Path) -> Split:
    """The 3D layout of one HDF5 split (group `volumes/`, written by `pack --volumes`): images
    [p, z, rows, cols, c], masks [p, z, rows, cols, m], one patient id per volume."""
    path = Path(path)
    if not path.is_file():
        raise InputError(None, str(path), "dataset file not found")
    with h5py.File(path, "r") as h5:
        if "volumes" not in h5:
            raise InputError(
                None,
                str(path),
                "no 3D layout (HDF5 group 'volumes') for a unet3d run: "
                "pack the splits with preprocess.volumes: true",
            )
        group = h5["volumes"]
        for name in ("images", "masks", "patient_id"):
            if name not in group:
                raise InputError(None, str(path), f"missing HDF5 dataset 'volumes/{name}'")
        images = np.asarray(group["images"][()], dtype=np.float32)
        split = Split(
            images=images,
            masks=np.asarray(group["masks"][()], dtype=np.uint8),
            patient_id=_strings(group["patient_id"]),
            slice_id=np.indices(images.shape[:2])[-1],
            classes=_classes(h5, path),
            normalisation=json.loads(h5.attrs.get("normalisation", "{}")),
        )
    return _checked(split, path, spatial=3, prefix="volumes/")


def _checked(split: Split, path: Path, spatial: int, prefix: str = "") -> Split:
    """`split`, if images and masks agree in samples and `spatial` axes and the masks have one
    channel per class; else an InputError naming the file."""
    n = 1 + spatial
    if split.images.ndim != n + 1 or split.masks.shape[:n] != split.images.shape[:n]:
        raise InputError(
            None,
            str(path),
            f"{prefix}images {split.images.shape} and {prefix}masks {split.masks.shape} disagree",
        )
    if split.masks.shape[-1] != len(split.classes):
        raise InputError(
            None, str(path), f"{split.masks.shape[-1]} mask channels, classes {split.classes}"
        )
    return split


def _strings(dataset: h5py.Dataset) -> np.ndarray:
    return np.asarray(
        [v.decode() if isinstance(v, bytes) else str(v) for v in dataset[()]], dtype=str
    )


def _classes(h5: h5py.File, path: Path) -> list[str]:
    if "classes" not in h5.attrs:
        raise InputError(None, str(path), "missing HDF5 attribute 'classes'")
    return list(json.loads(h5.attrs["classes"]))


def targets(masks: np.ndarray, classes: list[str], label_mode: str) -> tuple[np.ndarray, list]:
    """Class-index targets [n, rows, cols] (of volumes: [p, z, rows, cols]) and the run's
    foreground class names.

    merged: 1 wherever any class is present (one "foreground" class); separate and per_class:
    1 + the index of the mask channel (channel order = data classes), 0 for background
    (per_class trains one binary model per class on these indices).
    """
    present = masks.any(axis=-1)
    if label_mode == "merged":
        return present.astype(np.int64), ["foreground"]
    if label_mode in ("separate", "per_class"):
        return np.where(present, masks.argmax(axis=-1) + 1, 0).astype(np.int64), list(classes)
    raise ValueError(f"unknown label mode {label_mode!r}; known: {', '.join(LABEL_MODES)}")


def subset_patients(patients: np.ndarray, fraction: float) -> set[str]:
    """The first ceil(fraction · n) patients of one fixed shuffle: smaller fractions are subsets
    of larger ones (S1 ⊂ S2 ⊂ S3 ⊂ S4), whatever the run's seed."""
    unique = sorted(set(patients.tolist()))
    order = np.random.default_rng(SUBSET_SEED).permutation(len(unique))
    keep = max(1, math.ceil(fraction * len(unique)))
    return {unique[i] for i in order[:keep]}


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """Channels-last numpy slices [n, H, W, c] (volumes [p, z, H, W, c]) as a float tensor
    [n, c, H, W] ([p, c, z, H, W])."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(images, -1, 1), dtype=np.float32))


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    """The log line of one epoch: what train_log.csv gets, readable; val fields when validated."""
    parts = [f"epoch {row['epoch']}/{epochs}", f"step {row['step']}", f"lr {row['lr']:.4g}"]
    parts += [
        f"{key} {row[key]:.4f}"
        for key in ("train_loss", "val_loss", "val_dice")
        if row.get(key) is not None and not math.isnan(row[key])
    ]
    return ", ".join([*parts, f"{row['time_s']:.3g} s"])


def make_optimizer(hp: dict[str, Any], params) -> torch.optim.Optimizer:
    """Adam, or SGD with momentum (`momentum`, default 0.9) — the theses' two choices."""
    name = hp.get("optimizer", "adam")
    if name == "adam":
        return torch.optim.Adam(params, lr=hp["lr"])
    if name == "sgd":
        return torch.optim.SGD(params, lr=hp["lr"], momentum=float(hp.get("momentum", 0.9)))
    raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")


def write_atomic(path: Path, write) -> None:
    """Write through a temporary file and rename, so a reader never sees a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2) + "\n"))


def error_line(error: BaseException) -> str:
    """The exception's type and the last line of its message, short enough for a table cell."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[-1].strip()}" if lines else type(error).__name__


def write_failure(
    out_dir: Path,
    hp: dict[str, Any],
    error: BaseException,
    attempt: int,
) -> None:
    """The outputs of a run whose last attempt failed, as a record of the failure, so that
    selection, evaluation, analysis and the report proceed and list the run as failed instead
    of missing: checkpoints/index.json with status "failed", the error and no checkpoints;
    params.yaml; train_log.csv (kept when the run wrote one before failing, else its header)."""
    out_dir = Path(out_dir)
    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (out_dir / "params.yaml").write_text(yaml.safe_dump(hp, sort_keys=True))
    log = out_dir / "train_log.csv"
    if not log.is_file():
        log.write_text(",".join(LOG_COLUMNS) + "\n")
    index = {
        "status": "failed",
        "error": error_line(error),
        "attempts": attempt,
        "checkpoints": [],
        "classes": [],
        "label_mode": hp.get("labels"),
    }
    write_json(out_dir / "checkpoints" / "index.json", index)


def write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            log = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
            log.writeheader()
            log.writerows(rows)

    write_atomic(path, write)


@torch.no_grad()
def validate(model, images, target, criterion, batch_size: int) -> tuple[float, float]:
    """Mean loss (weighted by batch size) and foreground Dice over the whole set."""
    model.eval()
    total, foreground = 0.0, []
    for start in range(0, len(images), batch_size):
        x, t = images[start : start + batch_size], target[start : start + batch_size]
        total += criterion(model, x, t).item() * len(x)
        foreground.append(model(x).argmax(dim=1).cpu().numpy() > 0)
    counts = confusion_counts(np.concatenate(foreground), target.cpu().numpy() > 0)
    return total / len(images), float(overlap_metrics(*counts)["dice"])


@dataclass
class Progress:
    """Everything besides weights and optimiser that a resumed run must restore."""

    epoch: int = 1  # the epoch in progress (1-based)
    position: int = 0  # batches of this epoch already done
    step: int = 0
    order: list[int] | None = None  # this epoch's shuffled slice order
    total: float = 0.0  # summed training loss of this epoch so far
    start_time: float = 0.0  # time_s of this epoch spent before an interruption
    rows: list[dict[str, Any]] = field(default_factory=list)
    saved: list[dict[str, Any]] = field(default_factory=list)
    best: float | None = None  # early stopping: best signed metric and epochs without gain
    bad_epochs: int = 0
    done: bool = False


def _rng_states(rng: np.random.Generator, aug: torch.Generator, device) -> dict[str, Any]:
    states = {
        "torch": torch.get_rng_state(),
        "numpy": json.dumps(rng.bit_generator.state),
        "augment": aug.get_state(),
    }
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def _set_rng_states(states, rng: np.random.Generator, aug: torch.Generator, device) -> None:
    torch.set_rng_state(states["torch"])
    rng.bit_generator.state = json.loads(states["numpy"])
    aug.set_state(states["augment"])
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)


def init_from_checkpoint(model: nn.Module, path: Path, freeze_blocks: int) -> list[nn.Module]:
    """Load every weight of `path` whose name and shape match (transfer learning: the output
    layer may differ) and freeze the first `freeze_blocks` contracting blocks; returns them."""
    state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    own = model.state_dict()
    matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matching:
        raise InputError(None, str(path), "no weight matches the model (different architecture)")
    model.load_state_dict(matching, strict=False)
    print(f"initialised {len(matching)}/{len(own)} tensors from {path}", flush=True)
    frozen = encoder_blocks(model, freeze_blocks)
    for block in frozen:
        block.requires_grad_(False)
    return frozen


def selected_checkpoint(selection_json: Path) -> Path:
    """The checkpoint file a run's selection.json chose."""
    selection = json.loads(Path(selection_json).read_text())
    return Path(selection_json).parent / "checkpoints" / selection["selected"]["file"]


def train_run(
    hp: dict[str, Any],
    train_h5: Path,
    val_h5: Path,
    out_dir: Path,
    device: torch.device | str | None = None,
    threads: int | None = None,
    init_checkpoint: Path | None = None,
) -> None:
    """Train one run (resuming from state/resume.pt when present) and write its params, log,
    checkpoints and (last) checkpoint index."""
    out_dir = Path(out_dir)
    hp = {**hp, "run_id": hp.get("run_id", out_dir.name)}
    device = choose_device() if device is None else torch.device(device)
    if threads:
        torch.set_num_threads(threads)
    dims = model_dims(hp)
    read = read_split if dims == 2 else read_volumes
    train, val = read(train_h5), read(val_h5)
    if len(train.images) == 0 or len(val.images) == 0:
        raise InputError(None, f"{train_h5}, {val_h5}", "training and validation need samples")
    if train.classes != val.classes:
        raise InputError(None, str(val_h5), f"classes {val.classes} != training {train.classes}")
    label_mode = hp.get("labels", "merged")
    y_train, classes = targets(train.masks, train.classes, label_mode)
    y_val, _ = targets(val.masks, val.classes, label_mode)
    keep = np.isin(
        train.patient_id, list(subset_patients(train.patient_id, hp.get("train_fraction", 1.0)))
    )
    x_np, y_train, x_val_np = train.images[keep], y_train[keep], val.images
    inputs = resolve_inputs(hp["inputs"], train.normalisation) if hp.get("inputs") else None
    if inputs is not None:
        x_np, x_val_np = inputs.apply(x_np), inputs.apply(x_val_np)
    criterion = Criterion(hp)
    make_optimizer(hp, [torch.zeros(1, requires_grad=True)])  # reject a bad name before work
    stop_metric = hp.get("early_stopping_metric", "val_dice")
    if stop_metric not in STOP_METRICS:
        raise ValueError(
            f"unknown early_stopping_metric {stop_metric!r}; known: val_dice, val_loss"
        )

    torch.manual_seed(hp["seed"])
    torch.use_deterministic_algorithms(True, warn_only=True)
    rng = np.random.default_rng(hp["seed"])
    aug_rng = torch.Generator().manual_seed(int(hp["seed"]))
    augment = Augmenter(hp, aug_rng) if hp.get("augment", False) else None
    in_channels, out_channels = x_np.shape[-1], 1 + len(classes)
    model = build_model(hp, in_channels, out_channels)
    frozen: list[nn.Module] = []
    if hp.get("init_from"):
        if init_checkpoint is None:
            raise InputError(None, str(hp["init_from"]), "init_from needs the checkpoint to load")
        frozen = init_from_checkpoint(model, init_checkpoint, int(hp.get("freeze_blocks", 0)))
    cuda = device.type == "cuda"
    cuda_format = torch.channels_last if dims == 2 else torch.channels_last_3d
    memory_format = cuda_format if cuda else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    optimizer = make_optimizer(hp, [p for p in model.parameters() if p.requires_grad])
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)

    x_train = to_tensor(x_np).to(device, memory_format=memory_format)
    x_val = to_tensor(x_val_np).to(device, memory_format=memory_format)
    t_train, t_val = torch.from_numpy(y_train).to(device), torch.from_numpy(y_val).to(device)
    ckpt_dir, state_dir = out_dir / "checkpoints", out_dir / "state"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    state_path = state_dir / "resume.pt"
    (out_dir / "params.yaml").write_text(yaml.safe_dump(hp, sort_keys=True))
    meta = {
        "hp": hp,
        "classes": classes,
        "label_mode": label_mode,
        "in_channels": in_channels,
        "out_channels": out_channels,
        **({"volume_slices": int(train.images.shape[1])} if dims == 3 else {}),
        **({"inputs": inputs.to_dict()} if inputs is not None else {}),
    }

    progress = Progress()
    resumed = _load_state(state_path, hp, device)
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        scaler.load_state_dict(resumed["scaler"])
        _set_rng_states(resumed["rng"], rng, aug_rng, device)
        progress = Progress(**resumed["progress"])
        print(f"resuming at epoch {progress.epoch}, step {progress.step}", flush=True)
    else:
        for stale in ckpt_dir.glob("*.pt"):  # from a run with other hyperparameters
            stale.unlink()

    def save_state() -> None:
        state = {
            "hp": hp,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": _rng_states(rng, aug_rng, device),
            "progress": progress.__dict__,
        }
        write_atomic(state_path, lambda tmp: torch.save(state, tmp))

    def save_checkpoint(name: str) -> None:
        weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        checkpoint = {"model": weights, "epoch": progress.epoch, "step": progress.step, **meta}
        write_atomic(ckpt_dir / name, lambda tmp: torch.save(checkpoint, tmp))
        progress.saved = [s for s in progress.saved if s["file"] != name]
        progress.saved.append({"file": name, "epoch": progress.epoch, "step": progress.step})

    batch_size, epochs = int(hp["batch_size"]), int(hp["epochs"])
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    total_steps = steps_per_epoch * epochs
    every, unit = int(hp["checkpoint_every"]), hp.get("checkpoint_unit", "epochs")
    patience = int(hp.get("patience", 0))
    lr = learning_rate(hp, max(0, progress.step - 1), steps_per_epoch, total_steps)
    while not progress.done and progress.epoch <= epochs:
        epoch_start = time.perf_counter() - progress.start_time
        if progress.order is None:
            progress.order = rng.permutation(len(x_train)).tolist()
        order = torch.tensor(progress.order, device=device)
        model.train()
        for block in frozen:
            block.eval()  # frozen batch-norm statistics stay those of the source run
        bar = tqdm(
            total=steps_per_epoch,
            initial=progress.position,
            desc=f"epoch {progress.epoch}/{epochs}",
            unit="batch",
            leave=False,
            disable=not sys.stderr.isatty(),
        )
        while progress.position < steps_per_epoch:
            start = progress.position * batch_size
            index = order[start : start + batch_size]
            if augment is not None:
                x, t = augment.batch(x_train, t_train, index)
            else:
                x, t = x_train[index], t_train[index]
            lr = learning_rate(hp, progress.step, steps_per_epoch, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad()
            with torch.autocast(device.type, enabled=cuda):
                loss = criterion(model, x, t)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            progress.step += 1
            progress.position += 1
            batch_loss = loss.item()
            progress.total += batch_loss * len(index)
            bar.set_postfix(loss=f"{batch_loss:.4f}", refresh=False)
            bar.update()
            if unit == "steps" and progress.step % every == 0:
                save_checkpoint(f"step-{progress.step:07d}.pt")
                progress.start_time = time.perf_counter() - epoch_start
                save_state()
        bar.close()
        val_loss, val_dice = validate(model, x_val, t_val, criterion, batch_size)
        row = {
            "epoch": progress.epoch,
            "step": progress.step,
            "lr": lr,  # of the epoch's last step
            "train_loss": progress.total / len(x_train),
            "val_loss": val_loss,
            "val_dice": val_dice,
            "time_s": round(time.perf_counter() - epoch_start, 3),
        }
        progress.rows.append(row)
        print(epoch_line(row, epochs), flush=True)
        signed = STOP_METRICS[stop_metric] * row[stop_metric]
        if progress.best is None or signed > progress.best:
            progress.best, progress.bad_epochs = signed, 0
        else:
            progress.bad_epochs += 1
        stop = patience > 0 and progress.bad_epochs >= patience
        last = progress.epoch == epochs or stop
        if stop:
            print(f"early stopping: no {stop_metric} gain in {patience} epochs", flush=True)
        if (unit == "epochs" and progress.epoch % every == 0) or last:
            name = f"epoch-{progress.epoch:04d}.pt"
            if not any(s["step"] == progress.step for s in progress.saved):
                save_checkpoint(name)
        progress.done = last
        progress.epoch += 0 if last else 1
        progress.position, progress.order, progress.total, progress.start_time = 0, None, 0.0, 0
        save_state()
        write_log(out_dir / "train_log.csv", progress.rows)
    write_log(out_dir / "train_log.csv", progress.rows)
    index = {"checkpoints": progress.saved, "classes": classes, "label_mode": label_mode}
    write_json(ckpt_dir / "index.json", index)
    shutil.rmtree(state_dir)


def _load_state(path: Path, hp: dict[str, Any], device: torch.device) -> dict[str, Any] | None:
    """The saved training state, if it belongs to these hyperparameters."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location=device, weights_only=True)
    if state["hp"] != hp:
        print(f"ignoring {path}: written for other hyperparameters", flush=True)
        return None
    for key in ("torch", "augment"):
        state["rng"][key] = state["rng"][key].cpu()
    return state


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="segsweep train", description=__doc__.split("\n")[0])
    parser.add_argument("--hp-json", required=True, help="hyperparameters of the run (JSON)")
    parser.add_argument("--train", required=True, type=Path, help="train.h5")
    parser.add_argument("--val", required=True, type=Path, help="val.h5")
    parser.add_argument("--out", required=True, type=Path, help="run directory")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--device", default="auto", help="auto (lease a free GPU, else CPU) | cpu | cuda | cuda:N"
    )
    parser.add_argument(
        "--init-selection",
        type=Path,
        default=None,
        help="selection.json of the run to initialise from (hp init_from = its run id)",
    )
    parser.add_argument(
        "--init-checkpoint", type=Path, default=None, help="checkpoint to initialise from"
    )
    parser.add_argument(
        "--config-hash",
        default=os.environ.get("SEGSWEEP_CONFIG_HASH"),
        help="of config and sweep, for provenance (default: $SEGSWEEP_CONFIG_HASH, which the"
        " workflow sets)",
    )
    parser.add_argument("--attempt", type=int, default=1, help="this attempt (from 1)")
    parser.add_argument(
        "--max-attempts",
        type=int,
        default=1,
        help="a failure of the last attempt is recorded as the run's outputs instead of raised",
    )
    args = parser.parse_args(argv)
    hp = json.loads(args.hp_json)
    hp = {**hp, "run_id": hp.get("run_id", args.out.name)}
    lease = lease_device() if args.device == "auto" else None
    device = lease.device if lease is not None else choose_device(args.device)
    if lease is not None and lease.index is not None:
        print(f"leased device {lease.index} ({device})", file=sys.stderr, flush=True)
    started, status = utc_now(), "ok"
    try:
        init = args.init_checkpoint
        if args.init_selection is not None:
            source = json.loads(args.init_selection.read_text())
            if source.get("status") == "failed":
                raise InputError(None, str(args.init_selection), "the source run failed")
            init = selected_checkpoint(args.init_selection)
        elif init is None and hp.get("init_from") and Path(str(hp["init_from"])).is_file():
            init = Path(hp["init_from"])
        train_run(
            hp,
            args.train,
            args.val,
            args.out,
            device=device,
            threads=args.threads,
            init_checkpoint=init,
        )
    except Exception as error:
        if args.attempt < args.max_attempts:
            raise  # Snakemake retries the job
        traceback.print_exc()
        status = "failed"
        write_failure(args.out, hp, error, args.attempt)
    finally:
        ended = utc_now()
        if lease is not None:
            lease.release()
    record = provenance(
        hp,
        config_hash=args.config_hash,
        device=str(device),
        device_index=None if lease is None else lease.index,
        started=started,
        ended=ended,
        status=status,
        attempt=args.attempt,
    )
    write_json(args.out / "provenance.json", record)


if __name__ == "__main__":
    main()
