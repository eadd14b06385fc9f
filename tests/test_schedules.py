"""Learning-rate policies against their formulas."""

from __future__ import annotations

import math

import pytest
import torch

from segsweep.config_schema import complete
from segsweep.model.schedules import learning_rate

SPE, TOTAL = 4, 40  # steps per epoch, total steps


def lrs(hp: dict, steps=range(TOTAL)) -> list[float]:
    full = complete({"lr": 0.1, **hp}, "train")
    return [learning_rate(full, t, SPE, TOTAL) for t in steps]


def test_constant_and_time_based_decay():
    assert lrs({"lr_policy": "constant", "decay": 0.5}) == [0.1] * TOTAL
    assert lrs({"lr_policy": "time", "decay": 0.5}) == pytest.approx(
        [0.1 / (1 + 0.5 * t) for t in range(TOTAL)]
    )
    assert lrs({}) == [0.1] * TOTAL  # default: time-based with decay 0


def test_step_policy_drops_every_n_epochs():
    got = lrs({"lr_policy": "step", "lr_step_epochs": 3, "lr_gamma": 0.5})
    assert got[:12] == pytest.approx([0.1] * 12)  # epochs 0-2 (steps 0-11)
    assert got[12] == pytest.approx(0.05) and got[24] == pytest.approx(0.025)


def test_poly_policy():
    got = lrs({"lr_policy": "poly", "lr_power": 2.0})
    assert got == pytest.approx([0.1 * (1 - t / TOTAL) ** 2 for t in range(TOTAL)])


def test_cosine_warm_restarts_match_pytorch():
    hp = {"lr_policy": "cosine", "lr_t0": 2, "lr_t_mult": 2, "lr_min": 0.001}
    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=0.1)
    reference = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=2, T_mult=2, eta_min=0.001
    )
    expected = []
    for t in range(TOTAL):
        reference.step(t / SPE)
        expected.append(optimizer.param_groups[0]["lr"])
    assert lrs(hp) == pytest.approx(expected, abs=1e-12)
    got = lrs(hp)
    # restarts at epochs 2, 2 + 4 = 6: back to the full rate
    assert got[2 * SPE] == pytest.approx(0.1) and got[6 * SPE] == pytest.approx(0.1)
    assert got[SPE] == pytest.approx(0.001 + 0.099 * (1 + math.cos(math.pi / 2)) / 2)


def test_unknown_policy_is_an_error():
    with pytest.raises(ValueError, match="unknown lr_policy 'exp'.*cosine"):
        learning_rate(complete({"lr": 0.1, "lr_policy": "exp"}, "train"), 0, 1, 1)
