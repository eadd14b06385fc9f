"""The classifiers of the classification task: every architecture builds untrained without
touching the torch cache, maps grey images to K logits, lists its blocks in input order and
freezes exactly those; class probabilities of one model and of a fold ensemble."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from segsweep.errors import ConfigError, InputError
from segsweep.evaluate.probabilities import ensemble_probabilities, predict_probabilities
from segsweep.model.checkpoints import load_checkpoint, save_checkpoint
from segsweep.model.classifiers import (
    CLASSIFIERS,
    build_classifier,
    classifier_blocks,
    resize_images,
)

torch.set_num_threads(1)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_every_classifier_builds_untrained_and_maps_grey_images_to_logits(
    name, tmp_path, monkeypatch
):
    cache = tmp_path / "torch_home"
    cache.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(cache))
    torch.manual_seed(0)
    model = build_classifier({"model": name, "dropout": 0.3}, 1, 3).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 1, 32, 32))
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    assert list(cache.iterdir()) == []  # weights=None: nothing downloaded nor cached
    assert len(classifier_blocks(model, 5)) == 5
    with pytest.raises(ConfigError, match="0 … 5"):
        classifier_blocks(model, 6)
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert dropouts and all(m.p == 0.3 for m in dropouts)


def test_an_unknown_classifier_is_a_config_error():
    with pytest.raises(ConfigError, match="train.model"):
        build_classifier({"model": "unet2d", "dropout": 0.0}, 1, 2)


def test_resnet_blocks_in_input_order_and_freezing_exactly_them():
    model = build_classifier({"model": "resnet18", "dropout": 0.0}, 1, 2)
    blocks = classifier_blocks(model, 5)
    firsts = [next(block.parameters()) for block in blocks]
    layers = [model.layer1, model.layer2, model.layer3, model.layer4]
    assert firsts == [model.conv1.weight, *(layer[0].conv1.weight for layer in layers)]
    assert {id(m) for m in blocks[0]} == {id(model.conv1), id(model.bn1)}
    for block in classifier_blocks(model, 2):
        block.requires_grad_(False)
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    expected = {
        name
        for name, _ in model.named_parameters()
        if name.split(".")[0] in ("conv1", "bn1", "layer1")
    }
    assert frozen == expected
    with pytest.raises(ConfigError, match="train.freeze_blocks"):
        classifier_blocks(model, 6)


def test_densenet_and_vgg_blocks():
    densenet = build_classifier({"model": "densenet121", "dropout": 0.0}, 1, 2)
    blocks = classifier_blocks(densenet, 5)
    f = densenet.features
    assert list(blocks[0]) == [f.conv0, f.norm0, f.pool0]
    assert list(blocks[1]) == [f.denseblock1, f.transition1]
    assert list(blocks[4]) == [f.denseblock4, f.norm5]
    vgg = build_classifier({"model": "vgg16", "dropout": 0.0}, 1, 2)
    stages = classifier_blocks(vgg, 5)
    assert [sum(isinstance(m, nn.Conv2d) for m in s) for s in stages] == [2, 2, 3, 3, 3]
    assert all(isinstance(s[-1], nn.MaxPool2d) for s in stages)
    assert stages[0][0] is vgg.features[0] and vgg.features[0].in_channels == 1


def test_resize_images_keeps_a_matching_size_and_resizes_others():
    x = torch.randn(2, 1, 32, 32)
    assert resize_images(x, 32) is x
    assert resize_images(x, 48).shape == (2, 1, 48, 48)
    assert resize_images(x, 16).shape == (2, 1, 16, 16)
    flat = torch.full((1, 1, 32, 32), 0.7)
    assert torch.allclose(resize_images(flat, 16), flat[..., :16, :16])  # antialiased, exact


def _checkpoint(path, seed, classes=("normal", "abnormal"), input_size=32):
    hp = {"model": "resnet18", "dropout": 0.0}
    torch.manual_seed(seed)
    model = build_classifier(hp, 1, len(classes))
    meta = {
        "hp": hp,
        "classes": list(classes),
        "label_mode": "classification",
        "in_channels": 1,
        "out_channels": len(classes),
        "task": "classification",
        "size": 32,
        "input_size": input_size,
    }
    save_checkpoint(path, model, meta, 1, 1)
    return path


def test_probabilities_sum_to_one_and_an_ensemble_is_their_mean(tmp_path):
    images = np.random.default_rng(0).normal(size=(5, 32, 32)).astype(np.float32)
    paths = [_checkpoint(tmp_path / f"f{i}.pt", i) for i in range(2)]
    model, meta = load_checkpoint(paths[0], "cpu", build_classifier)
    assert meta["task"] == "classification" and not model.training
    one = predict_probabilities(model, images, meta, "cpu", batch_size=2)
    assert one.shape == (5, 2) and one.dtype == np.float64
    np.testing.assert_allclose(one.sum(axis=1), 1.0, atol=1e-12)
    second, second_meta = load_checkpoint(paths[1], "cpu", build_classifier)
    two = predict_probabilities(second, images, second_meta, "cpu")
    ensemble = ensemble_probabilities(paths, images, ["normal", "abnormal"], "cpu")
    np.testing.assert_allclose(ensemble, (one + two) / 2)
    assert predict_probabilities(model, images[:0], meta, "cpu").shape == (0, 2)
    resized, resized_meta = load_checkpoint(
        _checkpoint(tmp_path / "r.pt", 0, input_size=48), "cpu", build_classifier
    )
    assert predict_probabilities(resized, images, resized_meta, "cpu").shape == (5, 2)
    other = _checkpoint(tmp_path / "k3.pt", 0, classes=("a", "b", "c"))
    with pytest.raises(InputError, match="k3.pt: predicts"):
        ensemble_probabilities([paths[0], other], images, ["normal", "abnormal"], "cpu")
