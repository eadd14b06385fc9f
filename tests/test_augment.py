"""Augmentation: each transform against its definition on tiny batches."""

from __future__ import annotations

import math

import torch

from segsweep.augment import Augmenter

OFF = {
    "aug_p": 1.0,
    "aug_flip": False,
    "aug_shift": 0.0,
    "aug_rotate": 0.0,
    "aug_brightness": 0.0,
    "aug_contrast": 0.0,
    "aug_gamma": 0.0,
}


def batch():
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(3, 1, 8, 8, generator=generator)
    target = torch.randint(0, 4, (3, 8, 8), generator=generator)
    return images, target


def run(hp, seed=0):
    images, target = batch()
    return Augmenter({**OFF, **hp}, torch.Generator().manual_seed(seed))(images, target)


def test_everything_off_is_the_identity():
    images, target = batch()
    out_images, out_target = run({})
    assert torch.equal(out_images, images) and torch.equal(out_target, target)


def test_flip_mirrors_images_and_labels():
    images, target = batch()
    out_images, out_target = run({"aug_flip": True})
    assert torch.allclose(out_images, images.flip(-1), atol=1e-6)
    assert torch.equal(out_target, target.flip(-1))


def test_shifts_move_by_whole_pixels_with_zeros_coming_in():
    images, target = batch()
    out_images, out_target = run({"aug_shift": 0.25})
    for i in range(3):
        found = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(out_target[i], _shift(target[i], dy, dx))
        ]
        assert len(found) >= 1
        dy, dx = found[0]
        assert torch.allclose(out_images[i, 0], _shift(images[i, 0], dy, dx), atol=1e-5)


def _shift(x, dy, dx):
    out = torch.zeros_like(x)
    h, w = x.shape
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def test_rotation_keeps_labels_valid_and_is_seeded():
    images, target = batch()
    one = run({"aug_rotate": 30.0}, seed=3)
    two = run({"aug_rotate": 30.0}, seed=3)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])
    assert set(one[1].unique().tolist()) <= {0, 1, 2, 3}
    assert not torch.equal(one[1], target)
    # a 90° rotation of a square grid is exact: compare with rot90
    ninety = Augmenter({**OFF, "aug_rotate": 90.0}, torch.Generator().manual_seed(0))
    ninety._draw = lambda n, scale, enabled: torch.full(
        (n,), scale if scale == math.pi / 2 else 0.0
    )
    out_images, out_target = ninety(*batch())
    rotated = [torch.equal(out_target, target.rot90(k, (-2, -1))) for k in (1, -1)]
    assert any(rotated)


def test_intensity_transforms():
    images, _ = batch()
    shifted, _ = run({"aug_brightness": 0.5})
    offset = (shifted - images).flatten(1)
    assert torch.allclose(offset, offset[:, :1].expand_as(offset), atol=1e-6)
    assert (offset[:, 0].abs() <= 0.5).all()
    scaled, _ = run({"aug_contrast": 0.5})
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    factor = ((scaled - mean) / (images - mean)).flatten(1)
    assert torch.allclose(factor, factor[:, :1].expand_as(factor), atol=1e-4)
    assert torch.allclose(scaled.mean(dim=(1, 2, 3)), images.mean(dim=(1, 2, 3)), atol=1e-5)
    powered, _ = run({"aug_gamma": 0.5})
    assert torch.equal(powered.sign(), images.sign())
    gamma = (powered.abs().log() / images.abs().log()).flatten(1)
    assert torch.allclose(gamma, gamma[:, :1].expand_as(gamma), atol=1e-3)
    assert ((gamma[:, 0].log().abs()) <= 0.5 + 1e-4).all()
