"""Augmentation: each transform against its definition (a NumPy reference for the moves) on tiny
batches, the label forms training and the 3D volumes use, probabilities and determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from segsweep.config_schema import defaults
from segsweep.model.augment import Augmenter

DEFAULTS = defaults("train")

OFF = {
    "aug_p": 1.0,
    "aug_flip": False,
    "aug_shift": 0.0,
    "aug_rotate": 0.0,
    "aug_brightness": 0.0,
    "aug_contrast": 0.0,
    "aug_gamma": 0.0,
}


def batch(n=3, channels=1, planes=None, size=(8, 8)):
    """images [n, C, H, W] and labels [n, H, W] (or [n, K, H, W]) with classes 0…3."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(n, channels, *size, generator=generator)
    shape = (n, *size) if planes is None else (n, planes, *size)
    return images, torch.randint(0, 4, shape, generator=generator)


def run(hp, seed=0, **shapes):
    images, labels = batch(**shapes)
    return Augmenter({**OFF, **hp}, torch.Generator().manual_seed(seed))(images, labels)


def fixed(**values):
    """An Augmenter whose per-slice draws are the given values (0 for the others)."""
    augment = Augmenter(dict(OFF), torch.Generator().manual_seed(0))
    augment._draw = lambda n, scales: {name: values.get(name, [0.0] * n) for name in scales}
    return augment


def moved(array, flip, dy, dx):
    """NumPy reference: left-right flip, then shift by (dy, dx) whole pixels, zeros coming in."""
    array = array[..., ::-1] if flip else array
    out = np.zeros_like(array)
    h, w = array.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = array[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


MOVES = [(True, 0, 0), (False, 2, -3), (True, -1, 4), (False, 0, 0), (False, -5, 0)]


def test_everything_off_is_the_identity():
    images, labels = batch()
    out_images, out_labels = run({})
    assert torch.equal(out_images, images) and torch.equal(out_labels, labels)


def test_probability_zero_is_the_identity_with_every_transform_on():
    images, labels = batch(n=16, size=(16, 16))
    augment = Augmenter({**DEFAULTS, "aug_p": 0.0}, torch.Generator().manual_seed(0))
    out_images, out_labels = augment(images.clone(), labels.clone())
    assert torch.equal(out_images, images) and torch.equal(out_labels, labels)


def test_each_transform_applies_with_probability_p():
    augment = Augmenter({**DEFAULTS, "aug_p": 0.3}, torch.Generator().manual_seed(0))
    draws = augment._draw(4000, {"a": 1.0, "b": 2.0, "off": 0.0})
    for name in ("a", "b"):
        assert 0.27 < np.mean(np.asarray(draws[name]) != 0) < 0.33
    assert np.abs(draws["b"]).max() <= 2.0 and not any(draws["off"])


@pytest.mark.parametrize("channels", [1, 2])
def test_flips_and_shifts_are_exact_moves_of_images_and_labels(channels):
    images, labels = batch(n=len(MOVES), channels=channels, size=(6, 9))
    augment = fixed(
        flip=[float(flip) for flip, _, _ in MOVES],
        shift_y=[float(dy) for _, dy, _ in MOVES],
        shift_x=[float(dx) for _, _, dx in MOVES],
    )
    out_images, out_labels = augment(images.clone(), labels.clone())
    for i, (flip, dy, dx) in enumerate(MOVES):
        assert np.array_equal(out_images[i].numpy(), moved(images[i].numpy(), flip, dy, dx))
        assert np.array_equal(out_labels[i].numpy(), moved(labels[i].numpy(), flip, dy, dx))


def test_random_flips_and_shifts_are_whole_pixel_moves():
    images, labels = batch()
    out_images, out_labels = run({"aug_flip": True})
    assert torch.equal(out_images, images.flip(-1)) and torch.equal(out_labels, labels.flip(-1))
    out_images, out_labels = run({"aug_shift": 0.25})
    for i in range(3):
        found = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if np.array_equal(out_labels[i].numpy(), moved(labels[i].numpy(), False, dy, dx))
            and np.array_equal(out_images[i].numpy(), moved(images[i].numpy(), False, dy, dx))
        ]
        assert found


def test_label_planes_move_with_their_slice():
    """[B, K, H, W] labels (3D volumes as planes): every plane gets its slice's transform."""
    images, labels = batch(n=8, planes=3, size=(12, 12))
    hp = {**DEFAULTS, "aug_p": 0.7, "aug_rotate": 30.0, "aug_shift": 0.2}
    out_images, out_labels = Augmenter(hp, torch.Generator().manual_seed(5))(
        images.clone(), labels.clone()
    )
    for k in range(3):
        one_images, one_labels = Augmenter(hp, torch.Generator().manual_seed(5))(
            images.clone(), labels[:, k].clone()
        )
        assert torch.equal(out_labels[:, k], one_labels) and torch.equal(out_images, one_images)
    assert not torch.equal(out_labels, labels)


def test_rotation_keeps_labels_valid_and_is_seeded():
    images, labels = batch()
    one = run({"aug_rotate": 30.0}, seed=3)
    two = run({"aug_rotate": 30.0}, seed=3)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])
    assert one[1].dtype == torch.int64 and set(one[1].unique().tolist()) <= {0, 1, 2, 3}
    assert not torch.equal(one[1], labels)


