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
packing put them among the two files. The samples are resident — loaded once and moved to the
device — or, with `data: streamed` or when they exceed the memory budget (`data: auto`,
`segsweep.memory`), streamed from the files: read in blocks and prefetched to the device on a
background thread (`segsweep.train.batches`), so a split larger than memory trains too.

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
`numpy.random.default_rng(seed)` (streamed: by block and within windows of blocks), augmentation
draws from its own seeded generator, and torch is asked for deterministic algorithms. Mixed
precision and channels_last are used only on CUDA.
"""

from __future__ import annotations

import csv
import math
import shutil
import sys
import time
from collections.abc import Iterable, Iterator
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
from segsweep.errors import ConfigError, InputError
from segsweep.io.records import write_atomic, write_json
from segsweep.io.stream import RowReader, Rows, open_rows
from segsweep.labels import run_classes, targets
from segsweep.memory import budget_bytes, streams
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
from segsweep.train.batches import Prefetcher, StreamedSamples, streamed_order
from segsweep.train.events import RunEvents
from segsweep.train.rungs import WHOLE_RUN, Rung, start_from
from segsweep.train.state import Progress, load_state, rng_states, save_state, set_rng_states

LOG_COLUMNS = ("epoch", "step", "lr", "train_loss", "val_loss", "val_dice", "time_s")
STOP_METRICS = {"val_dice": 1.0, "val_loss": -1.0}  # sign: higher is better after multiplying
SUBSET_SEED = 12345  # fixed, so training-set subsets are nested across runs and seeds


@dataclass(frozen=True)
class RunFiles:
    """What one training run writes: its declared outputs, and the resume state folder (no
    output, so that it survives Snakemake's cleanup of a failed job), and the folder of its
    TensorBoard event files (`segsweep.train.events`; None: none are written)."""

    params: Path
    log: Path
    index: Path
    provenance: Path
    state: Path
    subjects: Path
    events: Path | None = None

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
            file(layout.RUN_EVENTS),
        )

    @property
    def checkpoints(self) -> Path:
        """Checkpoint files lie beside the index that lists them."""
        return self.index.parent


@dataclass(frozen=True)
class TrainingData:
    """A run's samples: in memory, channels-last images as the network sees them (after
    `inputs`) and class-index targets; or, streamed, the samples read on demand (`x_train` and
    the other arrays then None); and what checkpoints must record about them."""

    x_train: np.ndarray | None
    y_train: np.ndarray | None
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    classes: list[str]
    label_mode: str
    volume_slices: int | None
    inputs: InputChannels | None
    subjects: dict[str, list[str]]  # the subjects that train and validate the run
    streamed: tuple[StreamedSamples, StreamedSamples] | None = None  # train, val


def subset_patients(patients: np.ndarray, fraction: float) -> set[str]:
    """The first ceil(fraction · n) patients of one fixed shuffle: smaller fractions are subsets
    of larger ones (S1 ⊂ S2 ⊂ S3 ⊂ S4), whatever the run's seed."""
    unique = sorted(set(patients.tolist()))
    order = np.random.default_rng(SUBSET_SEED).permutation(len(unique))
    keep = max(1, math.ceil(fraction * len(unique)))
    return {unique[i] for i in order[:keep]}


def data_bytes(rows: list[Rows], inputs: InputChannels | None) -> int:
    """Bytes the samples take as network inputs (float32 images after `inputs`) and int64
    targets: what a resident run holds."""
    total = 0
    for part in rows:
        *spatial, channels = part.image_shape
        channels = len(inputs.index) if inputs is not None else channels
        total += len(part) * math.prod(spatial) * (4 * channels + 8)
    return total


