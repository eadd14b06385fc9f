"""Train one run of the classification task: a classifier (`segsweep.model.classifiers`) on the
packed image sets (`segsweep.io.image_sets`), through the segmentation run's `Trainer`
(`segsweep.train.loop`) and so with its outputs, resume and determinism.

Outputs (`RunFiles`): params.yaml; train_log.csv with `LOG_COLUMNS` (epoch, step, lr,
train_loss, val_loss, val_auc, val_accuracy, time_s); checkpoints (`segsweep.model.checkpoints`)
whose metadata adds `task` "classification", `size` (the packed side S) and `input_size` (the
side the network sees), with `classes` all K class names (output index i) and `label_mode`
"classification"; checkpoints/index.json, written last; subjects.json, the studies that trained
and validated the run `{"train": [...], "val": [...]}` (after `train_fraction`).

Data. The images [N, S, S] of train.h5 and val.h5, or with the run's subjects (studies: a fold of
cross-validation) those studies' images wherever packing put them; always resident on the
device (a packed set is small: 64 × 64 float32 is 16 kB an image). `train_fraction` keeps a
subset of the training patients, nested across fractions (`segsweep.train.loop.subset_patients`).

Batches. Shuffled every epoch by the run's seeded generator; a last batch of a single image is
merged into the one before it (batch norm needs two values per channel to train). Augmentation
(`augment`, the `aug_*` keys: flips, shifts, rotations, brightness, contrast, gamma) runs on the
device on the packed images (`segsweep.model.augment`, with an empty mask); the images are then
resized to `input_size` (`segsweep.model.classifiers.resize_images`) when it differs from S.

Loss and validation. Cross-entropy of the logits, per class weighted (`class_weights: balanced`:
n / (K · n_k) over the run's training images, 1 for a class it lacks) or not (`none`); the
validation loss is the same weighted cross-entropy over the whole validation set. val_auc is at
image level: the AUC of the positive (last) class's probability, for K > 2 classes the mean
one-versus-rest AUC over the classes validation has both with and without; NaN when there is
none (early stopping on val_auc then never sees a gain). val_accuracy: the argmax's. Early
stopping watches val_auc (unset `early_stopping_metric`) or val_loss.

Start and transfer (`pretrained`, `init_from`, `freeze_blocks`): the network starts from
random weights (seeded) or, with `pretrained: imagenet`, from torchvision's ImageNet weights but
its head (`segsweep.model.pretrained`: read from torch's cache, never downloaded); then every
tensor of the `init_from` checkpoint whose name and shape match is loaded over it (a head for
other classes is not). With either, the first `freeze_blocks` blocks (`classifier_blocks`) are
frozen, their batch norm kept in eval mode.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from segsweep.errors import ConfigError, InputError
from segsweep.io.image_sets import TASK, read_image_set
from segsweep.io.records import write_json
from segsweep.model.classifiers import (
    CLASSIFIERS,
    MIN_SIZE,
    build_classifier,
    classifier_blocks,
    resize_images,
)
from segsweep.train.loop import (
    RunFiles,
    Trainer,
    TrainingData,
    prepare_run,
    run_trainer,
    subset_patients,
)
from segsweep.train.rungs import WHOLE_RUN, Rung

LOG_COLUMNS = ("epoch", "step", "lr", "train_loss", "val_loss", "val_auc", "val_accuracy", "time_s")
STOP_METRICS = {"val_auc": 1.0, "val_loss": -1.0}  # sign: higher is better after multiplying
CLASS_WEIGHTS = ("balanced", "none")


def classification_data(
    hp: dict[str, Any],
    train_h5: Path,
    val_h5: Path,
    subjects: dict[str, list[str]] | None = None,
) -> TrainingData:
    """A run's images as channels-last arrays [N, S, S, 1] with class indices [N]: train.h5's
    (its `train_fraction` of patients) and val.h5's, or with `subjects` (train and val study
    lists) those studies' images of both files."""
    if subjects is None:
        train, val = read_image_set(train_h5), read_image_set(val_h5)
    else:
        train = read_image_set([train_h5, val_h5], subjects["train"])
        val = read_image_set([train_h5, val_h5], subjects["val"])
    if len(train) == 0 or len(val) == 0:
        raise InputError(None, f"{train_h5}, {val_h5}", "training and validation need images")
    if train.classes != val.classes or train.images.shape[1:] != val.images.shape[1:]:
        raise InputError(None, str(val_h5), f"classes or size differ from {train_h5}")
    trained = subset_patients(train.patient_id, hp["train_fraction"])
    train = train.rows(np.isin(train.patient_id, np.asarray(sorted(trained), dtype=object)))
    used = {
        "train": sorted(set(train.study_id.tolist())),
        "val": sorted(set(val.study_id.tolist())),
    }
    return TrainingData(
        train.images[..., None],
        train.label.astype(np.int64),
        val.images[..., None],
        val.label.astype(np.int64),
        list(train.classes),
        TASK,
        None,
        None,
        used,
    )


def class_weights(label: np.ndarray, n_classes: int) -> np.ndarray:
    """Balanced weights n / (K · n_k) of class indices `label` [n]; 1 for a class with none."""
    counts = np.bincount(label, minlength=n_classes).astype(np.float64)
    weights = np.ones(n_classes)
    present = counts > 0
    weights[present] = len(label) / (n_classes * counts[present])
    return weights


