"""ImageNet starts of the classifiers (`train.pretrained: imagenet`), offline: the weights file
is read from torch's cache only; a grey stem gets the kernel summed over R, G and B; the head
is new; DenseNet's old key names are renamed (every classifier's layout maps, VGG16's on the
meta device); a run trains from the file (then `init_from` over it), its provenance.json and the
thesis's methods name it; a missing file is an error naming file, URL and folder, and nothing
touches the network; `pretrained` is a sweep dimension that segmentation refuses.

The files are made here, not downloaded: a seeded state dict of torchvision's architecture,
saved in a temporary TORCH_HOME. `segsweep.model.pretrained` checks that a file's sha256 begins
with the hex prefix its name carries (torch.hub's convention, also for files copied into the
cache by hand), and no locally made file hashes to torchvision's prefixes (resnet18-f37072fd.pth
is torchvision's file and no other). So the fixture names its file `<model>-<its own sha256
prefix>.pth` and points the model's ImageNet URL at that name (`imagenet_weights`, patched): the
same check then passes for the right reason. torchvision's real names are checked without the
patch, and a made file under torchvision's exact name is refused by the hash check.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
import torch
import torch.nn.functional as F
import yaml
from test_train import HP as UNET_HP
from test_train import write_toy_h5
from test_train_classify import HP, write_set
from torchvision import models

from segsweep.config_schema import complete, section
from segsweep.errors import ConfigError, InputError
from segsweep.model import pretrained, weights
from segsweep.model.classifiers import CLASSIFIERS, build_classifier
from segsweep.model.pretrained import ImagenetWeights, imagenet_state, state_differences
from segsweep.report.chapters import classification as chapters
from segsweep.sweep.grammar import expand_sweep
from segsweep.tasks import TASKS, stages
from segsweep.train import job
from segsweep.train.classify import train_classifier
from segsweep.train.loop import train_run

torch.set_num_threads(1)

GREY = {"model": "resnet18", "dropout": 0.0}


def _network(*args: object, **kwargs: object) -> None:
    pytest.fail("network access attempted")


@pytest.fixture(autouse=True)
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty TORCH_HOME, with every way torch.hub and urllib reach the network failing the
    test."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    for module, name in (
        (torch.hub, "load_state_dict_from_url"),
        (torch.hub, "download_url_to_file"),
        (urllib.request, "urlopen"),
    ):
        monkeypatch.setattr(module, name, _network)
    return home


def old_densenet_key(key: str) -> str:
    """A DenseNet key as torchvision's files spell it: `denselayer1.norm1.weight` →
    `denselayer1.norm.1.weight`."""
    return re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", key)


def imagenet_file(
    name: str,
    monkeypatch: pytest.MonkeyPatch,
    key: Callable[[str], str] = str,
    counters: bool = True,
) -> tuple[dict[str, torch.Tensor], str]:
    """Save a seeded 1000-class state dict of torchvision's `name` in torch's cache, its keys
    spelled by `key`, without batch-norm counters unless `counters` (torchvision's older files
    have none), named after its sha256 (see the module docstring); returns it (keys as the
    architecture spells them) and the file name."""
    torch.manual_seed(7)
    state = getattr(models, name)(weights=None).state_dict()
    for k, value in state.items():
        if k.endswith(("running_mean", "bias")):
            state[k] = 0.1 * torch.randn_like(value)
        elif k.endswith("running_var"):
            state[k] = 0.5 + torch.rand_like(value)
    saved = {key(k): v for k, v in state.items() if counters or "num_batches" not in k}
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    data = buffer.getvalue()
    file = f"{name}-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    folder = pretrained.cache_folder()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / file).write_bytes(data)
    url = f"https://download.pytorch.org/models/{file}"
    monkeypatch.setattr(pretrained, "imagenet_weights", lambda n: ImagenetWeights(f"{n} V1", url))
    return state, file


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def test_torchvisions_own_files_are_named_from_its_weights_enum() -> None:
    source = pretrained.imagenet_weights("resnet18")
    assert source.weights == "ResNet18_Weights.IMAGENET1K_V1"
    assert source.url == "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    assert source.file == "resnet18-f37072fd.pth"
    assert pretrained.imagenet_weights("densenet121").file == "densenet121-a639ec97.pth"
    with pytest.raises(ConfigError, match="train.model"):
        pretrained.imagenet_weights("unet2d")


def test_a_grey_resnet_starts_from_imagenet_with_a_summed_stem_and_a_new_head(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    saved, file = imagenet_file("resnet18", monkeypatch, counters=False)
    torch.manual_seed(0)
    model = build_classifier(GREY, 1, 2, pretrained="imagenet")
    got = model.state_dict()
    assert "initialised 100/122 tensors from ImageNet weights" in capsys.readouterr().out
    assert torch.equal(got["conv1.weight"], saved["conv1.weight"].sum(dim=1, keepdim=True))
    body = [k for k in saved if not k.startswith(("conv1.", "fc.")) and "num_batches" not in k]
    assert len(body) == 99 and all(torch.equal(got[k], saved[k]) for k in body)
    assert any(k.startswith("layer4.") and k.endswith("running_var") for k in body)
    torch.manual_seed(0)
    scratch = build_classifier(GREY, 1, 2).state_dict()
    for k in ("fc.1.weight", "fc.1.bias"):  # the head: the seeded one of an untrained build
        assert torch.equal(got[k], scratch[k])
    assert not torch.equal(got["layer1.0.conv1.weight"], scratch["layer1.0.conv1.weight"])


def test_the_stem_rule_matches_grey_replicated_to_rgb_for_any_channel_count() -> None:
    torch.manual_seed(0)
    kernel, grey = torch.randn(4, 3, 3, 3), torch.randn(1, 1, 8, 8)
    rgb = F.conv2d(grey.repeat(1, 3, 1, 1), kernel)
    for channels in (1, 2, 5):
        adapted = pretrained.stem_kernel(kernel, channels)
        assert adapted.shape == (4, channels, 3, 3)
        same = F.conv2d(grey.repeat(1, channels, 1, 1), adapted)
        torch.testing.assert_close(same, rgb)
    assert pretrained.stem_kernel(kernel, 3) is kernel  # three channels: R, G, B as they are


def test_densenet_files_with_old_layer_names_load_renamed_as_torchvision_renames_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    saved, file = imagenet_file("densenet121", monkeypatch, key=old_densenet_key, counters=False)
    raw = torch.load(pretrained.cache_folder() / file, weights_only=True)
    assert "features.denseblock1.denselayer1.norm.1.weight" in raw
    model = build_classifier({"model": "densenet121", "dropout": 0.0}, 1, 3, "imagenet")
    got = model.state_dict()
    stem = saved["features.conv0.weight"].sum(dim=1, keepdim=True)
    assert torch.equal(got["features.conv0.weight"], stem)
    body = [k for k in saved if not k.startswith(("features.conv0.", "classifier."))]
    assert all(torch.equal(got[k], saved[k]) for k in body)
    assert got["classifier.1.weight"].shape == (3, 1024)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_every_classifiers_imagenet_layout_maps_onto_it_but_the_head(name: str) -> None:
    """Shapes only, on the meta device: VGG16's 0.5 GB of weights are never made."""
    with torch.device("meta"):
        layout = getattr(models, name)(weights=None).state_dict()
        own = build_classifier({"model": name, "dropout": 0.0}, 1, 2).state_dict()
    if name == "densenet121":  # as torchvision's file: old names, no batch-norm counters
        layout = {old_densenet_key(k): v for k, v in layout.items() if "num_b" not in k}
    mapped = imagenet_state(name, layout, 1)
    head = {k: v for k, v in own.items() if k not in mapped and "num_b" not in k}
    assert state_differences(own, {**mapped, **head}) == ""
    assert [k.rsplit(".", 1)[1] for k in head] == ["weight", "bias"]
    if name == "vgg16":  # its 4096-wide layers are ImageNet's, only the last layer is new
        assert "classifier.0.weight" in mapped and "classifier.6.weight" in head
    assert state_differences(own, mapped).startswith("2 missing")


