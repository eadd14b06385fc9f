"""torchvision's ImageNet weights as a classifier's start (`train.pretrained: imagenet`), read
from torch's cache only: nothing is downloaded while a run trains.

Source. A classifier's IMAGENET1K_V1 member of torchvision's Weights enum
(`ResNet18_Weights.IMAGENET1K_V1`, …, `VGG16_Weights.IMAGENET1K_V1`): the original ImageNet
weights, which all five classifiers have and which no torchvision release redefines (`DEFAULT`
is V2 for ResNet-50 and may move on), so a run starts from the same file whatever the version.
The file is named as torch.hub names it, after the last part of the enum's URL (e.g.
resnet18-f37072fd.pth), and looked for in torch's cache, `torch.hub.get_dir()/checkpoints`
($TORCH_HOME/hub/checkpoints; ~/.cache/torch/hub/checkpoints by default). A missing file is an
InputError naming the file, its URL and the folder. `python -m segsweep weights <model> …`
(`main`) puts it there where there is network, through torch.hub.load_state_dict_from_url as
torchvision's own loading does: the one download of the package.

Verification. The file's sha256 must begin with the hex prefix its name carries (torch.hub's
HASH_REGEX, the check of load_state_dict_from_url(check_hash=True)). torch.hub checks only when
it downloads; here the file is checked every time it is read, since a file copied into the cache
by hand (from a machine with network) was never checked. It is then read with
torch.load(weights_only=True), never unpickled, and loaded strictly: every tensor of the
classifier but its head must be in it, with its shape.

Mapping (`imagenet_state`). DenseNet's files name the parts of a dense layer the old way
(`denselayer1.norm.1.weight`); they are renamed as torchvision's DenseNet loader renames them
(`denselayer1.norm1.weight`). The ImageNet head (ResNet `fc`, DenseNet `classifier`, VGG
`classifier.6`) is dropped: the run's head for its K classes stays new (seeded random).
Everything else is loaded, batch-norm statistics and VGG's two 4096-wide layers included. The
first convolution's kernel W [O, 3, k, k] becomes, for C input channels: W itself for C = 3
(R, G, B); else the kernel summed over R, G and B, divided by C and repeated C times, so that an
image whose C channels all hold one grey image g gets the response the ImageNet kernel gives to g
replicated to RGB (C = 1: the summed kernel).

Normalisation. Images get no ImageNet mean/std step: packed radiographs are z-scored per image
(`segsweep.preprocess.images`), so each input channel has mean 0 and standard deviation 1, the
scale ImageNet's per-channel normalisation gives its images. Runs from ImageNet and from scratch
therefore see the same inputs, and packages and predictions prepare images the same way.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from segsweep.errors import ConfigError, InputError

PRETRAINED = ("none", "imagenet")
ENUM_MEMBER = "IMAGENET1K_V1"
# by family (the classifier's name without its depth): the ImageNet head, the first convolution
HEADS = {"resnet": "fc.", "densenet": "classifier.", "vgg": "classifier.6."}
STEMS = {"resnet": "conv1.weight", "densenet": "features.conv0.weight", "vgg": "features.0.weight"}
# torchvision's DenseNet loader: old `denselayerN.norm.1.weight` → `denselayerN.norm1.weight`
DENSE_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _family(name: str) -> str:
    """resnet, densenet or vgg: the classifier's name without its depth."""
    return name.rstrip("0123456789")


@dataclass(frozen=True)
class ImagenetWeights:
    """torchvision's ImageNet weights of one classifier: the enum member's name and its URL."""

    weights: str  # e.g. "ResNet18_Weights.IMAGENET1K_V1"
    url: str

    @property
    def file(self) -> str:
        """The file name torch.hub caches the URL under (the last part of its path)."""
        return os.path.basename(urlparse(self.url).path)


def imagenet_weights(name: str) -> ImagenetWeights:
    """The ImageNet weights of classifier `name` (see the module docstring)."""
    from torchvision import models

    try:
        member = getattr(models.get_model_weights(name), ENUM_MEMBER)
    except (ValueError, AttributeError):
        raise ConfigError("train.model", name, "a classifier with ImageNet weights") from None
    return ImagenetWeights(f"{type(member).__name__}.{ENUM_MEMBER}", member.url)


