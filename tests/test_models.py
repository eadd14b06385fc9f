"""U-Net shapes, widths, blocks, dropout placements, heads, per-class models and the factory,
in 2D and 3D (z never pooled)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segsweep.config_schema import complete
from segsweep.model.unet import PerClassModel, UNet, build_model, encoder_blocks


@pytest.mark.parametrize(("depth", "size"), [(1, 5), (2, 16), (3, 16), (4, 24), (5, 32)])
def test_output_has_input_size_and_one_channel_per_class(depth, size):
    model = UNet(2, 4, depth=depth, base_channels=4)
    out = model(torch.zeros(3, 2, size, size + 2 ** (depth - 1)))
    assert out.shape == (3, 4, size, size + 2 ** (depth - 1))


def test_widths_grow_by_growth_per_level():
    model = UNet(1, 2, depth=3, base_channels=6, growth=1.5, batch_norm=False)
    widths = [block.out_channels for block in model.encoder]
    assert widths == [6, 9, 14]  # round(6 * 1.5**2) = round(13.5) = 14 (banker's rounding)
    assert [up.out_channels for up in model.upsample] == [9, 6]
    assert model.head.in_channels == 6


def test_batch_norm_is_optional():
    def count(model):
        return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())

    assert count(UNet(1, 2, depth=3, batch_norm=True)) == 2 * 3 + 2 * 2
    assert count(UNet(1, 2, depth=3, batch_norm=False)) == 0


def test_dropout_sits_at_the_end_of_the_contracting_path():
    model = UNet(1, 2, depth=3, base_channels=4, dropout=0.5)
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert dropouts == [model.dropout] and model.dropout.p == 0.5
    seen = []
    model.dropout.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape))
    model.eval()(torch.zeros(1, 1, 16, 16))
    assert seen == [(1, 16, 4, 4)]  # the deepest level: 4 * 2**2 channels at 16 / 2**2
    assert UNet(1, 2, dropout=0.0).dropout is None


def test_size_not_divisible_is_a_clear_error():
    with pytest.raises(ValueError, match="divisible by 4"):
        UNet(1, 2, depth=3)(torch.zeros(1, 1, 16, 18))


def test_build_model_reads_hyperparameters():
    hp = {"model": "unet2d", "depth": 2, "base_channels": 5, "batch_norm": False, "dropout": 0.25}
    model = build_model(complete(hp, "train"), in_channels=3, out_channels=4)
    assert isinstance(model, UNet) and model.depth == 2
    first_conv = model.encoder[0].first[0]
    assert first_conv.in_channels == 3 and first_conv.out_channels == 5
    assert model.head.out_channels == 4 and model.dropout.p == 0.25
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model 'unet4d'.*unet2d, unet3d"):
        build_model(complete({"model": "unet4d"}, "train"), 1, 2)


def test_dropout_between_contracting_convolutions_and_on_the_expanding_side():
    inner = UNet(1, 2, depth=3, base_channels=4, dropout=0.2, dropout_placement="contracting")
    assert inner.dropout is None and inner.expanding_dropout is None
    assert [b.inner_dropout.p for b in inner.encoder] == [0.2, 0.2, 0.2]
    assert all(isinstance(b.inner_dropout, nn.Identity) for b in inner.decoder)
    outer = UNet(1, 2, depth=3, base_channels=4, dropout=0.2, dropout_placement="expanding")
    assert outer.dropout is None and outer.expanding_dropout.p == 0.2
    assert sum(isinstance(m, nn.Dropout) for m in outer.modules()) == 1
    for model in (inner, outer):  # dropout acts in training only
        model.train()
        x = torch.ones(2, 1, 16, 16)
        torch.manual_seed(0)
        assert not torch.equal(model(x), model(x))
        model.eval()
        assert torch.equal(model(x), model(x))
    with pytest.raises(ValueError, match="unknown dropout placement 'middle'"):
        UNet(1, 2, dropout=0.1, dropout_placement="middle")


def test_residual_blocks_add_the_projected_input():
    model = UNet(1, 2, depth=2, base_channels=4, block="residual", batch_norm=False)
    block = model.encoder[0]
    assert isinstance(block.shortcut, nn.Conv2d) and block.shortcut.kernel_size == (1, 1)
    assert isinstance(model.encoder[1].shortcut, nn.Conv2d)  # 4 -> 8 channels
    x = torch.randn(1, 1, 8, 8)
    expected = torch.relu(block.second(block.first(x)) + block.shortcut(x))
    assert torch.allclose(block(x), expected)
    plain = UNet(1, 2, depth=2, base_channels=4, block="plain")
    assert plain.encoder[0].shortcut is None
    same = UNet(4, 2, depth=1, base_channels=4, block="residual").encoder[0]
    assert isinstance(same.shortcut, nn.Identity)


def test_dual_head_combines_heads_as_configured():
    torch.manual_seed(0)
    model = UNet(1, 3, depth=2, base_channels=4, heads=2).eval()
    x = torch.randn(2, 1, 8, 8)
    first, second = model.forward_heads(x)
    mean = (first.softmax(1) + second.softmax(1)) / 2
    assert torch.allclose(model(x).exp(), mean, atol=1e-6)
    model.dual_inference = "second"
    assert torch.equal(model(x), second)
    hp = {"loss": "dual", "dual_losses": ["cross_entropy", "dice"], "dual_inference": "first"}
    built = build_model(complete(hp, "train"), 1, 3)
    assert len(built.heads) == 2 and built.dual_inference == "first"


def test_per_class_model_has_one_binary_network_per_class():
    torch.manual_seed(0)
    model = build_model(
        complete({"labels": "per_class", "depth": 2, "base_channels": 4}, "train"), 1, 4
    )
    assert isinstance(model, PerClassModel) and len(model.members) == 3
    assert all(m.head.out_channels == 2 for m in model.members)
    x = torch.randn(2, 1, 8, 8)
    model.eval()
    probs = [m(x).softmax(1)[:, 1] for m in model.members]
    combined = model(x)
    assert combined.shape == (2, 4, 8, 8)
    stacked = torch.stack(probs, 1)
    best = stacked.argmax(1) + 1
    expected = torch.where(stacked.max(1).values > 0.5, best, torch.zeros_like(best))
    assert torch.equal(combined.argmax(1), expected)
    assert len(encoder_blocks(model, 1)) == 3
    assert encoder_blocks(model, 1)[1] is model.members[1].encoder[0]


@pytest.mark.parametrize(("depth", "z"), [(1, 1), (2, 3), (3, 5), (4, 2)])
def test_3d_output_keeps_the_volume_shape_and_z_through_every_level(depth, z):
    model = UNet(2, 4, depth=depth, base_channels=4, dims=3).eval()
    seen = []
    for block in [*model.encoder, *model.decoder]:
        block.register_forward_hook(lambda mod, inp, out: seen.append(out.shape[2:]))
    size = 2 ** (depth - 1)
    out = model(torch.zeros(2, 2, z, 3 * size, 5 * size))
    assert out.shape == (2, 4, z, 3 * size, 5 * size)
    levels = [*range(depth), *reversed(range(depth - 1))]
    assert seen == [(z, 3 * size // 2**lv, 5 * size // 2**lv) for lv in levels]


def test_3d_layers_are_3x3x3_and_pool_in_plane_only():
    model = UNet(1, 2, depth=3, base_channels=4, dims=3)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv3d)]
    assert {c.kernel_size for c in convs} == {(3, 3, 3), (1, 1, 1)}  # 1x1x1: the head
    assert not any(isinstance(m, nn.Conv2d | nn.BatchNorm2d) for m in model.modules())
    assert model.pool.kernel_size == (1, 2, 2) and model.pool.stride == (1, 2, 2)
    for up in model.upsample:
        assert isinstance(up, nn.ConvTranspose3d)
        assert up.kernel_size == (1, 2, 2) and up.stride == (1, 2, 2)
    with pytest.raises(ValueError, match=r"3D U-Net needs input \[B, C, Z, H, W\]"):
        model(torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match="divisible by 4"):
        model(torch.zeros(1, 1, 3, 16, 18))


HP_3D = complete({"model": "unet3d", "depth": 2, "base_channels": 4}, "train")
OPTIONS_3D = {
    "growth": (
        {"depth": 3, "base_channels": 6, "growth": 1.5},
        lambda m: [b.out_channels for b in m.encoder] == [6, 9, 14],
    ),
    "no batch norm": (
        {"batch_norm": False},
        lambda m: not any(isinstance(x, nn.BatchNorm3d) for x in m.modules()),
    ),
    "batch norm": (
        {"batch_norm": True},
        lambda m: sum(isinstance(x, nn.BatchNorm3d) for x in m.modules()) == 2 * 2 + 2,
    ),
    "residual": ({"block": "residual"}, lambda m: m.encoder[0].shortcut.kernel_size == (1, 1, 1)),
    "bottleneck dropout": (
        {"dropout": 0.3},
        lambda m: isinstance(m.dropout, nn.Dropout) and m.dropout.p == 0.3,
    ),
    "contracting dropout": (
        {"dropout": 0.3, "dropout_placement": "contracting"},
        lambda m: [b.inner_dropout.p for b in m.encoder] == [0.3, 0.3],
    ),
    "expanding dropout": (
        {"dropout": 0.3, "dropout_placement": "expanding"},
        lambda m: m.expanding_dropout.p == 0.3,
    ),
    "dual head": (
        {"loss": "dual", "dual_inference": "second"},
        lambda m: len(m.heads) == 2 and m.dual_inference == "second",
    ),
    "per class": (
        {"labels": "per_class"},
        lambda m: len(m.members) == 2 and all(u.dims == 3 for u in m.members),
    ),
}


@pytest.mark.parametrize("option", OPTIONS_3D)
def test_3d_model_takes_every_hyperparameter_of_the_2d_one(option):
    hp, check = OPTIONS_3D[option]
    torch.manual_seed(0)
    model = build_model({**HP_3D, **hp}, in_channels=2, out_channels=3)
    assert check(model)
    assert all(u.dims == 3 for u in getattr(model, "members", [model]))
    model.eval()
    x = torch.randn(2, 2, 3, 8, 8)
    assert model(x).shape == (2, 3, 3, 8, 8)
    if hp.get("loss") == "dual":
        assert [h.shape for h in model.forward_heads(x)] == [(2, 3, 3, 8, 8)] * 2
