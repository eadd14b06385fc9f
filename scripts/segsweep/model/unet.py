"""U-Nets of the theses, built from a run's hyperparameters.

Shapes: `unet2d` takes slices [B, C, H, W], `unet3d` volumes [B, C, Z, H, W], with H and W
divisible by 2**(depth-1) (one in-plane max-pool between levels); the output logits have the
input's spatial shape, [B, K, H, W] or [B, K, Z, H, W] (K = background + foreground classes,
softmax over K in the loss). The 3D U-Net is the same network with 3x3x3 convolutions, but pools
and upsamples in-plane only (kernel and stride (1, 2, 2)): the z axis is short (24 slices in the
knee thesis) and keeps its size through every level, so any Z works.

Hyperparameters: `depth`, `base_channels`, `growth` (width factor per level),
`batch_norm`, `block` (`plain`: two 3x3 (3x3x3) convolutions; `residual`: the same with an
identity — or 1x1-projected — shortcut added before the last ReLU, as the PET/CT thesis's ResNet
layers), `dropout` and `dropout_placement`:
- `bottleneck`: after the deepest block, the end of the contracting path — the placement the knee
  thesis kept (§4.4.4);
- `contracting`: between the two convolutions of every contracting block;
- `expanding`: after every block of the expanding side.
A dual-head model (`loss: dual`) has one 1x1 (1x1x1) output layer per loss; `forward_heads`
returns all of them, `forward` combines them as `dual_inference` says (`mean` of the softmax
probabilities, or the `first` / `second` head). A per-class model (`labels: per_class`) holds one
binary U-Net per class; see `PerClassModel`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

MODELS = {"unet2d": 2, "unet3d": 3}  # name → spatial dimensions
BLOCKS = ("plain", "residual")
PLACEMENTS = ("bottleneck", "contracting", "expanding")
DUAL_INFERENCE = ("mean", "first", "second")
CONV = {2: nn.Conv2d, 3: nn.Conv3d}
BATCH_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
MAX_POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
UP_CONV = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
IN_PLANE = {2: (2, 2), 3: (1, 2, 2)}  # kernel and stride that halve rows and columns only


def model_dims(hp: dict[str, Any]) -> int:
    """Spatial dimensions of a run's model (2: slices, 3: volumes); rejects an unknown model."""
    name = hp["model"]
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    return MODELS[name]


