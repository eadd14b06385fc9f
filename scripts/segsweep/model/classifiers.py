"""The image classifiers of the classification task: torchvision's ResNet-18/34/50, DenseNet-121
and VGG-16, built untrained (`weights=None`: nothing is ever downloaded), with the first
convolution taking `in_channels` (1: grey radiographs) and the head replaced by
Dropout(`dropout`) + Linear(→ K classes). Logits [B, K] from images [B, C, H, W]. With
`pretrained="imagenet"` all but the head then start from torchvision's ImageNet weights, read
from torch's cache (`segsweep.model.pretrained`).

Smallest input side (px): 16 for the ResNets, 32 for DenseNet-121 and VGG-16 (five halvings;
VGG's adaptive pooling then stretches the 1 × 1 map to its 7 × 7 classifier input). VGG-16 keeps
torchvision's classifier (two 4096-wide layers, its dropouts at `dropout`): about 134 M
parameters, 0.5 GB of float32 weights, against 11–25 M for the ResNets and 7 M for DenseNet.

Blocks (`classifier_blocks`, for `freeze_blocks` of a transfer run), in input order: ResNet
[stem (conv1, bn1), layer1, layer2, layer3, layer4]; DenseNet [stem (conv0, norm0, pool0),
denseblock1 + transition1, … 3, denseblock4 + norm5]; VGG the five convolution stages, each up
to its max-pool.

torchvision is imported only when a classifier is built or inspected (it takes seconds to load),
so the segmentation stages that import this module for `CLASSIFIERS` do not pay for it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from segsweep.errors import ConfigError

CLASSIFIERS = ("resnet18", "resnet34", "resnet50", "densenet121", "vgg16")
MIN_SIZE = {"resnet18": 16, "resnet34": 16, "resnet50": 16, "densenet121": 32, "vgg16": 32}


def _conv_like(conv: nn.Conv2d, in_channels: int, mode: str) -> nn.Conv2d:
    """`conv` with `in_channels` inputs, initialised as torchvision initialises it."""
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        bias=conv.bias is not None,
    )
    nn.init.kaiming_normal_(new.weight, mode=mode, nonlinearity="relu")
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    return new


def _head(dropout: float, in_features: int, n_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, n_classes))


def build_classifier(
    hp: dict[str, Any], in_channels: int, n_classes: int, pretrained: str = "none"
) -> nn.Module:
    """The classifier `hp["model"]` (see the module docstring), with `hp["dropout"]` before its
    final linear layer: untrained, or with `pretrained="imagenet"` from ImageNet but its head
    (a run's start; a checkpoint's model is rebuilt untrained, its weights then loaded)."""
    from torchvision import models

    from segsweep.model.pretrained import PRETRAINED, load_imagenet

    name, dropout = hp["model"], float(hp["dropout"])
    if name not in CLASSIFIERS:
        raise ConfigError("train.model", name, " | ".join(CLASSIFIERS))
    if pretrained not in PRETRAINED:
        raise ConfigError("train.pretrained", pretrained, " | ".join(PRETRAINED))
    if name.startswith("resnet"):
        model = getattr(models, name)(weights=None)
        model.conv1 = _conv_like(model.conv1, in_channels, "fan_out")
        model.fc = _head(dropout, model.fc.in_features, n_classes)
    elif name == "densenet121":
        model = models.densenet121(weights=None)
        model.features.conv0 = _conv_like(model.features.conv0, in_channels, "fan_in")
        model.classifier = _head(dropout, model.classifier.in_features, n_classes)
    else:
        model = models.vgg16(weights=None, dropout=dropout)
        model.features[0] = _conv_like(model.features[0], in_channels, "fan_out")
        # torchvision's classifier ends in Dropout(dropout), Linear: only the Linear changes
        model.classifier[6] = nn.Linear(model.classifier[6].in_features, n_classes)
    if pretrained == "imagenet":
        load_imagenet(model, name, in_channels)
    return model


def _blocks(model: nn.Module) -> list[nn.Module]:
    """Every block of a classifier, in input order."""
    from torchvision import models

    if isinstance(model, models.ResNet):
        stem = nn.Sequential(model.conv1, model.bn1)
        return [stem, model.layer1, model.layer2, model.layer3, model.layer4]
    if isinstance(model, models.DenseNet):
        f = model.features
        return [
            nn.Sequential(f.conv0, f.norm0, f.pool0),
            nn.Sequential(f.denseblock1, f.transition1),
            nn.Sequential(f.denseblock2, f.transition2),
            nn.Sequential(f.denseblock3, f.transition3),
            nn.Sequential(f.denseblock4, f.norm5),
        ]
    if isinstance(model, models.VGG):
        stages, stage = [], []
        for layer in model.features:
            stage.append(layer)
            if isinstance(layer, nn.MaxPool2d):
                stages.append(nn.Sequential(*stage))
                stage = []
        return stages
    raise TypeError(f"not a classifier of {', '.join(CLASSIFIERS)}: {type(model).__name__}")


def classifier_blocks(model: nn.Module, k: int) -> list[nn.Module]:
    """The first `k` blocks of a classifier in input order (views on its own modules); more
    than it has is a ConfigError of `train.freeze_blocks`."""
    blocks = _blocks(model)
    if not 0 <= k <= len(blocks):
        raise ConfigError("train.freeze_blocks", k, f"0 … {len(blocks)} for this classifier")
    return blocks[:k]


def resize_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """Images [B, C, H, W] resized to `size` × `size` (bilinear, antialiased when shrinking);
    returned as they are when already that size."""
    if x.shape[-2:] == (size, size):
        return x
    shrink = size < min(x.shape[-2:])
    return F.interpolate(
        x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink
    )
