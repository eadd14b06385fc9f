"""Train one run of the sweep: a U-Net on train.h5, validated on val.h5 — a 2D U-Net on the
slices, a 3D one (`model: unet3d`) on the whole volumes of the splits' 3D layout (`volumes/`).

Outputs (`RunFiles`, by default the run folder's files of `segsweep.layout`):
- params.yaml: every effective hyperparameter (defaults filled in) and the run_id;
- train_log.csv: one row per epoch (epoch, step, lr, train_loss, val_loss, val_dice, time_s),
  also printed as one line per epoch (a progress bar over the batches is drawn on stderr when
  it is a terminal);
- checkpoints beside the index: epoch-XXXX.pt every `checkpoint_every` epochs (or
  step-XXXXXXX.pt every `checkpoint_every` steps with `checkpoint_unit: steps`) and at the last
  epoch (format: `segsweep.model.checkpoints`);
- checkpoints/index.json, written last: its presence means the run is complete;
- subjects.json: the subjects that trained and validated the run, `{"train": [...], "val":
  [...]}` (after `train_fraction`).

Data. A run trains on `train.h5` and validates on `val.h5`, or, given its subjects (a fold of
cross-validation, `segsweep.preprocess.split.run_subjects`), on those subjects' samples wherever
packing put them among the two files.

Resume (`segsweep.train.state`): after every epoch and every checkpoint the complete training
state is written to the state folder; a job killed and run again continues from it and, on CPU,
ends with exactly the weights of an uninterrupted run. A state written for other
hyperparameters is ignored; it is removed once the index is written. 2D and 3D runs share this
code: a sample is a slice or a volume.

Inputs. `inputs` (see `segsweep.model.inputs`) picks and windows the packed channels the network
sees; the map is applied to both splits once, and recorded in every checkpoint (`inputs`).

3D. A batch is `batch_size` volumes [B, C, Z, H, W]; augmentation gives all slices of a volume
the same in-plane transform (the volume's slices as channels). Checkpoints record the volume
depth (`volume_slices`), so predictions come back per slice in the 2D layout.

Determinism. On CPU, a fixed `seed` gives identical logs and checkpoints: the weights are
initialised after `torch.manual_seed(seed)`, samples are shuffled every epoch with
`numpy.random.default_rng(seed)`, augmentation draws from its own seeded generator, and torch is
asked for deterministic algorithms. Mixed precision and channels_last are used only on CUDA.
"""

from __future__ import annotations

import csv
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from tqdm import tqdm

from segsweep import layout
from segsweep.config_schema import complete
from segsweep.devices import choose_device
from segsweep.errors import InputError
from segsweep.io.records import write_atomic, write_json
from segsweep.io.splits import read_split, read_subjects, read_volumes
from segsweep.labels import targets
from segsweep.metrics import confusion_counts, overlap_metrics
from segsweep.model.augment import Augmenter
from segsweep.model.checkpoints import load_weights, save_checkpoint
from segsweep.model.inputs import InputChannels
from segsweep.model.inputs import resolve as resolve_inputs
from segsweep.model.losses import Criterion
from segsweep.model.optimizers import make_optimizer
from segsweep.model.schedules import learning_rate
from segsweep.model.tensors import to_tensor
from segsweep.model.unet import build_model, encoder_blocks, model_dims
from segsweep.train.state import Progress, load_state, rng_states, save_state, set_rng_states

LOG_COLUMNS = ("epoch", "step", "lr", "train_loss", "val_loss", "val_dice", "time_s")
STOP_METRICS = {"val_dice": 1.0, "val_loss": -1.0}  # sign: higher is better after multiplying
SUBSET_SEED = 12345  # fixed, so training-set subsets are nested across runs and seeds


@dataclass(frozen=True)
class RunFiles:
    """What one training run writes: its declared outputs, and the resume state folder (no
    output, so that it survives Snakemake's cleanup of a failed job)."""

    params: Path
    log: Path
    index: Path
    provenance: Path
    state: Path
    subjects: Path

    @classmethod
    def in_folder(cls, folder: str | Path) -> RunFiles:
        """The files of a run folder laid out as the workflow lays out results/runs/{run}."""

        def file(pattern: str) -> Path:
            return layout.under(folder, pattern, base=layout.RUN_DIR)

        return cls(
            file(layout.RUN_PARAMS),
            file(layout.RUN_LOG),
            file(layout.RUN_INDEX),
            file(layout.RUN_PROVENANCE),
            file(layout.RUN_STATE),
            file(layout.RUN_SUBJECTS),
        )

    @property
    def checkpoints(self) -> Path:
        """Checkpoint files lie beside the index that lists them."""
        return self.index.parent