def test_the_fabricated_vgg_state_keeps_its_stem_bias_and_drops_its_head_only() -> None:
    torch.manual_seed(0)
    state = {
        "features.0.weight": torch.randn(4, 3, 3, 3),
        "features.0.bias": torch.randn(4),
        "classifier.0.weight": torch.randn(8, 16),
        "classifier.6.weight": torch.randn(1000, 8),
        "classifier.6.bias": torch.randn(1000),
    }
    mapped = imagenet_state("vgg16", state, 2)
    assert set(mapped) == {"features.0.weight", "features.0.bias", "classifier.0.weight"}
    expected = state["features.0.weight"].sum(dim=1, keepdim=True).repeat(1, 2, 1, 1) / 2
    assert torch.equal(mapped["features.0.weight"], expected)
    assert mapped["features.0.bias"] is state["features.0.bias"]


def test_a_job_trains_from_imagenet_with_frozen_blocks_and_records_its_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved, file = imagenet_file("resnet18", monkeypatch, counters=False)
    sets = (
        write_set(tmp_path / "train.h5", [f"p{i:02d}" for i in range(4)], seed=1),
        write_set(tmp_path / "val.h5", ["v1", "v2"], seed=2),
    )
    out = tmp_path / "runs" / "imagenet"
    hp = {**HP, "epochs": 1, "pretrained": "imagenet", "freeze_blocks": 2}
    argv = ["--hp-json", json.dumps(hp), "--train", str(sets[0]), "--val", str(sets[1])]
    stages.train([*argv, "--out", str(out), "--threads", "1", "--device", "cpu"])
    record = json.loads((out / "provenance.json").read_text())
    assert record["status"] == "ok"
    url = f"https://download.pytorch.org/models/{file}"
    start = {"from": "imagenet", "weights": "resnet18 V1", "file": file, "url": url}
    assert record["starting_weights"] == [start]
    assert yaml.safe_load((out / "params.yaml").read_text())["pretrained"] == "imagenet"
    after = _weights(out / "checkpoints/epoch-0001.pt")
    assert torch.equal(after["conv1.weight"], saved["conv1.weight"].sum(dim=1, keepdim=True))
    frozen = [k for k in saved if k.split(".")[0] in ("bn1", "layer1") and "num_b" not in k]
    assert frozen and all(torch.equal(after[k], saved[k]) for k in frozen)  # BN stats too
    trained = [k for k in saved if k.startswith("layer2.") and k.endswith("conv1.weight")]
    assert trained and all(not torch.equal(after[k], saved[k]) for k in trained)


