"""U-Net shapes, widths, dropout placement and the model factory."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segsweep.models import UNet2D, build_model


@pytest.mark.parametrize(("depth", "size"), [(1, 5), (2, 16), (3, 16), (4, 24), (5, 32)])
def test_output_has_input_size_and_one_channel_per_class(depth, size):
    model = UNet2D(2, 4, depth=depth, base_channels=4)
    out = model(torch.zeros(3, 2, size, size + 2 ** (depth - 1)))
    assert out.shape == (3, 4, size, size + 2 ** (depth - 1))


def test_widths_grow_by_growth_per_level():
    model = UNet2D(1, 2, depth=3, base_channels=6, growth=1.5, batch_norm=False)
    widths = [block[0].out_channels for block in model.encoder]
    assert widths == [6, 9, 14]  # round(6 * 1.5**2) = round(13.5) = 14 (banker's rounding)
    assert [up.out_channels for up in model.upsample] == [9, 6]
    assert model.head.in_channels == 6


def test_batch_norm_is_optional():
    def count(model):
        return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())

    assert count(UNet2D(1, 2, depth=3, batch_norm=True)) == 2 * 3 + 2 * 2
    assert count(UNet2D(1, 2, depth=3, batch_norm=False)) == 0


def test_dropout_sits_at_the_end_of_the_contracting_path():
    model = UNet2D(1, 2, depth=3, base_channels=4, dropout=0.5)
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert dropouts == [model.dropout] and model.dropout.p == 0.5
    seen = []
    model.dropout.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape))
    model.eval()(torch.zeros(1, 1, 16, 16))
    assert seen == [(1, 16, 4, 4)]  # the deepest level: 4 * 2**2 channels at 16 / 2**2
    assert isinstance(UNet2D(1, 2, dropout=0.0).dropout, nn.Identity)


def test_size_not_divisible_is_a_clear_error():
    with pytest.raises(ValueError, match="divisible by 4"):
        UNet2D(1, 2, depth=3)(torch.zeros(1, 1, 16, 18))


def test_build_model_reads_hyperparameters():
    hp = {"model": "unet2d", "depth": 2, "base_channels": 5, "batch_norm": False, "dropout": 0.25}
    model = build_model(hp, in_channels=3, out_channels=4)
    assert isinstance(model, UNet2D) and model.depth == 2
    assert model.encoder[0][0].in_channels == 3 and model.encoder[0][0].out_channels == 5
    assert model.head.out_channels == 4 and model.dropout.p == 0.25
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model 'unet3d'.*unet2d"):
        build_model({"model": "unet3d"}, 1, 2)