def cache_folder() -> Path:
    """torch's cache of downloaded weights: torch.hub.get_dir()/checkpoints (honours TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def check_hash(path: Path) -> None:
    """InputError unless the sha256 of `path` begins with the hex prefix its name carries
    (torch.hub's HASH_REGEX; a name without one is not checked, as torch.hub does not)."""
    match = torch.hub.HASH_REGEX.search(path.name)
    prefix = match.group(1) if match else ""
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    if not digest.startswith(prefix):
        raise InputError(
            None,
            str(path),
            f"its sha256 begins {digest[: len(prefix)]}, not {prefix} as its name says: an "
            "incomplete or altered download; delete it and download it again",
        )


def stem_kernel(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """The RGB first-convolution kernel [O, 3, k, k] for `in_channels` inputs: itself for 3,
    else summed over R, G and B, divided by C and repeated C times (the module docstring)."""
    if in_channels == 3:
        return weight
    summed = weight.sum(dim=1, keepdim=True) / in_channels
    return summed.repeat(1, in_channels, 1, 1)


def imagenet_state(
    name: str, state: Mapping[str, torch.Tensor], in_channels: int
) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet state dict of classifier `name` as the classifier of
    `in_channels` inputs takes it: keys renamed (DenseNet), the head dropped and the first
    convolution adapted (see the module docstring)."""
    family = _family(name)
    mapped = {}
    for key, value in state.items():
        key = DENSE_KEY.sub(r"\1\2", key) if family == "densenet" else key
        if not key.startswith(HEADS[family]):
            mapped[key] = value
    stem = STEMS[family]
    if stem in mapped:
        mapped[stem] = stem_kernel(mapped[stem], in_channels)
    return mapped


def state_differences(own: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> str:
    """What keeps `given` from loading into a model of state `own`, as text ("" when nothing:
    a batch norm's num_batches_tracked, absent from torchvision's older files, may be missing)."""
    missing = [k for k in own if k not in given and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in given if k not in own]
    resized = [k for k in given if k in own and given[k].shape != own[k].shape]
    found = [
        f"{len(keys)} {what} (first {keys[0]})"
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("resized", resized))
        if keys
    ]
    return ", ".join(found)


def load_imagenet(model: nn.Module, name: str, in_channels: int) -> None:
    """Load torchvision's ImageNet weights of classifier `name` from torch's cache into `model`
    (built by `segsweep.model.classifiers.build_classifier` for `in_channels`), its head kept.
    InputError when the file is missing, fails its hash or does not fit."""
    source = imagenet_weights(name)
    path = cache_folder() / source.file
    if not path.is_file():
        raise InputError(
            None,
            str(path),
            f"torchvision's ImageNet weights of {name} (train.pretrained: imagenet, "
            f"{source.weights}) are not in torch's cache {path.parent}: download {source.file} "
            f"from {source.url} into that folder on a machine with network (python -m segsweep "
            f"weights {name}), or set TORCH_HOME to a cache that has it; training never "
            "downloads",
        )
    check_hash(path)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    state = imagenet_state(name, raw, in_channels)
    own = model.state_dict()
    head = {k: v for k, v in own.items() if k.startswith(HEADS[_family(name)])}
    problem = state_differences(own, {**state, **head})
    if problem:
        raise InputError(None, str(path), f"not torchvision's {name} weights: {problem}")
    model.load_state_dict({**state, **head})
    print(f"initialised {len(state)}/{len(own)} tensors from ImageNet weights {path}", flush=True)


def download(name: str) -> Path:
    """Fetch the ImageNet weights of classifier `name` into torch's cache (nothing when they
    are there) with torch.hub.load_state_dict_from_url(check_hash=True), as torchvision's own
    loading does; InputError naming the file, URL and folder when that fails."""
    source = imagenet_weights(name)
    folder = cache_folder()
    try:
        torch.hub.load_state_dict_from_url(
            source.url, str(folder), map_location="cpu", check_hash=True, weights_only=True
        )
    except (OSError, RuntimeError) as error:  # no network (URLError), a hash that differs
        raise InputError(
            None,
            source.url,
            f"could not download {source.file} into {folder} ({error}); download it there on "
            "a machine with network, or set TORCH_HOME to a cache that has it",
        ) from None
    return folder / source.file