class ConvBlock(nn.Module):
    """Two 3x3 (`dims` 3: 3x3x3) convolutions, each followed by (batch norm and) ReLU; same
    spatial size. `residual` adds the block's input (projected by a 1x1 convolution when widths
    differ) before the last ReLU; `dropout` > 0 puts dropout between the two convolutions."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        batch_norm: bool,
        residual: bool = False,
        dropout: float = 0.0,
        dims: int = 2,
    ) -> None:
        super().__init__()

        def conv(c_in: int) -> list[nn.Module]:
            # a bias before batch norm is cancelled by its mean subtraction, so leave it out
            layers: list[nn.Module] = [
                CONV[dims](c_in, out_channels, 3, padding=1, bias=not batch_norm)
            ]
            return [*layers, BATCH_NORM[dims](out_channels)] if batch_norm else layers

        self.first = nn.Sequential(*conv(in_channels), nn.ReLU(inplace=True))
        self.inner_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.second = nn.Sequential(*conv(out_channels))
        self.shortcut: nn.Module | None = None
        if residual:
            self.shortcut = (
                nn.Identity()
                if in_channels == out_channels
                else CONV[dims](in_channels, out_channels, 1, bias=False)
            )
        self.relu = nn.ReLU(inplace=True)

    @property
    def out_channels(self) -> int:
        return self.first[0].out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.second(self.inner_dropout(self.first(x)))
        if self.shortcut is not None:
            y = y + self.shortcut(x)
        return self.relu(y)


class UNet(nn.Module):
    """Classic U-Net: `depth` levels, widths base_channels * growth**level, transposed-conv
    upsampling, skip concatenation and one 1x1 output convolution per head; `dims` 2 for
    slices, 3 for volumes (3x3x3 convolutions, pooling and upsampling in-plane only)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        depth: int = 3,
        base_channels: int = 8,
        growth: float = 2,
        batch_norm: bool = True,
        dropout: float = 0.0,
        dropout_placement: str = "bottleneck",
        block: str = "plain",
        heads: int = 1,
        dual_inference: str = "mean",
        dims: int = 2,
    ) -> None:
        super().__init__()
        if dims not in CONV:
            raise ValueError(f"U-Net dims must be 2 or 3, got {dims}")
        if depth < 1:
            raise ValueError(f"U-Net depth must be >= 1, got {depth}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {dropout}")
        for name, value, known in (
            ("dropout placement", dropout_placement, PLACEMENTS),
            ("block", block, BLOCKS),
            ("dual_inference", dual_inference, DUAL_INFERENCE),
        ):
            if value not in known:
                raise ValueError(f"unknown {name} {value!r}; known: {', '.join(known)}")
        widths = [max(1, round(base_channels * growth**level)) for level in range(depth)]
        residual = block == "residual"
        inner = dropout if dropout_placement == "contracting" else 0.0
        self.depth = depth
        self.dims = dims
        self.dual_inference = dual_inference
        self.encoder = nn.ModuleList(
            ConvBlock(c_in, c_out, batch_norm, residual, inner, dims)
            for c_in, c_out in zip([in_channels, *widths[:-1]], widths, strict=True)
        )
        self.pool = MAX_POOL[dims](IN_PLANE[dims])
        self.dropout = (
            nn.Dropout(dropout) if dropout > 0 and dropout_placement == "bottleneck" else None
        )
        self.upsample = nn.ModuleList(
            UP_CONV[dims](widths[level + 1], widths[level], IN_PLANE[dims], stride=IN_PLANE[dims])
            for level in reversed(range(depth - 1))
        )
        self.decoder = nn.ModuleList(
            ConvBlock(2 * widths[level], widths[level], batch_norm, residual, dims=dims)
            for level in reversed(range(depth - 1))
        )
        self.expanding_dropout = (
            nn.Dropout(dropout) if dropout > 0 and dropout_placement == "expanding" else None
        )
        self.heads = nn.ModuleList(CONV[dims](widths[0], out_channels, 1) for _ in range(heads))

    @property
    def head(self) -> nn.Module:
        return self.heads[0]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != self.dims + 2:
            layout = "[B, C, H, W]" if self.dims == 2 else "[B, C, Z, H, W]"
            raise ValueError(f"{self.dims}D U-Net needs input {layout}, got {tuple(x.shape)}")
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
        if self.dropout is not None:
            x = self.dropout(x)
        for upsample, block, skip in zip(self.upsample, self.decoder, reversed(skips), strict=True):
            x = block(torch.cat([skip, upsample(x)], dim=1))
            if self.expanding_dropout is not None:
                x = self.expanding_dropout(x)
        return x

    def forward_heads(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every output layer."""
        features = self.features(x)
        return [head(features) for head in self.heads]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        heads = self.forward_heads(x)
        if len(heads) == 1 or self.dual_inference == "first":
            return heads[0]
        if self.dual_inference == "second":
            return heads[1]
        # log of the mean probability: its argmax is the class the heads agree on most
        return torch.stack([torch.softmax(h, dim=1) for h in heads]).mean(0).log()


class PerClassModel(nn.Module):
    """One binary network per class (the knee thesis's one model per bone), trained side by side.

    `forward` combines them into logits over [background, class 1, ..., class K]: the log of
    [0.5, p_1, ..., p_K] with p_c member c's foreground probability, so the argmax is the most
    confident class among those predicted present (p_c > 0.5), else background.
    """

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = [torch.softmax(member(x), dim=1)[:, 1:2] for member in self.members]
        background = torch.full_like(probs[0], 0.5)
        return torch.cat([background, *probs], dim=1).log()


def encoder_blocks(model: nn.Module, k: int) -> list[nn.Module]:
    """The first `k` contracting blocks of a model (of every member of a per-class model)."""
    members = model.members if isinstance(model, PerClassModel) else [model]
    return [block for member in members for block in list(member.encoder)[:k]]


def build_model(hp: dict[str, Any], in_channels: int, out_channels: int) -> nn.Module:
    """The network a run's hyperparameters describe. For `labels: per_class`, `out_channels`
    is background + classes and the model holds one two-channel U-Net per class."""
    dims = model_dims(hp)

    def unet(k: int) -> UNet:
        return UNet(
            in_channels,
            k,
            depth=int(hp["depth"]),
            base_channels=int(hp["base_channels"]),
            growth=float(hp["growth"]),
            batch_norm=bool(hp["batch_norm"]),
            dropout=float(hp["dropout"]),
            dropout_placement=hp["dropout_placement"],
            block=hp["block"],
            heads=len(hp["dual_losses"]) if hp["loss"] == "dual" else 1,
            dual_inference=hp["dual_inference"],
            dims=dims,
        )

    if hp["labels"] == "per_class":
        return PerClassModel([unet(2) for _ in range(out_channels - 1)])
    return unet(out_channels)