@dataclass(frozen=True)
class TrainingData:
    """A run's samples in memory: channels-last images as the network sees them (after
    `inputs`), class-index targets, and what checkpoints must record about them."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    classes: list[str]
    label_mode: str
    volume_slices: int | None
    inputs: InputChannels | None
    subjects: dict[str, list[str]]  # the subjects that train and validate the run


def subset_patients(patients: np.ndarray, fraction: float) -> set[str]:
    """The first ceil(fraction · n) patients of one fixed shuffle: smaller fractions are subsets
    of larger ones (S1 ⊂ S2 ⊂ S3 ⊂ S4), whatever the run's seed."""
    unique = sorted(set(patients.tolist()))
    order = np.random.default_rng(SUBSET_SEED).permutation(len(unique))
    keep = max(1, math.ceil(fraction * len(unique)))
    return {unique[i] for i in order[:keep]}


def training_data(
    hp: dict[str, Any],
    train_h5: Path,
    val_h5: Path,
    subjects: dict[str, list[str]] | None = None,
) -> TrainingData:
    """The splits of a run read, checked and turned into its training problem: its label mode's
    targets, its subset of training patients (`train_fraction`) and its `inputs`; with
    `subjects` (train and val subject lists) those subjects' samples of both files."""
    dims = model_dims(hp)
    if subjects is None:
        read = read_split if dims == 2 else read_volumes
        train, val = read(train_h5), read(val_h5)
    else:
        both = [train_h5, val_h5]
        train = read_subjects(both, subjects["train"], volumes=dims == 3)
        val = read_subjects(both, subjects["val"], volumes=dims == 3)
    if len(train.images) == 0 or len(val.images) == 0:
        raise InputError(None, f"{train_h5}, {val_h5}", "training and validation need samples")
    if train.classes != val.classes:
        raise InputError(None, str(val_h5), f"classes {val.classes} != training {train.classes}")
    y_train, classes = targets(train.masks, train.classes, hp["labels"])
    y_val, _ = targets(val.masks, val.classes, hp["labels"])
    trained = subset_patients(train.patient_id, hp["train_fraction"])
    keep = np.isin(train.patient_id, list(trained))
    x_train, y_train, x_val = train.images[keep], y_train[keep], val.images
    inputs = resolve_inputs(hp["inputs"], train.normalisation) if hp["inputs"] else None
    if inputs is not None:
        x_train, x_val = inputs.apply(x_train), inputs.apply(x_val)
    volume_slices = int(train.images.shape[1]) if dims == 3 else None
    used = {"train": sorted(trained), "val": sorted(set(val.patient_id.tolist()))}
    return TrainingData(
        x_train, y_train, x_val, y_val, classes, hp["labels"], volume_slices, inputs, used
    )


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    """The log line of one epoch: what train_log.csv gets, readable; val fields when validated."""
    parts = [f"epoch {row['epoch']}/{epochs}", f"step {row['step']}", f"lr {row['lr']:.4g}"]
    parts += [
        f"{key} {row[key]:.4f}"
        for key in ("train_loss", "val_loss", "val_dice")
        if row.get(key) is not None and not math.isnan(row[key])
    ]
    return ", ".join([*parts, f"{row['time_s']:.3g} s"])


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


def init_from_checkpoint(model: nn.Module, path: Path, freeze_blocks: int) -> list[nn.Module]:
    """Load every weight of `path` whose name and shape match (transfer learning: the output
    layer may differ) and freeze the first `freeze_blocks` contracting blocks; returns them."""
    state = load_weights(path)
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


