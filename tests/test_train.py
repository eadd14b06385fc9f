"""Training on a tiny synthetic HDF5: outputs, determinism, resume after SIGKILL (2D and 3D),
learning, learning-rate decay, early stopping, checkpoints by steps, per-class models, transfer,
subsets, 3D runs on volumes predicting slices, the per-epoch log line and the progress bar."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from segsweep.config_schema import complete
from segsweep.errors import InputError
from segsweep.evaluate.predict import predict_labels
from segsweep.io.splits import read_split
from segsweep.labels import targets
from segsweep.model.augment import Augmenter
from segsweep.model.checkpoints import VolumeSlices, load_checkpoint, selected_checkpoint
from segsweep.tasks import stages
from segsweep.train.loop import LOG_COLUMNS, subset_patients, train_run

torch.set_num_threads(1)
SCRIPTS = str(Path(__file__).resolve().parents[1] / "scripts")

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


def write_toy_h5(path, patients=("p1", "p2"), n_slices=4, size=16, seed=0, volumes=False):
    """Slices of noise with bright squares: femur (2.0) above tibia (1.0); a small fibula
    (3.0) only in odd slices, so some slices lack a class. Layout as results/datasets/*.h5,
    with `volumes` also the 3D layout (`pack --volumes`)."""
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
        if volumes:
            shape = (len(patients), n_slices)
            h5["volumes/images"] = np.stack(images).reshape(*shape, size, size, 1)
            h5["volumes/masks"] = np.stack(masks).reshape(*shape, size, size, 3)
            h5.create_dataset("volumes/patient_id", data=patients, dtype=h5py.string_dtype())
    return path


@pytest.fixture()
def data(tmp_path):
    return (
        write_toy_h5(tmp_path / "train.h5", ("a", "b", "c"), seed=1, volumes=True),
        write_toy_h5(tmp_path / "val.h5", ("d", "e"), seed=2, volumes=True),
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
    # every effective hyperparameter: the schema's defaults for those the run leaves out
    assert params == {**complete(HP, "train"), "epochs": 3, "checkpoint_every": 2, "run_id": "r1"}
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


# streamed: the splits exceed a budget of about 1 kB, so `data: auto` streams them
STREAMED = {"data": "auto", "memory_budget_gb": 1e-6}


@pytest.mark.parametrize("streaming", [{}, STREAMED], ids=["resident", "streamed"])
def test_training_is_deterministic_for_a_seed(data, tmp_path, streaming):
    """Same seed on CPU: identical log (but for wall time) and identical checkpoints, with
    dropout, augmentation and shuffling all drawing random numbers; resident or streamed."""
    hp = {**HP, "dropout": 0.3, "labels": "separate", "augment": True, **streaming}
    for name in ("one", "two"):
        train_run(hp, *data, tmp_path / name, device="cpu")
    train_run({**hp, "seed": 1}, *data, tmp_path / "other", device="cpu")
    logs = {n: pd.read_csv(tmp_path / n / "train_log.csv") for n in ("one", "two", "other")}
    columns = [c for c in LOG_COLUMNS if c != "time_s"]
    pd.testing.assert_frame_equal(logs["one"][columns], logs["two"][columns])
    assert not logs["one"]["train_loss"].equals(logs["other"]["train_loss"])
    index = (tmp_path / "one/checkpoints/index.json").read_text()
    assert index == (tmp_path / "two/checkpoints/index.json").read_text()
    for entry in json.loads(index)["checkpoints"]:
        one, two = (
            torch.load(tmp_path / n / "checkpoints" / entry["file"], weights_only=True)
            for n in ("one", "two")
        )
        _assert_same_weights(one["model"], two["model"])
        assert one["out_channels"] == 4 and one["step"] == two["step"]


@pytest.mark.parametrize("loss", ["dice", "cross_entropy"])
def test_learning_lowers_the_loss(data, tmp_path, loss):
    train_run({**HP, "loss": loss, "epochs": 12, "checkpoint_every": 12}, *data, tmp_path)
    log = pd.read_csv(tmp_path / "train_log.csv")
    assert log["train_loss"].iloc[-1] < 0.5 * log["train_loss"].iloc[0]
    assert log["val_loss"].iloc[-1] < log["val_loss"].iloc[0]
    assert log["val_dice"].iloc[-1] > 0.8


def test_time_based_decay_per_step(data, tmp_path):
    hp = {**HP, "optimizer": "sgd", "lr": 0.1, "decay": 0.5, "lr_policy": "time"}
    train_run(hp, *data, tmp_path, device="cpu")
    log = pd.read_csv(tmp_path / "train_log.csv")
    # the logged lr is that of each epoch's last step, t = step - 1
    np.testing.assert_allclose(log["lr"], 0.1 / (1 + 0.5 * (log["step"] - 1)))


def test_main_reads_hyperparameters_as_json(data, tmp_path, monkeypatch):
    threads = []
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    out = tmp_path / "runs" / "cli"
    hp = json.dumps({**HP, "epochs": 1, "run_id": "given"})
    argv = ["--hp-json", hp, "--train", str(data[0]), "--val", str(data[1])]
    stages.train([*argv, "--out", str(out), "--threads", "1", "--device", "cpu"])
    assert threads == [1]
    assert yaml.safe_load((out / "params.yaml").read_text())["run_id"] == "given"
    assert (out / "checkpoints" / "epoch-0001.pt").is_file()


def test_unknown_optimizer_is_an_error_before_training(data, tmp_path):
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'.*adam, sgd"):
        train_run({**HP, "optimizer": "rmsprop"}, *data, tmp_path, device="cpu")
    assert not (tmp_path / "train_log.csv").exists()


def _weights(path):
    return torch.load(path, weights_only=True)["model"]


def _assert_same_weights(one, two):
    assert one.keys() == two.keys()
    for key in one:
        assert torch.equal(one[key], two[key]), key


RESUME_HP = {
    **HP,
    "epochs": 16,
    "checkpoint_every": 5,
    "checkpoint_unit": "steps",
    "dropout": 0.3,
    "augment": True,
    "lr_policy": "cosine",
    "lr_t0": 3,
    "lr_t_mult": 2,
    "patience": 12,
    "early_stopping_metric": "val_loss",
}


# 3D: one volume of 4 slices per batch, so 3 steps per epoch as in 2D
RESUME_3D = {**RESUME_HP, "model": "unet3d", "batch_size": 1}


@pytest.mark.parametrize(
    "hp",
    [RESUME_HP, RESUME_3D, {**RESUME_HP, **STREAMED}, {**RESUME_3D, **STREAMED}],
    ids=["2d", "3d", "2d-streamed", "3d-streamed"],
)
def test_a_run_killed_by_sigkill_resumes_to_the_weights_of_an_uninterrupted_run(
    data, tmp_path, capsys, hp
):
    reference = tmp_path / "reference"
    train_run(hp, *data, reference, device="cpu")
    killed = tmp_path / "killed"
    argv = ["--hp-json", json.dumps(hp), "--train", str(data[0]), "--val", str(data[1])]
    env = {**os.environ, "PYTHONPATH": SCRIPTS, "SEGSWEEP_GPU_COUNT": "0"}
    process = subprocess.Popen(
        [sys.executable, "-m", "segsweep", "train", *argv, "--out", str(killed), "--threads", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    log = killed / "train_log.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) >= 4:  # header + 3 epochs
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "training ended before it could be killed"
    assert (killed / "state" / "resume.pt").is_file()
    assert not (killed / "checkpoints" / "index.json").exists()
    epochs_done = len(pd.read_csv(log))
    assert 3 <= epochs_done < 16
    # Snakemake removes a failed job's declared outputs before running it again
    for declared in ("params.yaml", "train_log.csv"):
        (killed / declared).unlink()
    capsys.readouterr()
    train_run(hp, *data, killed, device="cpu")
    assert "resuming at epoch" in capsys.readouterr().out
    assert not (killed / "state").exists()
    ref_index = json.loads((reference / "checkpoints/index.json").read_text())
    assert json.loads((killed / "checkpoints/index.json").read_text()) == ref_index
    for entry in ref_index["checkpoints"]:
        _assert_same_weights(
            _weights(reference / "checkpoints" / entry["file"]),
            _weights(killed / "checkpoints" / entry["file"]),
        )
    columns = [c for c in LOG_COLUMNS if c != "time_s"]
    pd.testing.assert_frame_equal(
        pd.read_csv(reference / "train_log.csv")[columns],
        pd.read_csv(killed / "train_log.csv")[columns],
    )


def test_state_of_other_hyperparameters_is_ignored(data, tmp_path, capsys):
    state = tmp_path / "state"
    state.mkdir()
    torch.save({"hp": {"lr": 1.0}}, state / "resume.pt")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "epoch-0009.pt").write_bytes(b"stale")
    train_run({**HP, "epochs": 1}, *data, tmp_path, device="cpu")
    assert "ignoring" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "epoch-0001.pt",
        "index.json",
    ]


def test_early_stopping_and_checkpoints_every_n_steps(data, tmp_path):
    hp = {**HP, "epochs": 30, "lr": 1e-9, "patience": 2, "early_stopping_metric": "val_dice"}
    hp.update(checkpoint_every=4, checkpoint_unit="steps", lr_policy="constant")
    train_run(hp, *data, tmp_path, device="cpu")
    log = pd.read_csv(tmp_path / "train_log.csv")
    # a learning rate of 1e-9 changes nothing: the best Dice is that of epoch 1 (or 2 by noise)
    assert len(log) <= 4 and len(log) < 30
    best = log["val_dice"].idxmax()
    assert len(log) == best + 1 + 2
    index = json.loads((tmp_path / "checkpoints/index.json").read_text())
    steps = [c["step"] for c in index["checkpoints"]]
    assert steps[:-1] == list(range(4, 3 * len(log) + 1, 4))
    assert steps[-1] == 3 * len(log)
    assert index["checkpoints"][0] == {"file": "step-0000004.pt", "epoch": 2, "step": 4}


def test_per_class_run_combines_one_model_per_class(data, tmp_path):
    hp = {**HP, "labels": "per_class", "epochs": 10, "checkpoint_every": 10}
    train_run(hp, *data, tmp_path, device="cpu")
    index = json.loads((tmp_path / "checkpoints/index.json").read_text())
    assert index["classes"] == CLASSES and index["label_mode"] == "per_class"
    model, meta = load_checkpoint(tmp_path / "checkpoints/epoch-0010.pt", "cpu")
    assert len(model.members) == 3 and meta["out_channels"] == 4
    val = read_split(data[1])
    labels = predict_labels(model, val.images, "cpu", batch_size=3)
    assert labels.shape == val.images.shape[:3] and set(np.unique(labels)) <= {0, 1, 2, 3}
    expected, _ = targets(val.masks, val.classes, "separate")
    assert (labels == expected).mean() > 0.9


def test_transfer_initialises_from_a_checkpoint_and_freezes_blocks(data, tmp_path):
    train_run({**HP, "epochs": 1}, *data, tmp_path / "source", device="cpu")
    source = tmp_path / "source/checkpoints/epoch-0001.pt"
    hp = {**HP, "epochs": 1, "init_from": "source", "freeze_blocks": 1, "labels": "separate"}
    train_run(hp, *data, tmp_path / "target", device="cpu", init_checkpoint=source)
    before, after = _weights(source), _weights(tmp_path / "target/checkpoints/epoch-0001.pt")
    frozen = [k for k in before if k.startswith("encoder.0.")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert not torch.equal(before["encoder.1.first.0.weight"], after["encoder.1.first.0.weight"])
    assert after["heads.0.weight"].shape[0] == 4  # separate labels: a new output layer
    selection = {"selected": {"file": "epoch-0001.pt", "epoch": 1, "step": 3}}
    (tmp_path / "source/selection.json").write_text(json.dumps(selection))
    index = tmp_path / "source/checkpoints/index.json"
    assert selected_checkpoint(tmp_path / "source/selection.json", index) == source
    with pytest.raises(Exception, match="init_from needs the checkpoint"):
        train_run(hp, *data, tmp_path / "missing", device="cpu")


def test_training_subsets_are_nested_and_used(data, tmp_path):
    patients = np.array([f"p{i}" for i in range(20)])
    subsets = [subset_patients(patients, f) for f in (0.25, 0.5, 0.75, 1.0)]
    assert [len(s) for s in subsets] == [5, 10, 15, 20]
    assert subsets[0] < subsets[1] < subsets[2] < subsets[3]
    train_run({**HP, "epochs": 1, "train_fraction": 0.34}, *data, tmp_path, device="cpu")
    assert pd.read_csv(tmp_path / "train_log.csv")["step"].tolist() == [2]  # 8 slices, batch 4


def test_a_3d_run_trains_on_volumes_and_predicts_slices(data, tmp_path):
    hp = {**HP, "model": "unet3d", "labels": "separate", "batch_size": 2, "epochs": 30}
    hp["checkpoint_every"] = 30
    train_run(hp, *data, tmp_path, device="cpu")
    log = pd.read_csv(tmp_path / "train_log.csv")
    assert log["step"].tolist() == list(range(2, 61, 2))  # 3 volumes, 2 per batch
    assert log["train_loss"].iloc[-1] < 0.6 * log["train_loss"].iloc[0]
    model, meta = load_checkpoint(tmp_path / "checkpoints/epoch-0030.pt", "cpu")
    assert isinstance(model, VolumeSlices) and model.net.dims == 3
    assert meta["volume_slices"] == 4 and meta["hp"]["model"] == "unet3d"
    val = read_split(data[1])
    labels = predict_labels(model, val.images, "cpu", batch_size=5)  # whole volumes per batch
    volumes = torch.from_numpy(val.images.reshape(2, 4, 16, 16, 1)).permute(0, 4, 1, 2, 3)
    with torch.no_grad():
        direct = model.net(volumes).argmax(1).reshape(8, 16, 16)
    np.testing.assert_array_equal(labels, direct.numpy())
    expected, _ = targets(val.masks, val.classes, "separate")
    assert (labels == expected).mean() > 0.8
    with pytest.raises(ValueError, match="6 slices are not whole volumes of 4"):
        predict_labels(model, val.images[:6], "cpu", batch_size=8)


def test_3d_augmentation_moves_every_slice_of_a_volume_alike():
    """Volumes whose slices are all the same image stay so under every transform at once."""
    torch.manual_seed(0)
    image, label = torch.randn(4, 1, 1, 16, 16), (torch.rand(4, 1, 16, 16) > 0.5).long()
    x, t = image.expand(4, 1, 5, 16, 16).clone(), label.expand(4, 5, 16, 16).clone()
    hp = {"aug_p": 1.0, "aug_shift": 0.2, "aug_rotate": 30.0, "aug_gamma": 0.3}
    augment = Augmenter(complete(hp, "train"), torch.Generator().manual_seed(0))
    augmented, labels = augment.batch(x, t)
    assert augmented.shape == x.shape and labels.shape == t.shape
    assert not torch.allclose(augmented, x) and not torch.equal(labels, t)
    for volume, planes in zip(augmented, labels, strict=True):
        assert torch.equal(volume, volume[:, :1].expand_as(volume))
        assert torch.equal(planes, planes[:1].expand_as(planes))


def test_a_3d_run_on_splits_without_volumes_says_to_pack_them(tmp_path):
    flat = write_toy_h5(tmp_path / "train.h5", ("a", "b"))
    with pytest.raises(InputError, match=r"train\.h5.*preprocess\.volumes: true"):
        train_run({**HP, "model": "unet3d"}, flat, flat, tmp_path / "run", device="cpu")


LINE = re.compile(
    r"epoch (\d+)/2, step \d+, lr 0\.01, train_loss \d\.\d{4}, val_loss \d\.\d{4}, "
    r"val_dice \d\.\d{4}, [\d.e+-]+ s"
)


def test_one_log_line_per_epoch_and_a_progress_bar_on_a_terminal_only(
    data, tmp_path, capsys, monkeypatch
):
    train_run(HP, *data, tmp_path / "file", device="cpu")
    captured = capsys.readouterr()
    epochs = [m.group(1) for m in map(LINE.fullmatch, captured.out.splitlines()) if m]
    assert epochs == ["1", "2"] and captured.err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    train_run(HP, *data, tmp_path / "terminal", device="cpu")
    bar = capsys.readouterr().err
    assert "epoch 1/2: " in bar and "epoch 2/2: " in bar and "0/3 [" in bar  # 3 batches