def test_init_from_loads_over_the_imagenet_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    sets = (
        write_set(tmp_path / "train.h5", [f"p{i:02d}" for i in range(4)], seed=1),
        write_set(tmp_path / "val.h5", ["v1", "v2"], seed=2),
    )
    train_classifier({**HP, "epochs": 1}, *sets, tmp_path / "source", device="cpu")
    source = tmp_path / "source/checkpoints/epoch-0001.pt"
    saved, _ = imagenet_file("resnet18", monkeypatch)
    hp = {**HP, "epochs": 1, "pretrained": "imagenet", "init_from": "source", "freeze_blocks": 2}
    capsys.readouterr()
    train_classifier(hp, *sets, tmp_path / "target", device="cpu", init_checkpoint=source)
    said = capsys.readouterr().out
    assert said.index("from ImageNet weights") < said.index(f"tensors from {source}")
    before, after = _weights(source), _weights(tmp_path / "target/checkpoints/epoch-0001.pt")
    frozen = [k for k in before if k.split(".")[0] in ("conv1", "bn1", "layer1")]
    assert all(torch.equal(before[k], after[k]) for k in frozen)  # the source's, not ImageNet's
    assert not torch.equal(after["layer1.0.conv1.weight"], saved["layer1.0.conv1.weight"])


def test_a_missing_file_is_named_with_its_url_and_folder_and_nothing_is_downloaded(
    torch_home: Path,
) -> None:
    with pytest.raises(InputError) as raised:
        build_classifier(GREY, 1, 2, pretrained="imagenet")
    said, folder = str(raised.value), torch_home / "hub" / "checkpoints"
    assert str(folder / "resnet18-f37072fd.pth") in said
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in said
    assert f"not in torch's cache {folder}" in said and "weights resnet18" in said
    assert not folder.exists()


def test_a_file_whose_sha256_differs_from_its_name_is_refused() -> None:
    folder = pretrained.cache_folder()
    folder.mkdir(parents=True)
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, folder / "resnet18-f37072fd.pth")
    with pytest.raises(InputError, match=r"sha256 begins [0-9a-f]{8}, not f37072fd"):
        build_classifier(GREY, 1, 2, pretrained="imagenet")


