"""Losses against their formulas on small hand-built tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from segsweep.losses import LOSSES, cross_entropy, get_loss, soft_dice


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_uniform_logits_by_hand():
    logits = torch.zeros(1, 2, 1, 2)  # p = 0.5 everywhere
    target = torch.tensor([[[1, 0]]])
    assert cross_entropy(logits, target).item() == pytest.approx(math.log(2))
    # (2 * 0.5 + 1) / ((0.5 + 0.5) + 1 + 1) = 2/3
    assert soft_dice(logits, target).item() == pytest.approx(1 / 3)
    assert soft_dice(logits, target, eps=0.0).item() == pytest.approx(0.5)


def test_losses_match_formulas_over_the_batch():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 3, 3, 4))
    target = rng.integers(0, 3, size=(2, 3, 4))
    target[:, :, 0] = 0  # leave class 2 rare, so the batch sum matters
    p = _softmax(logits)
    g = np.stack([target == k for k in range(3)], axis=1).astype(float)
    ce = -np.mean(np.log(np.take_along_axis(p, target[:, None], axis=1)))
    eps = 0.5
    dice = [
        (2 * (p[:, k] * g[:, k]).sum() + eps) / (p[:, k].sum() + g[:, k].sum() + eps)
        for k in (1, 2)
    ]
    lt, tt = torch.tensor(logits), torch.tensor(target)
    assert cross_entropy(lt, tt).item() == pytest.approx(ce, rel=1e-9)
    assert soft_dice(lt, tt, eps=eps).item() == pytest.approx(1 - np.mean(dice), rel=1e-9)


def test_soft_dice_is_zero_for_a_confident_correct_prediction():
    target = torch.tensor([[[0, 1], [2, 2]]])
    logits = 50.0 * torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).double()
    assert soft_dice(logits, target).item() == pytest.approx(0.0, abs=1e-12)
    wrong = 50.0 * torch.nn.functional.one_hot(2 - target, 3).permute(0, 3, 1, 2).double()
    # class 1 predicted where the target is 1 (2 - 1 = 1): dice 1; class 2 never right
    expected = 1 - ((2 * 1 + 1) / (1 + 1 + 1) + (0 + 1) / (1 + 2 + 1)) / 2
    assert soft_dice(wrong, target).item() == pytest.approx(expected)


def test_losses_have_gradients():
    logits = torch.zeros(2, 3, 4, 4, requires_grad=True)
    target = torch.ones(2, 4, 4, dtype=torch.long)
    for loss in LOSSES.values():
        logits.grad = None
        loss(logits, target).backward()
        assert logits.grad.abs().sum() > 0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="expected logits"):
        soft_dice(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 5, dtype=torch.long))


def test_get_loss_by_config_name():
    assert get_loss("dice") is soft_dice and get_loss("cross_entropy") is cross_entropy
    with pytest.raises(ValueError, match="unknown loss 'f1'.*cross_entropy, dice"):
        get_loss("f1")
