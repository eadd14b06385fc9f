"""The `inputs` hyperparameter: packed channel names, which entries are allowed (with the list of
what is), windows recomputed from the packed values against windows of the original values,
the same map at training (numpy) and inference (`InputLayer`), and a run trained on a subset
and a window whose checkpoint predicts from the packed slices."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from test_train import write_toy_h5

from segsweep.channels import channel_names
from segsweep.errors import ConfigError
from segsweep.evaluate.predict import predict_labels
from segsweep.model.checkpoints import InputLayer, VolumeSlices, load_checkpoint
from segsweep.model.inputs import check, resolve
from segsweep.preprocess.normalise import normalise
from segsweep.train.loop import train_run


def test_packed_channel_names():
    assert channel_names(None, 1, "zscore") == ["image"]
    assert channel_names(None, 2, "minmax") == ["channel0", "channel1"]
    assert channel_names(["ct", "pet"], 2, "zscore") == ["ct", "pet"]
    windows = [[-160.0, 240.0], [10.0, 110.5]]
    assert channel_names(["ct", "pet"], 2, "window", windows) == [
        "ct[-160,240]",
        "ct[10,110.5]",
        "pet",
    ]
    with pytest.raises(ConfigError, match="3 image channels"):
        channel_names(["ct", "pet"], 3, "zscore")


def test_unknown_entries_are_rejected_with_what_is_allowed():
    names = ["ct", "pet"]
    check(["pet", "ct[10,110]", "ct[-1000, 400]"], names, "zscore")
    with pytest.raises(
        ConfigError, match=r"'mri'.*allowed: a packed channel: ct, pet; or a window"
    ):
        check(["mri"], names, "zscore", "sweep: run r: inputs")
    with pytest.raises(ConfigError, match=r"'ct\[110,10\]'.*finite low < high"):
        check(["ct[110,10]"], names, "zscore")
    with pytest.raises(ConfigError, match=r"'mri\[0,1\]'.*a packed channel"):
        check(["mri[0,1]"], names, "minmax")
    packed = channel_names(names, 2, "window", [[-160, 240]])
    check(["ct[-160,240]", "pet"], packed, "window")  # packed windows are names
    with pytest.raises(ConfigError, match=r"preprocess.normalise zscore or minmax"):
        check(["pet[0,5]"], packed, "window")
    with pytest.raises(ConfigError, match=r"preprocess.normalise zscore or minmax"):
        check(["ct[0,5]"], ["ct"], "image_zscore")


@pytest.mark.parametrize("method", ["zscore", "minmax"])
def test_windows_of_packed_values_equal_windows_of_the_original_values(method):
    """Packed with pack.normalise, then windowed on the fly, against clipping the original
    values (HU) directly."""
    rng = np.random.default_rng(0)
    original = np.stack(
        [rng.uniform(-1100, 1500, (3, 8, 8)), rng.gamma(2.0, 3.0, (3, 8, 8))], axis=-1
    )
    mean, std = original.reshape(-1, 2).mean(0), original.reshape(-1, 2).std(0)
    low, high = original.reshape(-1, 2).min(0), original.reshape(-1, 2).max(0)
    shift, scale = (low, high - low) if method == "minmax" else (mean, std)
    stats = {"method": method, "mean": mean.tolist(), "std": std.tolist()}
    stats |= {"shift": shift.tolist(), "scale": scale.tolist(), "channel_names": ["ct", "pet"]}
    packed = normalise(original, stats)
    inputs = resolve(["pet", "ct[10,110]", "ct[-40,160]"], stats)
    out = inputs.apply(packed)
    assert out.shape == (*packed.shape[:-1], 3) and out.dtype == np.float32
    assert np.array_equal(out[..., 0], packed[..., 1])
    for k, (a, b) in ((1, (10, 110)), (2, (-40, 160))):
        expected = (np.clip(original[..., 0], a, b) - a) / (b - a)
        assert np.abs(out[..., k] - expected).max() < 2e-5


def test_the_network_sees_the_same_inputs_at_training_and_inference():
    stats = {"method": "zscore", "mean": [40.0, 2.0], "std": [300.0, 1.5]}
    stats |= {"channel_names": ["ct", "pet"]}
    inputs = resolve(["ct[-160,240]", "pet"], stats)
    seen = []
    probe = torch.nn.Identity()
    probe.forward = lambda x: seen.append(x) or x
    layer = InputLayer(probe, inputs.to_dict())
    packed = np.random.default_rng(1).normal(size=(5, 6, 7, 2)).astype(np.float32)
    layer(torch.from_numpy(np.moveaxis(packed, -1, 1)))
    assert np.array_equal(np.moveaxis(seen[-1].numpy(), 1, -1), inputs.apply(packed))
    volumes = packed.reshape(1, 5, 6, 7, 2)  # [p, z, H, W, c] → [p, c, z, H, W]
    layer(torch.from_numpy(np.moveaxis(volumes, -1, 1)))
    assert np.array_equal(np.moveaxis(seen[-1].numpy(), 1, -1), inputs.apply(volumes))


def _two_channels(path, seed):
    """The toy split with a second, uninformative channel `noise`, packed as zscore."""
    with h5py.File(write_toy_h5(path, ("a", "b", "c"), seed=seed, volumes=True), "r+") as h5:
        for key in ("images", "volumes/images"):
            image = h5[key][()]
            noise = np.random.default_rng(seed).normal(size=image.shape).astype(np.float32)
            del h5[key]
            h5[key] = np.concatenate([image, noise], axis=-1)
        stats = {"method": "zscore", "mean": [0.0, 0.0], "std": [1.0, 1.0]}
        h5.attrs["normalisation"] = json.dumps(stats | {"channel_names": ["image", "noise"]})
    return path


@pytest.mark.parametrize("model", ["unet2d", "unet3d"])
def test_a_run_on_a_window_of_one_channel_predicts_from_the_packed_slices(tmp_path, model):
    torch.set_num_threads(1)
    train_h5, val_h5 = _two_channels(tmp_path / "t.h5", 1), _two_channels(tmp_path / "v.h5", 2)
    hp = {"seed": 0, "epochs": 2, "depth": 2, "base_channels": 4, "batch_size": 4}
    hp |= {"lr": 0.01, "checkpoint_every": 1, "model": model, "inputs": ["image[-0.5,2.5]"]}
    train_run(hp, train_h5, val_h5, tmp_path / "run", device="cpu")
    index = json.loads((tmp_path / "run/checkpoints/index.json").read_text())
    net, meta = load_checkpoint(
        tmp_path / "run/checkpoints" / index["checkpoints"][-1]["file"], "cpu"
    )
    assert meta["in_channels"] == 1 and meta["inputs"]["names"] == ["image[-0.5,2.5]"]
    inner = net.net if isinstance(net, VolumeSlices) else net
    assert isinstance(inner, InputLayer)
    with h5py.File(val_h5, "r") as h5:
        packed = h5["images"][()]
    assert predict_labels(net, packed, "cpu").shape == packed.shape[:3]

    def logits(images: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return net(torch.from_numpy(np.moveaxis(images, -1, 1).copy()))

    other = packed.copy()
    other[..., 1] = np.random.default_rng(9).normal(size=packed.shape[:-1])
    assert torch.equal(logits(other), logits(packed))  # the unselected channel is unseen
    other[..., 0] += 0.5
    assert not torch.equal(logits(other), logits(packed))
