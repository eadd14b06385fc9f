"""2D U-Net of the knee thesis, built from a run's hyperparameters.

Shapes: input [B, C, H, W] with H and W divisible by 2**(depth-1) (one max-pool between levels);
output logits [B, K, H, W] (K = background + foreground classes, softmax over K in the loss).
Dropout sits at the end of the contracting path, after the deepest block: the placement the knee
thesis kept (§4.4.4) after dropout between contracting convolutions or on the expanding side
trained slower and scored lower.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

MODELS = ("unet2d",)


def conv_block(in_channels: int, out_channels: int, batch_norm: bool) -> nn.Sequential:
    """Two 3x3 convolutions, each followed by (batch norm and) ReLU; same spatial size."""
    layers: list[nn.Module] = []
    for c_in in (in_channels, out_channels):
        # a bias before batch norm is cancelled by its mean subtraction, so leave it out
        layers.append(nn.Conv2d(c_in, out_channels, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class UNet2D(nn.Module):
    """Classic U-Net: `depth` levels, widths base_channels * growth**level, transposed-conv
    upsampling, skip concatenation and a 1x1 output convolution."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        depth: int = 3,
        base_channels: int = 8,
        growth: float = 2,
        batch_norm: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"U-Net depth must be >= 1, got {depth}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {dropout}")
        widths = [max(1, round(base_channels * growth**level)) for level in range(depth)]
        self.depth = depth
        self.encoder = nn.ModuleList(
            conv_block(c_in, c_out, batch_norm)
            for c_in, c_out in zip([in_channels, *widths[:-1]], widths, strict=True)
        )
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.upsample = nn.ModuleList(
            nn.ConvTranspose2d(widths[level + 1], widths[level], 2, stride=2)
            for level in reversed(range(depth - 1))
        )
        self.decoder = nn.ModuleList(
            conv_block(2 * widths[level], widths[level], batch_norm)
            for level in reversed(range(depth - 1))
        )
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = 2 ** (self.depth - 1)
        if x.shape[-2] % factor or x.shape[-1] % factor:
            raise ValueError(
                f"U-Net of depth {self.depth} needs height and width divisible by {factor}, "
                f"got {tuple(x.shape[-2:])}"
            )
        skips = []
        for level, block in enumerate(self.encoder):
            x = block(x)
            if level < self.depth - 1:
                skips.append(x)
                x = self.pool(x)
        x = self.dropout(x)
        for upsample, block, skip in zip(self.upsample, self.decoder, reversed(skips), strict=True):
            x = block(torch.cat([skip, upsample(x)], dim=1))
        return self.head(x)


def build_model(hp: dict[str, Any], in_channels: int, out_channels: int) -> nn.Module:
    """The network a run's hyperparameters describe (model, depth, base_channels, batch_norm,
    dropout)."""
    name = hp.get("model", "unet2d")
    if name != "unet2d":
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    return UNet2D(
        in_channels,
        out_channels,
        depth=int(hp.get("depth", 3)),
        base_channels=int(hp.get("base_channels", 8)),
        batch_norm=bool(hp.get("batch_norm", True)),
        dropout=float(hp.get("dropout", 0.0)),
    )