def test_the_weights_command_names_file_url_and_folder_when_offline(
    torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(InputError) as raised:
        weights.main(["resnet18"])
    said = str(raised.value)
    assert said.startswith("https://download.pytorch.org/models/resnet18-f37072fd.pth: ")
    assert f"resnet18-f37072fd.pth into {torch_home / 'hub' / 'checkpoints'}" in said


def test_pretrained_is_a_sweep_dimension_of_classification_and_refused_for_segmentation(
    tmp_path: Path,
) -> None:
    schema = section("train")
    validator = jsonschema.validators.validator_for(schema)(schema)
    base = complete({"model": "resnet18"}, "train")
    assert base["pretrained"] == "none"
    sweep = {"grids": {"start": {"pretrained": ["none", "imagenet"]}}}
    runs = expand_sweep(sweep, base, validator.validate)
    assert [(r.run_id, r.params["pretrained"]) for r in runs] == [
        ("default", "none"),
        ("pretrained-imagenet", "imagenet"),
    ]
    TASKS["classification"].check({"train": base}, runs)
    with pytest.raises(jsonschema.ValidationError):
        expand_sweep({"grids": {"g": {"pretrained": ["imagenet21k"]}}}, base, validator.validate)
    unet = complete({"model": "unet2d"}, "train")
    with pytest.raises(ConfigError, match=r"'train.pretrained'.*none under task: segmentation"):
        TASKS["segmentation"].check({"train": {**unet, "pretrained": "imagenet"}})
    with pytest.raises(ConfigError, match="run pretrained-imagenet: pretrained"):
        TASKS["segmentation"].check({"train": unet}, expand_sweep(sweep, unet))
    train, val = write_toy_h5(tmp_path / "train.h5"), write_toy_h5(tmp_path / "val.h5", seed=1)
    with pytest.raises(ConfigError, match="train.pretrained"):  # a U-Net run by hand
        train_run({**UNET_HP, "pretrained": "imagenet"}, train, val, tmp_path / "u", "cpu")


def test_the_methods_say_where_each_level_starts_from_with_the_recorded_file(
    tmp_path: Path,
) -> None:
    base = complete({"model": "resnet18"}, "train")
    runs = expand_sweep({"grids": {"start": {"pretrained": ["none", "imagenet"]}}}, base)
    record = {"starting_weights": [{"from": "imagenet", "file": "resnet18-f37072fd.pth"}]}
    (tmp_path / "provenance.json").write_text(json.dumps(record))
    provenance = {"pretrained-imagenet": tmp_path / "provenance.json"}
    files = chapters.imagenet_files(runs, provenance)
    assert files == {"resnet18": "resnet18-f37072fd.pth"}
    assert chapters.imagenet_files(runs, {}) == {"resnet18": None}  # before the runs
    assert chapters.imagenet_files(runs[:1], provenance) == {}
    weights = (
        "torchvision's ImageNet weights (IMAGENET1K_V1: resnet18-f37072fd.pth), their first "
        "convolution's kernel summed over R, G and B for the grey images (fed as packed, "
        "z-scored per image, without ImageNet's mean and standard deviation) and the final "
        "layer new"
    )
    fixed = {**base, "pretrained": "imagenet", "freeze_blocks": 2}
    said = chapters.initialisation_sentence(fixed, {}, [], files)
    assert said == f"Every run starts from {weights}, with the first 2 blocks frozen."
    levels = {"pretrained": ["none", "imagenet"]}
    chained = {**base, "init_from": "pretrain"}
    assert chapters.initialisation_sentence(chained, levels, ["pretrain"], files) == (
        f"The starting weights are swept over none, imagenet: random weights at none, {weights} "
        "at imagenet; then the selected checkpoint of run pretrain of this sweep is loaded over "
        "them (its weights whose name and shape match), every layer trained."
    )
    scratch = chapters.initialisation_sentence(base, {}, [], {})
    assert scratch == "Every run starts from random weights (trained from scratch)."
    network = chapters.network_sentence(base, levels, ["normal", "abnormal"], 32, True)
    assert "built without downloaded weights" not in network
    assert "built without downloaded weights" in chapters.network_sentence(
        base, {}, ["normal", "abnormal"], 32
    )


def test_provenance_lists_the_starts_in_the_order_they_are_loaded() -> None:
    hp = {"model": "resnet18", "pretrained": "imagenet", "init_from": "source"}
    checkpoint = Path("runs/source/checkpoints/epoch-0003.pt")
    url = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    assert job.starting_weights(hp, checkpoint) == [
        {
            "from": "imagenet",
            "weights": "ResNet18_Weights.IMAGENET1K_V1",
            "file": "resnet18-f37072fd.pth",
            "url": url,
        },
        {"from": "init_from", "init_from": "source", "checkpoint": str(checkpoint)},
    ]
    assert job.starting_weights({"model": "resnet18", "pretrained": "none"}, None) == []