def training_data(
    hp: dict[str, Any],
    train_h5: Path,
    val_h5: Path,
    subjects: dict[str, list[str]] | None = None,
    device: torch.device | None = None,
) -> TrainingData:
    """The splits of a run read, checked and turned into its training problem: its label mode's
    targets, its subset of training patients (`train_fraction`) and its `inputs`; with
    `subjects` (train and val subject lists) those subjects' samples of both files. Streamed
    (`segsweep.memory.streams`, on `device`) when they do not fit the budget."""
    dims = model_dims(hp)
    device = torch.device("cpu") if device is None else device
    paths = [train_h5] if subjects is None else [train_h5, val_h5]
    train_rows = open_rows(paths, subjects and subjects["train"], volumes=dims == 3)
    val_rows = open_rows(
        [val_h5] if subjects is None else paths, subjects and subjects["val"], volumes=dims == 3
    )
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise InputError(None, f"{train_h5}, {val_h5}", "training and validation need samples")
    if train_rows.classes != val_rows.classes:
        raise InputError(
            None, str(val_h5), f"classes {val_rows.classes} != training {train_rows.classes}"
        )
    trained = subset_patients(train_rows.patient_id, hp["train_fraction"])
    train_rows = train_rows.subset(np.isin(train_rows.patient_id, list(trained)))
    inputs = resolve_inputs(hp["inputs"], train_rows.normalisation) if hp["inputs"] else None
    classes = run_classes(train_rows.classes, hp["labels"])
    volume_slices = int(train_rows.image_shape[0]) if dims == 3 else None
    used = {"train": sorted(trained), "val": sorted(set(val_rows.patient_id.tolist()))}
    nbytes = data_bytes([train_rows, val_rows], inputs)
    if streams(hp, nbytes, device):
        budget = budget_bytes(hp, device)
        print(
            f"streaming the splits: {nbytes / 2**30:.3g} GB as tensors, memory budget "
            f"{budget / 2**30:.3g} GB",
            flush=True,
        )
        train = StreamedSamples(train_rows, hp["labels"], inputs, budget // 2)
        val = StreamedSamples(val_rows, hp["labels"], inputs, budget // 2)
        return TrainingData(
            None, None, None, None, classes, hp["labels"], volume_slices, inputs, used, (train, val)
        )
    x_train, y_train = _loaded(train_rows, hp["labels"], inputs)
    x_val, y_val = _loaded(val_rows, hp["labels"], inputs)
    return TrainingData(
        x_train, y_train, x_val, y_val, classes, hp["labels"], volume_slices, inputs, used
    )


def _loaded(
    rows: Rows, label_mode: str, inputs: InputChannels | None
) -> tuple[np.ndarray, np.ndarray]:
    """All samples of `rows` in memory: network inputs (after `inputs`) and targets."""
    with RowReader(rows) as reader:
        images, masks = reader.read(np.arange(len(rows)))
    y, _ = targets(masks, rows.classes, label_mode)
    return (images if inputs is None else inputs.apply(images)), y


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    """The log line of one epoch: what train_log.csv gets, readable; val fields when validated."""
    parts = [f"epoch {row['epoch']}/{epochs}", f"step {row['step']}", f"lr {row['lr']:.4g}"]
    parts += [
        f"{key} {value:.4f}"
        for key, value in row.items()
        if key not in ("epoch", "step", "lr", "time_s")
        and value is not None
        and not math.isnan(value)
    ]
    return ", ".join([*parts, f"{row['time_s']:.3g} s"])


def write_log(
    path: Path, rows: list[dict[str, Any]], columns: tuple[str, ...] = LOG_COLUMNS
) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            log = csv.DictWriter(handle, fieldnames=columns)
            log.writeheader()
            log.writerows(rows)

    write_atomic(path, write)


@torch.no_grad()
def validate(
    model, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], criterion
) -> tuple[float, float]:
    """Mean loss (weighted by batch size) and foreground Dice over the whole set, given as
    batches of (images, targets)."""
    model.eval()
    total, count, predicted, reference = 0.0, 0, [], []
    for x, t in batches:
        total += criterion(model, x, t).item() * len(x)
        count += len(x)
        predicted.append(model(x).argmax(dim=1).cpu().numpy() > 0)
        reference.append(t.cpu().numpy() > 0)
    counts = confusion_counts(np.concatenate(predicted), np.concatenate(reference))
    return total / count, float(overlap_metrics(*counts)["dice"])


def freeze(model: nn.Module, freeze_blocks: int, blocks=encoder_blocks) -> list[nn.Module]:
    """Freeze the first `freeze_blocks` blocks of `model` (`blocks(model, k)`: the U-Net's
    contracting blocks by default); returns them."""
    frozen = blocks(model, freeze_blocks)
    for block in frozen:
        block.requires_grad_(False)
    return frozen


def init_from_checkpoint(
    model: nn.Module, path: Path, freeze_blocks: int, blocks=encoder_blocks
) -> list[nn.Module]:
    """Load every weight of `path` whose name and shape match (transfer learning: the output
    layer may differ) and freeze the first `freeze_blocks` blocks (`freeze`); returns them."""
    state = load_weights(path)
    own = model.state_dict()
    matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matching:
        raise InputError(None, str(path), "no weight matches the model (different architecture)")
    model.load_state_dict(matching, strict=False)
    print(f"initialised {len(matching)}/{len(own)} tensors from {path}", flush=True)
    return freeze(model, freeze_blocks, blocks)


class Trainer:
    """One run's training: the network, optimiser, generators and progress, epoch by epoch.

    A segmentation run's by default; another task (`segsweep.train.classify`) overrides the
    hooks: `make_criterion`, `n_outputs`, `build_network`, `frozen_blocks`, `spatial_dims`,
    `train_batches`, `val_batches`, `validation_metrics`, `early_stopping_metric`, and the
    log's `log_columns` and `stop_metrics`."""

    log_columns = LOG_COLUMNS
    stop_metrics = STOP_METRICS

    def __init__(
        self,
        hp: dict[str, Any],
        data: TrainingData,
        files: RunFiles,
        device: torch.device,
        init_checkpoint: Path | None = None,
    ) -> None:
        self.hp, self.files, self.device = hp, files, device
        self.criterion = self.make_criterion(data)
        make_optimizer(hp, [torch.zeros(1, requires_grad=True)])  # reject a bad name before work
        self.stop_metric = self.early_stopping_metric()
        if self.stop_metric not in self.stop_metrics:
            raise ValueError(
                f"unknown early_stopping_metric {self.stop_metric!r}; "
                f"known: {', '.join(self.stop_metrics)}"
            )
        torch.manual_seed(hp["seed"])
        torch.use_deterministic_algorithms(True, warn_only=True)
        self.rng = np.random.default_rng(hp["seed"])
        self.aug_rng = torch.Generator().manual_seed(int(hp["seed"]))
        self.augment = Augmenter(hp, self.aug_rng) if hp["augment"] else None
        self.streamed = data.streamed
        if self.streamed is not None:
            in_channels, self.n_train = self.streamed[0].channels, len(self.streamed[0])
        else:
            in_channels, self.n_train = data.x_train.shape[-1], len(data.x_train)
        out_channels = self.n_outputs(data)
        model = self.build_network(in_channels, out_channels)
        self.frozen: list[nn.Module] = []
        if hp["init_from"]:
            if init_checkpoint is None:
                raise InputError(
                    None, str(hp["init_from"]), "init_from needs the checkpoint to load"
                )
            self.frozen = init_from_checkpoint(
                model, init_checkpoint, int(hp["freeze_blocks"]), self.frozen_blocks
            )
        elif hp["pretrained"] != "none":  # built from ImageNet weights
            self.frozen = freeze(model, int(hp["freeze_blocks"]), self.frozen_blocks)
        self.cuda = device.type == "cuda"
        cuda_format = torch.channels_last if self.spatial_dims() == 2 else torch.channels_last_3d
        memory_format = cuda_format if self.cuda else torch.contiguous_format
        self.memory_format = memory_format
        self.model = model.to(device, memory_format=memory_format)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(hp, trainable)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.cuda)
        if self.streamed is None:
            self.x_train = to_tensor(data.x_train).to(device, memory_format=memory_format)
            self.x_val = to_tensor(data.x_val).to(device, memory_format=memory_format)
            self.t_train = torch.from_numpy(data.y_train).to(device)
            self.t_val = torch.from_numpy(data.y_val).to(device)
        self.data_wait_s = 0.0  # streamed: seconds the loop waited for batches
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
        self.steps_per_epoch = math.ceil(self.n_train / self.batch_size)
        self.total_steps = self.steps_per_epoch * self.epochs
        self.progress = Progress()
        self.stop_at = self.epochs  # the last epoch this job trains (a rung's, under halving)
        self.events: RunEvents | None = None  # TensorBoard's, while fit trains

    # the log column early stopping watches when the run leaves it unset (the workflow sets it
    # in every run's hyperparameters)
    STOP_METRIC = "val_dice"

    def early_stopping_metric(self) -> str:
        """The log column early stopping watches (one of `stop_metrics`)."""
        return self.hp["early_stopping_metric"] or self.STOP_METRIC

    def make_criterion(self, data: TrainingData):
        """The loss: called as criterion(model, x, t) → scalar tensor."""
        return Criterion(self.hp)

    def n_outputs(self, data: TrainingData) -> int:
        """Output channels of the network: background and the run's classes."""
        return 1 + len(data.classes)

    def build_network(self, in_channels: int, out_channels: int) -> nn.Module:
        """The untrained network (a U-Net: no pretrained weights)."""
        if self.hp["pretrained"] != "none":
            raise ConfigError("train.pretrained", self.hp["pretrained"], "none for a U-Net")
        return build_model(self.hp, in_channels, out_channels)

    def frozen_blocks(self, model: nn.Module, k: int) -> list[nn.Module]:
        """The first k blocks of the network, which a transfer run freezes."""
        return encoder_blocks(model, k)

    def spatial_dims(self) -> int:
        return model_dims(self.hp)

    @property
    def state_path(self) -> Path:
        return self.files.state / "resume.pt"

    def resume(self) -> None:
        """Continue from the saved state when it belongs to this run and has not trained past
        `stop_at`; else start afresh and remove checkpoints a run with other hyperparameters
        left behind."""
        resumed = load_state(self.state_path, self.hp, self.device)
        if (
            resumed is not None
            and resumed["progress"]["step"] > self.stop_at * self.steps_per_epoch
        ):
            print(f"ignoring {self.state_path}: trained past epoch {self.stop_at}", flush=True)
            resumed = None
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

    def open_events(self) -> RunEvents | None:
        """The run's TensorBoard event files (none without `files.events`): afresh, or
        continuing those of the epochs a resumed run has logged."""
        if self.files.events is None:
            return None
        resumed_at = self.progress.epoch if self.progress.rows else None
        return RunEvents(self.files.events, self.hp, self.log_columns, resumed_at)

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
            if self.streamed is not None:
                order = streamed_order(self.rng, self.n_train, self.streamed[0].block)
            else:
                order = self.rng.permutation(self.n_train)
            progress.order = order.tolist()
        batches = self.train_batches(progress.order, progress.position)
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
            x, t = next(batches)
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
            progress.total += batch_loss * len(x)
            bar.set_postfix(loss=f"{batch_loss:.4f}", refresh=False)
            bar.update()
            if unit == "steps" and progress.step % every == 0:
                self.save_checkpoint(f"step-{progress.step:07d}.pt")
                progress.start_time = time.perf_counter() - epoch_start
                self.save_state()
        bar.close()
        batches.close()
        return lr

    def train_batches(self, order: list[int], position: int) -> Iterator:
        """The (augmented) training batches of an epoch's `order` from batch `position` on:
        gathered from the resident tensors, or read ahead by a prefetcher; `close` it."""
        if self.streamed is not None:
            return self._streamed(self.streamed[0], order, position, self.augment)
        return self._resident(torch.tensor(order, device=self.device), position)

    def _resident(self, order: torch.Tensor, position: int) -> Iterator:
        for start in range(position * self.batch_size, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            if self.augment is not None:
                yield self.augment.batch(self.x_train, self.t_train, index)
            else:
                yield self.x_train[index], self.t_train[index]

    def _streamed(self, samples, order, position, augment) -> Iterator:
        prefetcher = Prefetcher(
            samples, order, self.batch_size, self.device, position, self.memory_format
        )
        try:
            for x, t in prefetcher:
                yield augment.batch(x, t) if augment is not None else (x, t)
        finally:
            prefetcher.close()
            self.data_wait_s += prefetcher.wait_s

    def val_batches(self) -> Iterator:
        """The validation set in order, batch by batch."""
        if self.streamed is not None:
            samples = self.streamed[1]
            return self._streamed(samples, range(len(samples)), 0, None)
        size = self.batch_size
        return (
            (self.x_val[s : s + size], self.t_val[s : s + size])
            for s in range(0, len(self.x_val), size)
        )

    def end_epoch(self, lr: float, epoch_start: float) -> None:
        """Validate, log, decide on early stopping, checkpoint and save the state."""
        progress, hp = self.progress, self.hp
        metrics = self.validation_metrics()
        row = {
            "epoch": progress.epoch,
            "step": progress.step,
            "lr": lr,  # of the epoch's last step
            "train_loss": progress.total / self.n_train,
            **metrics,
            "time_s": round(time.perf_counter() - epoch_start, 3),
        }
        progress.rows.append(row)
        print(epoch_line(row, self.epochs), flush=True)
        signed = self.stop_metrics[self.stop_metric] * row[self.stop_metric]
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
        rung_end = progress.epoch == self.stop_at  # a rung's score needs its last epoch's weights
        if (hp["checkpoint_unit"] == "epochs" and progress.epoch % every == 0) or last or rung_end:
            if not any(s["step"] == progress.step for s in progress.saved):
                self.save_checkpoint(f"epoch-{progress.epoch:04d}.pt")
        progress.done = last
        progress.epoch += 0 if last else 1
        progress.position, progress.order, progress.total, progress.start_time = 0, None, 0.0, 0
        if self.events is not None:  # before the state: a resumed run purges what follows it
            self.events.epoch(row)
        self.save_state()
        write_log(self.files.log, progress.rows, self.log_columns)

    def validation_metrics(self) -> dict[str, float]:
        """The validation columns of the epoch's log row (also what early stopping reads)."""
        val_loss, val_dice = validate(self.model, self.val_batches(), self.criterion)
        return {"val_loss": val_loss, "val_dice": val_dice}

    def fit(self, snapshot: Path | None = None) -> None:
        """Train to `stop_at` (the last epoch unless a rung's, or early-stopped), then write the
        log and the index; leave the state in `snapshot` (a rung below the last: the run goes
        on from there), else remove it (the run ends here). The index of a run ended short of
        train.epochs records `epochs_trained`."""
        self.events = self.open_events()
        while not self.progress.done and self.progress.epoch <= self.stop_at:
            epoch_start = time.perf_counter() - self.progress.start_time
            lr = self.train_epoch(epoch_start)
            self.end_epoch(lr, epoch_start)
        write_log(self.files.log, self.progress.rows, self.log_columns)
        index = {
            "checkpoints": self.progress.saved,
            "classes": self.meta["classes"],
            "label_mode": self.meta["label_mode"],
        }
        trained = len(self.progress.rows)
        if self.stop_at < self.epochs and not self.progress.done:
            index["epochs_trained"] = trained
        write_json(self.files.index, index)
        if snapshot is not None:
            Path(snapshot).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.state_path, snapshot)
        else:
            shutil.rmtree(self.files.state)
        if self.events is not None:
            self.events.close(ended=snapshot is None)


