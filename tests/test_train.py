"""Training on a tiny synthetic HDF5: outputs, determinism, learning, learning-rate decay."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from segsweep import train
from segsweep.train import LOG_COLUMNS, read_split, targets, train_run

CLASSES = ["femur", "tibia", "fibula"]
HP = {
    "model": "unet2d",
    "depth": 2,
    "base_channels": 4,
    "batch_norm": True,
    "dropout": 0.0,
    "labels": "merged",
    "loss": "dice",
    "optimizer": "adam",
    "lr": 0.01,
    "decay": 0.0,
    "batch_size": 4,
    "epochs": 2,
    "checkpoint_every": 1,
    "seed": 0,
}


def write_toy_h5(path, patients=("p1", "p2"), n_slices=4, size=16, seed=0):
    """Slices of noise with bright squares: femur (2.0) above tibia (1.0); a small fibula
    (3.0) only in odd slices, so some slices lack a class. Layout as results/datasets/*.h5."""
    rng = np.random.default_rng(seed)
    images, masks, ids, slices = [], [], [], []
    for patient in patients:
        for k in range(n_slices):
            image = rng.normal(0.0, 0.1, (size, size, 1)).astype(np.float32)
            mask = np.zeros((size, size, 3), np.uint8)
            r, c = rng.integers(1, 4, size=2)
            mask[r : r + 5, c : c + 8, 0] = 1
            mask[r + 7 : r + 11, c + 1 : c + 7, 1] = 1
            if k % 2:
                mask[r + 7 : r + 10, c + 9 : c + 11, 2] = 1
            image[..., 0] += mask @ np.array([2.0, 1.0, 3.0], np.float32)
            images.append(image)
            masks.append(mask)
            ids.append(patient)
            slices.append(k)
    with h5py.File(path, "w") as h5:
        h5["images"] = np.stack(images)
        h5["masks"] = np.stack(masks)
        h5.create_dataset("patient_id", data=ids, dtype=h5py.string_dtype())
        h5["slice_id"] = np.asarray(slices, np.int32)
        h5.attrs["classes"] = json.dumps(CLASSES)
        h5.attrs["normalisation"] = json.dumps({"method": "zscore", "mean": [0], "std": [1]})
        h5.attrs["spacing"] = json.dumps([1.0, 1.0, 2.0])
    return path


@pytest.fixture()
def data(tmp_path):
    return (
        write_toy_h5(tmp_path / "train.h5", ("a", "b", "c"), seed=1),
        write_toy_h5(tmp_path / "val.h5", ("d", "e"), seed=2),
    )


def test_read_split_and_targets(data):
    split = read_split(data[0])
    assert split.images.shape == (12, 16, 16, 1) and split.masks.shape == (12, 16, 16, 3)
    assert list(split.patient_id[:5]) == ["a", "a", "a", "a", "b"]
    assert list(split.slice_id[:4]) == [0, 1, 2, 3] and split.classes == CLASSES
    merged, merged_classes = targets(split.masks, split.classes, "merged")
    assert merged_classes == ["foreground"]
    np.testing.assert_array_equal(merged, split.masks.any(-1))
    separate, separate_classes = targets(split.masks, split.classes, "separate")
    assert separate_classes == CLASSES
    for index in (1, 2, 3):
        np.testing.assert_array_equal(separate == index, split.masks[..., index - 1] == 1)
    with pytest.raises(ValueError, match="unknown label mode"):
        targets(split.masks, split.classes, "per_bone")


def test_training_writes_params_log_and_checkpoints(data, tmp_path):
    out = tmp_path / "runs" / "r1"
    train_run({**HP, "epochs": 3, "checkpoint_every": 2}, *data, out, device="cpu")
    params = yaml.safe_load((out / "params.yaml").read_text())
    assert params == {**HP, "epochs": 3, "checkpoint_every": 2, "run_id": "r1"}
    log = pd.read_csv(out / "train_log.csv")
    assert tuple(log.columns) == LOG_COLUMNS
    assert log["epoch"].tolist() == [1, 2, 3] and log["step"].tolist() == [3, 6, 9]
    assert log[["train_loss", "val_loss", "val_dice"]].notna().all().all()
    index = json.loads((out / "checkpoints" / "index.json").read_text())
    assert index == {
        "checkpoints": [
            {"file": "epoch-0002.pt", "epoch": 2, "step": 6},
            {"file": "epoch-0003.pt", "epoch": 3, "step": 9},
        ],
        "classes": ["foreground"],
        "label_mode": "merged",
    }
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "epoch-0002.pt",
        "epoch-0003.pt",
        "index.json",
    ]
    ckpt = torch.load(out / "checkpoints" / "epoch-0003.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["step"], ckpt["in_channels"], ckpt["out_channels"]) == (3, 9, 1, 2)
    assert ckpt["hp"]["run_id"] == "r1" and ckpt["label_mode"] == "merged"


def test_training_is_deterministic_for_a_seed(data, tmp_path):
    hp = {**HP, "dropout": 0.3, "labels": "separate"}
    for name in ("one", "two"):
        train_run(hp, *data, tmp_path / name, device="cpu")
    train_run({**hp, "seed": 1}, *data, tmp_path / "other", device="cpu")
    logs = {n: pd.read_csv(tmp_path / n / "train_log.csv") for n in ("one", "two", "other")}
    columns = ["train_loss", "val_loss", "val_dice"]
    pd.testing.assert_frame_equal(logs["one"][columns], logs["two"][columns])
    assert not logs["one"]["train_loss"].equals(logs["other"]["train_loss"])
    states = [
        torch.load(tmp_path / n / "checkpoints/epoch-0002.pt", weights_only=True)["model"]
        for n in ("one", "two")
    ]
    assert states[0].keys() == states[1].keys()
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    assert (
        torch.load(tmp_path / "one/checkpoints/epoch-0002.pt", weights_only=True)["out_channels"]
        == 4
    )


@pytest.mark.parametrize("loss", ["dice", "cross_entropy"])
def test_learning_lowers_the_loss(data, tmp_path, loss):
    train_run({**HP, "loss": loss, "epochs": 12, "checkpoint_every": 12}, *data, tmp_path)
    log = pd.read_csv(tmp_path / "train_log.csv")
    assert log["train_loss"].iloc[-1] < 0.5 * log["train_loss"].iloc[0]
    assert log["val_loss"].iloc[-1] < log["val_loss"].iloc[0]
    assert log["val_dice"].iloc[-1] > 0.8


def test_time_based_decay_per_step(data, tmp_path):
    hp = {**HP, "optimizer": "sgd", "lr": 0.1, "decay": 0.5}
    train_run(hp, *data, tmp_path, device="cpu")
    log = pd.read_csv(tmp_path / "train_log.csv")
    # the logged lr is that of each epoch's last step, t = step - 1
    np.testing.assert_allclose(log["lr"], 0.1 / (1 + 0.5 * (log["step"] - 1)))


def test_main_reads_hyperparameters_as_json(data, tmp_path, monkeypatch):
    threads = []
    monkeypatch.setattr(train.torch, "set_num_threads", threads.append)
    out = tmp_path / "runs" / "cli"
    hp = json.dumps({**HP, "epochs": 1, "run_id": "given"})
    argv = ["--hp-json", hp, "--train", str(data[0]), "--val", str(data[1])]
    train.main([*argv, "--out", str(out), "--threads", "1", "--device", "cpu"])
    assert threads == [1]
    assert yaml.safe_load((out / "params.yaml").read_text())["run_id"] == "given"
    assert (out / "checkpoints" / "epoch-0001.pt").is_file()


def test_unknown_optimizer_is_an_error_before_training(data, tmp_path):
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'.*adam, sgd"):
        train_run({**HP, "optimizer": "rmsprop"}, *data, tmp_path, device="cpu")
    assert not (tmp_path / "train_log.csv").exists()