def test_a_quarter_turn_is_rot90_and_labels_stay_nearest():
    images, labels = batch()
    out_images, out_labels = fixed(rotate=[math.pi / 2] * 3)(images.clone(), labels.clone())
    turns = [k for k in (1, -1) if torch.equal(out_labels, labels.rot90(k, (-2, -1)))]
    assert turns
    assert torch.allclose(out_images, images.rot90(turns[0], (-2, -1)), atol=1e-5)


def test_the_rotation_path_moves_like_the_exact_moves():
    """A slice that also drew a (tiny) rotation is resampled on the grid; its flip and shift
    must match those of the exact path."""
    images, labels = batch(n=len(MOVES), size=(6, 9))
    augment = fixed(
        flip=[float(flip) for flip, _, _ in MOVES],
        shift_y=[float(dy) for _, dy, _ in MOVES],
        shift_x=[float(dx) for _, _, dx in MOVES],
        rotate=[1e-6] * len(MOVES),
    )
    out_images, out_labels = augment(images.clone(), labels.clone())
    for i, (flip, dy, dx) in enumerate(MOVES):
        reference = moved(images[i].numpy(), flip, dy, dx)
        assert np.allclose(out_images[i].numpy(), reference, atol=1e-4)
        assert np.array_equal(out_labels[i].numpy(), moved(labels[i].numpy(), flip, dy, dx))


SPLITS = [
    ((12, 1, 20, 20), (12, 20, 20)),
    ((12, 2, 20, 20), (12, 3, 20, 20)),
    ((12, 2, 3, 20, 20), (12, 3, 20, 20)),  # volumes [N, C, Z, H, W], labels [N, Z, H, W]
]


@pytest.mark.parametrize(("image_shape", "label_shape"), SPLITS)
def test_a_batch_straight_from_the_split_equals_augmenting_the_gathered_batch(
    image_shape, label_shape
):
    """`batch` fuses the gather into the transforms (each output slice written once, from the
    split); it must give bit for bit what augmenting a gathered copy gives, batch after batch
    of one generator, every transform on; volumes against their slices-as-channels form."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(image_shape, generator=generator)
    labels = torch.randint(0, 4, label_shape, generator=generator)
    split = images.clone(), labels.clone()
    hp = {**DEFAULTS, "aug_p": 0.6, "aug_shift": 0.3, "aug_rotate": 30.0}
    fused, gathered = (Augmenter(hp, torch.Generator().manual_seed(1)) for _ in range(2))
    for index in (torch.tensor([5, 0, 11, 5, 3, 7, 2, 9]), torch.tensor([1, 4]), None):
        rows = torch.arange(12) if index is None else index
        x, t = fused.batch(images, labels, index)
        expected_x, expected_t = gathered(images[rows].flatten(1, -3), labels[rows])
        assert torch.equal(x, expected_x.view(x.shape)) and torch.equal(t, expected_t)
    assert torch.equal(images, split[0]) and torch.equal(labels, split[1])


def test_same_generator_state_gives_the_same_batches():
    images, labels = batch(n=16, size=(24, 24))
    first = Augmenter(DEFAULTS, torch.Generator().manual_seed(7))
    first(images.clone(), labels.clone())
    state = first.generator.get_state()
    expected = first(images.clone(), labels.clone())
    resumed = Augmenter(DEFAULTS, torch.Generator())
    resumed.generator.set_state(state)
    again = resumed(images.clone(), labels.clone())
    assert torch.equal(expected[0], again[0]) and torch.equal(expected[1], again[1])
    other = Augmenter(DEFAULTS, torch.Generator().manual_seed(8))(images.clone(), labels.clone())
    assert not torch.equal(other[0], expected[0])


def test_channels_last_images_give_the_same_batch():
    images, labels = batch(n=8, channels=2, size=(16, 16))
    hp = {**DEFAULTS, "aug_p": 0.8, "aug_shift": 0.2}
    plain = Augmenter(hp, torch.Generator().manual_seed(2))(images.clone(), labels.clone())
    strided = images.clone().to(memory_format=torch.channels_last)
    other = Augmenter(hp, torch.Generator().manual_seed(2))(strided, labels.clone())
    assert torch.allclose(plain[0], other[0], atol=1e-6) and torch.equal(plain[1], other[1])


def test_bad_shapes_are_rejected():
    images, labels = batch()
    augment = Augmenter(DEFAULTS, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="labels"):
        augment(images, labels[:, :4])
    with pytest.raises(ValueError, match="labels"):
        augment(images, labels.float())
    with pytest.raises(ValueError, match="images"):
        augment(images[0], labels)


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


def test_gamma_matches_the_power_in_double_precision():
    """|x|^γ·sign(x) against float64, over magnitudes 1e-12…30 of both signs: relative
    error < 1e-4 above 1e-3 and absolute < 1e-6 below (the log1p form's documented bound)."""
    magnitudes = torch.logspace(-12, 1.5, 1024)
    values = torch.cat([magnitudes, -magnitudes, torch.zeros(16)]).view(1, 1, 48, 43)
    images = values.expand(4, 1, 48, 43).clone()
    labels = torch.zeros(4, 48, 43, dtype=torch.int64)
    log_gamma = [-0.2, -0.05, 0.1, 0.2]
    out, _ = fixed(gamma=log_gamma)(images.clone(), labels)
    for value, result, g in zip(images.double(), out.double(), log_gamma, strict=True):
        reference = value.abs() ** math.exp(g) * value.sign()
        error, large = (result - reference).abs(), value.abs() > 1e-3
        assert (error[large] / reference[large].abs()).max() < 1e-4
        assert error[~large].max() < 1e-6
