"""Losses against their formulas on small hand-built tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from segsweep.config_schema import complete
from segsweep.model.losses import (
    LOSSES,
    Criterion,
    ce_dice,
    cross_entropy,
    get_loss,
    soft_dice,
    soft_fbeta,
)
from segsweep.model.unet import build_model


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
    with pytest.raises(ValueError, match="unknown loss 'f1'.*cross_entropy, dice, fbeta"):
        get_loss("f1")


def _hand_batch():
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(2, 3, 3, 4))
    target = rng.integers(0, 3, size=(2, 3, 4))
    p = _softmax(logits)
    g = np.stack([target == k for k in range(3)], axis=1).astype(float)
    return torch.tensor(logits), torch.tensor(target), p, g


@pytest.mark.parametrize("beta", [0.5, 2.0, 4.0])
def test_fbeta_matches_the_pet_ct_thesis_definition(beta):
    """1 - ((1 + β²) Σ p g + eps) / (β² Σ g² + Σ p² + eps), averaged over foreground classes."""
    lt, tt, p, g = _hand_batch()
    eps, b2 = 1.0, beta**2
    scores = [
        ((1 + b2) * (p[:, k] * g[:, k]).sum() + eps)
        / (b2 * (g[:, k] ** 2).sum() + (p[:, k] ** 2).sum() + eps)
        for k in (1, 2)
    ]
    assert soft_fbeta(lt, tt, beta=beta).item() == pytest.approx(1 - np.mean(scores), rel=1e-9)
    by_name = get_loss(f"fbeta{beta:g}") if beta >= 1 else get_loss("fbeta", beta=beta)
    assert by_name(lt, tt).item() == pytest.approx(1 - np.mean(scores), rel=1e-9)


def test_fbeta_at_beta_one_is_soft_dice():
    lt, tt, p, g = _hand_batch()
    assert soft_fbeta(lt, tt, beta=1.0, squared=False).item() == pytest.approx(
        soft_dice(lt, tt).item(), rel=1e-12
    )
    # with the squared denominator it is Milletari's Dice: (2 Σ p g + 1) / (Σ g + Σ p² + 1)
    milletari = [
        (2 * (p[:, k] * g[:, k]).sum() + 1) / (g[:, k].sum() + (p[:, k] ** 2).sum() + 1)
        for k in (1, 2)
    ]
    assert soft_fbeta(lt, tt, beta=1.0).item() == pytest.approx(1 - np.mean(milletari))
    # a confident miss of a rare structure costs more with a larger β (sensitivity weighs more)
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, 0, :2] = 1
    logits = torch.zeros(1, 2, 4, 4)
    logits[0, 0] = 3.0
    assert soft_fbeta(logits, target, beta=4) > soft_fbeta(logits, target, beta=1)


def test_ce_dice_is_the_sum():
    lt, tt, _, _ = _hand_batch()
    expected = cross_entropy(lt, tt) + soft_dice(lt, tt)
    assert ce_dice(lt, tt).item() == pytest.approx(expected.item(), rel=1e-12)
    assert get_loss("ce_dice") is ce_dice and get_loss("fbeta") is soft_fbeta


def test_dual_head_criterion_sums_one_loss_per_head():
    torch.manual_seed(0)
    hp = {
        "loss": "dual",
        "dual_losses": ["cross_entropy", "fbeta2"],
        "depth": 2,
        "base_channels": 4,
    }
    hp = complete(hp, "train")
    model = build_model(hp, 1, 3)
    x, t = torch.randn(2, 1, 8, 8), torch.randint(0, 3, (2, 8, 8))
    first, second = model.forward_heads(x)
    expected = cross_entropy(first, t) + soft_fbeta(second, t, beta=2.0)
    assert Criterion(hp)(model, x, t).item() == pytest.approx(expected.item(), rel=1e-6)


def test_per_class_criterion_sums_binary_losses_of_members():
    torch.manual_seed(0)
    hp = complete({"labels": "per_class", "loss": "dice", "depth": 2, "base_channels": 4}, "train")
    model = build_model(hp, 1, 4)
    x, t = torch.randn(2, 1, 8, 8), torch.randint(0, 4, (2, 8, 8))
    expected = sum(soft_dice(m(x), (t == c).long()) for c, m in enumerate(model.members, 1))
    loss = Criterion(hp)(model, x, t)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    member = model.members[1]
    grad = member.head.weight.grad.clone()
    model.zero_grad()
    soft_dice(member(x), (t == 2).long()).backward()
    assert torch.allclose(grad, member.head.weight.grad)