def train_run(
    hp: dict[str, Any],
    train_h5: Path,
    val_h5: Path,
    out: RunFiles | str | Path,
    device: torch.device | str | None = None,
    threads: int | None = None,
    init_checkpoint: Path | None = None,
    subjects: dict[str, list[str]] | None = None,
    rung: Rung = WHOLE_RUN,
) -> None:
    """Train one run (resuming from its saved state when present) and write its params,
    subjects, log, checkpoints and (last) checkpoint index; `out` is a run folder or its files;
    `subjects` (train and val lists) selects the samples of both split files; `rung` stops it
    at a rung of successive halving (`segsweep.train.rungs`)."""
    hp, files, device = prepare_run(hp, out, device, threads)
    data = training_data(hp, train_h5, val_h5, subjects, device)
    write_json(files.subjects, data.subjects)
    trainer = Trainer(hp, data, files, device, init_checkpoint)
    try:
        run_trainer(trainer, rung)
    finally:
        for samples in data.streamed or ():
            samples.close()


def prepare_run(
    hp: dict[str, Any],
    out: RunFiles | str | Path,
    device: torch.device | str | None,
    threads: int | None,
) -> tuple[dict[str, Any], RunFiles, torch.device]:
    """A run's hyperparameters (defaults filled in, with its run_id), files and device (the
    first GPU, else the CPU, when None); sets torch's CPU threads when given."""
    files = out if isinstance(out, RunFiles) else RunFiles.in_folder(out)
    hp = complete(hp, "train")
    hp = {**hp, "run_id": hp.get("run_id", files.index.parent.parent.name)}
    device = choose_device() if device is None else torch.device(device)
    if threads:
        torch.set_num_threads(threads)
    return hp, files, device


def run_trainer(trainer: Trainer, rung: Rung = WHOLE_RUN) -> None:
    """Write the run's params, resume from its state when there is one (from the rung below's
    snapshot under halving), and train to the end or to the rung's epochs."""
    files = trainer.files
    files.checkpoints.mkdir(parents=True, exist_ok=True)
    files.state.mkdir(parents=True, exist_ok=True)
    files.params.write_text(yaml.safe_dump(trainer.hp, sort_keys=True))
    if rung.stop_at is not None:
        trainer.stop_at = min(int(rung.stop_at), trainer.epochs)
    if rung.start is not None:
        start_from(rung.start, trainer.state_path)
    trainer.resume()
    trainer.fit(rung.snapshot)
