"""A model package's fold networks as ONNX (segsweep.deploy.onnx_export): every kind of network
segsweep trains exports at opset 18 into one self-contained file whose onnxruntime logits match
PyTorch's on a batch of another size than the export example; the README snippet runs a
package's folds without segsweep and gives the ensemble's labels."""

from __future__ import annotations

import json
import re
import zipfile

import numpy as np
import onnx
import pytest
import torch
from onnx_runtime import run_onnx
from torch import nn

from segsweep.config_schema import defaults
from segsweep.deploy.onnx_export import (
    OPSET,
    export_network,
    readme_snippet,
)
from segsweep.model.checkpoints import Ensemble, InputLayer, VolumeSlices
from segsweep.model.classifiers import build_classifier
from segsweep.model.inputs import resolve
from segsweep.model.unet import PerClassModel, UNet, build_model

torch.set_num_threads(1)
SIDE = 32
TOLERANCE = 1e-4


def _hp(**changes) -> dict:
    return defaults("train") | {"base_channels": 4} | changes


def _trained_like(model: nn.Module, seed: int = 0) -> nn.Module:
    """`model` in eval mode with batch-norm statistics away from their initial identity."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator))
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return model.eval()


def _input_layer(net: nn.Module) -> InputLayer:
    """`net` behind the input map of a run fed a CT window and the PET channel, as
    `load_checkpoint` puts it (packed channels ct, pet, zscore-normalised)."""
    stats = {"method": "zscore", "mean": [40.0, 2.0], "std": [300.0, 1.5]}
    stats |= {"channel_names": ["ct", "pet"]}
    return InputLayer(net, resolve(["pet", "ct[-160,240]"], stats).to_dict())


def _unet2d():
    return build_model(_hp(), 2, 3), (2, 2, SIDE, SIDE), 5


def _dual():
    model = build_model(_hp(loss="dual"), 2, 3)
    assert isinstance(model, UNet) and len(model.heads) == 2
    return model, (2, 2, SIDE, SIDE), 5


def _per_class():
    model = build_model(_hp(labels="per_class"), 2, 3)
    assert isinstance(model, PerClassModel)
    return model, (2, 2, SIDE, SIDE), 5


def _inputs():
    return _input_layer(build_model(_hp(), 2, 3)), (1, 2, SIDE, SIDE), 3


def _unet3d():
    # two volumes of 4 slices exported, three checked
    return VolumeSlices(build_model(_hp(model="unet3d"), 2, 3), 4), (8, 2, SIDE, SIDE), 12


def _unet3d_inputs():
    # as load_checkpoint wraps a 3D run fed windows; one volume exported, one checked
    net = VolumeSlices(_input_layer(build_model(_hp(model="unet3d", depth=2), 2, 3)), 4)
    return net, (4, 2, SIDE, SIDE), 4


def _classifier():
    return build_classifier({"model": "resnet18", "dropout": 0.3}, 1, 3), (1, 1, SIDE, SIDE), 3


CASES = {
    "unet2d": _unet2d,
    "dual": _dual,
    "per_class": _per_class,
    "inputs": _inputs,
    "unet3d": _unet3d,
    "unet3d_inputs": _unet3d_inputs,
    "classifier": _classifier,
}


@pytest.mark.parametrize("case", CASES)
def test_onnx_logits_match_pytorch_on_another_batch_size(case, tmp_path):
    torch.manual_seed(0)
    model, example_shape, checked = CASES[case]()
    model = _trained_like(model)
    record = export_network(model, torch.randn(example_shape), tmp_path / "fold-0.onnx")

    path = tmp_path / "fold-0.onnx"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fold-0.onnx"]  # no .data beside it
    shape = [None, *example_shape[1:]]
    assert record == {
        "file": "fold-0.onnx",
        "opset": OPSET,
        "input": "image",
        "output": "logits",
        "input_shape": shape,
        "dynamic_axis": 0,
        **({"volume_slices": model.slices} if isinstance(model, VolumeSlices) else {}),
    }
    json.dumps(record)  # goes into the manifest as it is
    proto = onnx.load(path)  # self-contained: loads without any external data
    onnx.checker.check_model(proto)
    assert OPSET == 18
    assert {o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")} == {OPSET}
    assert [i.name for i in proto.graph.input] == ["image"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].HasField("dim_value")  # the dynamic axis
    assert [d.dim_value for d in dims[1:]] == list(example_shape[1:])

    image = torch.randn(checked, *example_shape[1:]) * 2
    with torch.no_grad():
        expected = model(image).numpy()
    logits = run_onnx(path, image.numpy())
    assert logits.shape == expected.shape
    assert expected.shape[0] == checked and expected.shape[1] == 3
    assert np.abs(logits - expected).max() < TOLERANCE


def test_export_leaves_the_callers_model_as_it_was(tmp_path):
    model = build_model(_hp(depth=2), 1, 2).train()
    export_network(model, torch.randn(2, 1, 16, 16), tmp_path / "net.onnx")
    assert model.training and all(m.training for m in model.modules())


def test_a_3d_example_must_be_whole_volumes(tmp_path):
    model = VolumeSlices(build_model(_hp(model="unet3d", depth=2), 1, 2), 4).eval()
    with pytest.raises(ValueError, match="whole volumes of 4 slices"):
        export_network(model, torch.randn(6, 1, 16, 16), tmp_path / "net.onnx")
    assert not list(tmp_path.iterdir())


def test_the_readme_snippet_runs_a_package_and_gives_the_ensembles_labels(tmp_path, monkeypatch):
    snippet = readme_snippet()
    assert len(snippet.splitlines()) <= 25 and snippet.startswith("## ")
    for field in ("manifest.json", "normalisation", "label_values", "networks", "shift", "scale"):
        assert field in snippet
    assert f"opset {OPSET}" in snippet and "onnx/fold-0.onnx" in snippet

    # a package of two folds: zscore channels, labels 0 (background), 3 and 7
    torch.manual_seed(0)
    # (1x1 convolutions: an untrained U-Net tends to predict one class everywhere)
    folds = [nn.Conv2d(2, 3, 1).eval() for _ in range(2)]
    package = tmp_path / "build"
    networks = [
        export_network(fold, torch.randn(2, 2, 16, 16), package / "onnx" / f"fold-{i}.onnx")
        for i, fold in enumerate(folds)
    ]
    shift, scale = [40.0, 2.0], [300.0, 1.5]
    manifest = {
        "normalisation": {"method": "zscore", "shift": shift, "scale": scale},
        "label_values": [0, 3, 7],
        "networks": [
            {"onnx": {**network, "file": f"onnx/fold-{i}.onnx"}}
            for i, network in enumerate(networks)
        ],
    }
    (package / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.chdir(tmp_path)
    with zipfile.ZipFile("model.zip", "w") as archive:
        for file in package.rglob("*"):
            archive.write(file, file.relative_to(package))

    rng = np.random.default_rng(0)
    image = rng.normal(size=(3, 2, 16, 16)) * np.reshape(scale, (1, 2, 1, 1))
    image += np.reshape(shift, (1, 2, 1, 1))
    code = re.search(r"```python\n(.*?)```", snippet, re.DOTALL)[1]
    scope = {"image": image}
    exec(code, scope)

    normalised = (image - np.reshape(shift, (1, 2, 1, 1))) / np.reshape(scale, (1, 2, 1, 1))
    with torch.no_grad():
        ensemble = Ensemble(folds).eval()(torch.from_numpy(normalised.astype(np.float32)))
    expected = np.asarray([0, 3, 7])[ensemble.argmax(dim=1).numpy()]
    assert scope["labels"].shape == (3, 16, 16)
    assert (scope["labels"] == expected).mean() > 0.999  # ties aside
    assert set(np.unique(expected)) == {0, 3, 7}  # every class predicted somewhere