class Trainer:
    """One run's training: the network, optimiser, generators and progress, epoch by epoch."""

    def __init__(
        self,
        hp: dict[str, Any],
        data: TrainingData,
        files: RunFiles,
        device: torch.device,
        init_checkpoint: Path | None = None,
    ) -> None:
        self.hp, self.files, self.device = hp, files, device
        self.criterion = Criterion(hp)
        make_optimizer(hp, [torch.zeros(1, requires_grad=True)])  # reject a bad name before work
        self.stop_metric = hp["early_stopping_metric"]
        if self.stop_metric not in STOP_METRICS:
            raise ValueError(
                f"unknown early_stopping_metric {self.stop_metric!r}; known: val_dice, val_loss"
            )
        torch.manual_seed(hp["seed"])
        torch.use_deterministic_algorithms(True, warn_only=True)
        self.rng = np.random.default_rng(hp["seed"])
        self.aug_rng = torch.Generator().manual_seed(int(hp["seed"]))
        self.augment = Augmenter(hp, self.aug_rng) if hp["augment"] else None
        in_channels, out_channels = data.x_train.shape[-1], 1 + len(data.classes)
        model = build_model(hp, in_channels, out_channels)
        self.frozen: list[nn.Module] = []
        if hp["init_from"]:
            if init_checkpoint is None:
                raise InputError(
                    None, str(hp["init_from"]), "init_from needs the checkpoint to load"
                )
            self.frozen = init_from_checkpoint(model, init_checkpoint, int(hp["freeze_blocks"]))
        self.cuda = device.type == "cuda"
        cuda_format = torch.channels_last if model_dims(hp) == 2 else torch.channels_last_3d
        memory_format = cuda_format if self.cuda else torch.contiguous_format
        self.model = model.to(device, memory_format=memory_format)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(hp, trainable)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.cuda)
        self.x_train = to_tensor(data.x_train).to(device, memory_format=memory_format)
        self.x_val = to_tensor(data.x_val).to(device, memory_format=memory_format)
        self.t_train = torch.from_numpy(data.y_train).to(device)
        self.t_val = torch.from_numpy(data.y_val).to(device)
        self.meta = {
            "hp": hp,
            "classes": data.classes,
            "label_mode": data.label_mode,
            "in_channels": in_channels,
            "out_channels": out_channels,
            **({"volume_slices": data.volume_slices} if data.volume_slices else {}),
            **({"inputs": data.inputs.to_dict()} if data.inputs is not None else {}),
        }
        self.batch_size, self.epochs = int(hp["batch_size"]), int(hp["epochs"])
        self.steps_per_epoch = math.ceil(len(self.x_train) / self.batch_size)
        self.total_steps = self.steps_per_epoch * self.epochs
        self.progress = Progress()

    @property
    def state_path(self) -> Path:
        return self.files.state / "resume.pt"

    def resume(self) -> None:
        """Continue from the saved state when it belongs to this run; else start afresh and
        remove checkpoints a run with other hyperparameters left behind."""
        resumed = load_state(self.state_path, self.hp, self.device)
        if resumed is None:
            for stale in self.files.checkpoints.glob("*.pt"):
                stale.unlink()
            return
        self.model.load_state_dict(resumed["model"])
        self.optimizer.load_state_dict(resumed["optimizer"])
        self.scaler.load_state_dict(resumed["scaler"])
        set_rng_states(resumed["rng"], self.rng, self.aug_rng, self.device)
        self.progress = Progress(**resumed["progress"])
        print(f"resuming at epoch {self.progress.epoch}, step {self.progress.step}", flush=True)

    def save_state(self) -> None:
        parts = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_states(self.rng, self.aug_rng, self.device),
        }
        save_state(self.state_path, self.hp, parts, self.progress)

    def save_checkpoint(self, name: str) -> None:
        progress = self.progress
        save_checkpoint(
            self.files.checkpoints / name, self.model, self.meta, progress.epoch, progress.step
        )
        progress.saved = [s for s in progress.saved if s["file"] != name]
        progress.saved.append({"file": name, "epoch": progress.epoch, "step": progress.step})

    def learning_rate(self, step: int) -> float:
        return learning_rate(self.hp, step, self.steps_per_epoch, self.total_steps)

    def train_epoch(self, epoch_start: float) -> float:
        """The remaining batches of the epoch in progress; returns the last learning rate."""
        progress, hp = self.progress, self.hp
        every, unit = int(hp["checkpoint_every"]), hp["checkpoint_unit"]
        if progress.order is None:
            progress.order = self.rng.permutation(len(self.x_train)).tolist()
        order = torch.tensor(progress.order, device=self.device)
        self.model.train()
        for block in self.frozen:
            block.eval()  # frozen batch-norm statistics stay those of the source run
        bar = tqdm(
            total=self.steps_per_epoch,
            initial=progress.position,
            desc=f"epoch {progress.epoch}/{self.epochs}",
            unit="batch",
            leave=False,
            disable=not sys.stderr.isatty(),
        )
        lr = self.learning_rate(max(0, progress.step - 1))
        while progress.position < self.steps_per_epoch:
            start = progress.position * self.batch_size
            index = order[start : start + self.batch_size]
            if self.augment is not None:
                x, t = self.augment.batch(self.x_train, self.t_train, index)
            else:
                x, t = self.x_train[index], self.t_train[index]
            lr = self.learning_rate(progress.step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.optimizer.zero_grad()
            with torch.autocast(self.device.type, enabled=self.cuda):
                loss = self.criterion(self.model, x, t)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            progress.step += 1
            progress.position += 1
            batch_loss = loss.item()
            progress.total += batch_loss * len(index)
            bar.set_postfix(loss=f"{batch_loss:.4f}", refresh=False)
            bar.update()
            if unit == "steps" and progress.step % every == 0:
                self.save_checkpoint(f"step-{progress.step:07d}.pt")
                progress.start_time = time.perf_counter() - epoch_start
                self.save_state()
        bar.close()
        return lr

    def end_epoch(self, lr: float, epoch_start: float) -> None:
        """Validate, log, decide on early stopping, checkpoint and save the state."""
        progress, hp = self.progress, self.hp
        val_loss, val_dice = validate(
            self.model, self.x_val, self.t_val, self.criterion, self.batch_size
        )
        row = {
            "epoch": progress.epoch,
            "step": progress.step,
            "lr": lr,  # of the epoch's last step
            "train_loss": progress.total / len(self.x_train),
            "val_loss": val_loss,
            "val_dice": val_dice,
            "time_s": round(time.perf_counter() - epoch_start, 3),
        }
        progress.rows.append(row)
        print(epoch_line(row, self.epochs), flush=True)
        signed = STOP_METRICS[self.stop_metric] * row[self.stop_metric]
        if progress.best is None or signed > progress.best:
            progress.best, progress.bad_epochs = signed, 0
        else:
            progress.bad_epochs += 1
        patience = int(hp["patience"])
        stop = patience > 0 and progress.bad_epochs >= patience
        last = progress.epoch == self.epochs or stop
        if stop:
            print(f"early stopping: no {self.stop_metric} gain in {patience} epochs", flush=True)
        every = int(hp["checkpoint_every"])
        if (hp["checkpoint_unit"] == "epochs" and progress.epoch % every == 0) or last:
            if not any(s["step"] == progress.step for s in progress.saved):
                self.save_checkpoint(f"epoch-{progress.epoch:04d}.pt")
        progress.done = last
        progress.epoch += 0 if last else 1
        progress.position, progress.order, progress.total, progress.start_time = 0, None, 0.0, 0
        self.save_state()
        write_log(self.files.log, progress.rows)

    def fit(self) -> None:
        """Train to the last (or early-stopped) epoch, then write the log and the index."""
        while not self.progress.done and self.progress.epoch <= self.epochs:
            epoch_start = time.perf_counter() - self.progress.start_time
            lr = self.train_epoch(epoch_start)
            self.end_epoch(lr, epoch_start)
        write_log(self.files.log, self.progress.rows)
        index = {
            "checkpoints": self.progress.saved,
            "classes": self.meta["classes"],
            "label_mode": self.meta["label_mode"],
        }
        write_json(self.files.index, index)
        shutil.rmtree(self.files.state)


def train_run(
    hp: dict[str, Any],
    train_h5: Path,
    val_h5: Path,
    out: RunFiles | str | Path,
    device: torch.device | str | None = None,
    threads: int | None = None,
    init_checkpoint: Path | None = None,
    subjects: dict[str, list[str]] | None = None,
) -> None:
    """Train one run (resuming from its saved state when present) and write its params,
    subjects, log, checkpoints and (last) checkpoint index; `out` is a run folder or its files;
    `subjects` (train and val lists) selects the samples of both split files."""
    files = out if isinstance(out, RunFiles) else RunFiles.in_folder(out)
    hp = complete(hp, "train")
    hp = {**hp, "run_id": hp.get("run_id", files.index.parent.parent.name)}
    device = choose_device() if device is None else torch.device(device)
    if threads:
        torch.set_num_threads(threads)
    data = training_data(hp, train_h5, val_h5, subjects)
    write_json(files.subjects, data.subjects)
    trainer = Trainer(hp, data, files, device, init_checkpoint)
    files.checkpoints.mkdir(parents=True, exist_ok=True)
    files.state.mkdir(parents=True, exist_ok=True)
    files.params.write_text(yaml.safe_dump(hp, sort_keys=True))
    trainer.resume()
    trainer.fit()