def image_auc(probabilities: np.ndarray, label: np.ndarray) -> float:
    """AUC of probabilities [N, K] for class indices [N] (see the module docstring): the share
    of (positive, negative) pairs that the positive's score ranks higher (Mann–Whitney), a tie
    counting half; NaN when no class is both present and absent."""
    n_classes = probabilities.shape[1]
    classes = [n_classes - 1] if n_classes == 2 else range(n_classes)
    aucs = []
    for k in classes:
        positive = np.asarray(label) == k
        scores, negatives = probabilities[positive, k], np.sort(probabilities[~positive, k])
        if len(scores) and len(negatives):
            below = np.searchsorted(negatives, scores, side="left")
            ties = np.searchsorted(negatives, scores, side="right") - below
            aucs.append((below + ties / 2).sum() / (len(scores) * len(negatives)))
    return float(np.mean(aucs)) if aucs else float("nan")


class ClassCriterion:
    """Cross-entropy of logits [B, K] and class indices [B], with per-class `weight` [K] (on
    the device) or unweighted (None); called as the segmentation criterion is, (model, x, t)."""

    def __init__(self, weight: torch.Tensor | None) -> None:
        self.weight = weight

    def __call__(self, model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.loss(model(x), t)

    def loss(self, logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), t, weight=self.weight)


class ClassifierTrainer(Trainer):
    """The `Trainer` of a classifier: its network, loss, batches (resized, augmented without
    masks) and validation (see the module docstring)."""

    STOP_METRIC = "val_auc"  # unset early_stopping_metric: the task's default

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
        if hp["model"] not in CLASSIFIERS:
            raise ConfigError("train.model", hp["model"], " | ".join(CLASSIFIERS))
        self.size = int(data.x_train.shape[1])
        self.input_size = int(hp["input_size"] or self.size)
        if self.input_size < MIN_SIZE[hp["model"]]:
            raise ConfigError(
                "train.input_size",
                self.input_size,
                f">= {MIN_SIZE[hp['model']]} px for {hp['model']} (null: the packed size)",
            )
        super().__init__(hp, data, files, device, init_checkpoint)
        if self.n_train % self.batch_size == 1 and self.n_train > 1:
            self.steps_per_epoch -= 1  # the last image joins the batch before it
            self.total_steps = self.steps_per_epoch * self.epochs
        self.meta = {**self.meta, "task": TASK, "size": self.size, "input_size": self.input_size}
        # augmentation moves a mask with every image: an empty one, never materialised
        plane = torch.zeros((1, self.size, self.size), dtype=torch.uint8, device=device)
        self.no_masks = plane.expand(self.n_train, self.size, self.size)

    def make_criterion(self, data: TrainingData) -> ClassCriterion:
        choice = self.hp["class_weights"]
        if choice not in CLASS_WEIGHTS:
            raise ConfigError("train.class_weights", choice, " | ".join(CLASS_WEIGHTS))
        if choice == "none":
            return ClassCriterion(None)
        weights = class_weights(data.y_train, len(data.classes))
        named = dict(zip(data.classes, weights.round(4).tolist(), strict=True))
        print(f"class weights {named}", flush=True)
        return ClassCriterion(torch.tensor(weights, dtype=torch.float32, device=self.device))

    def n_outputs(self, data: TrainingData) -> int:
        return len(data.classes)

    def build_network(self, in_channels: int, out_channels: int) -> nn.Module:
        return build_classifier(self.hp, in_channels, out_channels, self.hp["pretrained"])

    def frozen_blocks(self, model: nn.Module, k: int) -> list[nn.Module]:
        return classifier_blocks(model, k)

    def spatial_dims(self) -> int:
        return 2

    def sized(self, x: torch.Tensor) -> torch.Tensor:
        """Images as the network sees them: resized to `input_size`, in the run's layout."""
        return resize_images(x, self.input_size).contiguous(memory_format=self.memory_format)

    def train_batches(self, order: list[int], position: int) -> Iterator:
        order = torch.tensor(order, device=self.device)
        for step in range(position, self.steps_per_epoch):
            last = step == self.steps_per_epoch - 1
            index = order[step * self.batch_size : None if last else (step + 1) * self.batch_size]
            if self.augment is None:
                x = self.x_train[index]
            else:
                x, _ = self.augment.batch(self.x_train, self.no_masks, index)
            yield self.sized(x), self.t_train[index]

    def val_batches(self) -> Iterator:
        size = self.batch_size
        for start in range(0, len(self.x_val), size):
            yield self.sized(self.x_val[start : start + size]), self.t_val[start : start + size]

    @torch.no_grad()
    def validation_metrics(self) -> dict[str, float]:
        self.model.eval()
        logits = []
        for x, _ in self.val_batches():
            with torch.autocast(self.device.type, enabled=self.cuda):
                logits.append(self.model(x).float())
        logits = torch.cat(logits)
        probabilities = torch.softmax(logits, dim=1).double().cpu().numpy()
        label = self.t_val.cpu().numpy()
        return {
            "val_loss": self.criterion.loss(logits, self.t_val).item(),
            "val_auc": image_auc(probabilities, label),
            "val_accuracy": float(np.mean(probabilities.argmax(axis=1) == label)),
        }


def train_classifier(
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
    """Train one classification run (resuming from its saved state when present), as
    `segsweep.train.loop.train_run` trains a segmentation run: same arguments and outputs;
    `subjects` (train and val study lists) selects the images of both image-set files."""
    hp, files, device = prepare_run(hp, out, device, threads)
    data = classification_data(hp, train_h5, val_h5, subjects)
    write_json(files.subjects, data.subjects)
    run_trainer(ClassifierTrainer(hp, data, files, device, init_checkpoint), rung)
