"""The QC measures of a predicted case, their calibration and the flag, against independent
computations (scipy's Wasserstein distance, numpy's percentiles, Dice by hand)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import entropy, wasserstein_distance

from segsweep.deploy import qc


def test_intensity_distance_is_the_wasserstein_distance_in_training_sds():
    rng = np.random.default_rng(0)
    training = rng.normal(0.0, 1.0, (4000, 1))
    case = rng.normal(0.8, 1.5, (3000, 1))
    reference = {"quantiles": qc.intensity_quantiles(training).tolist(), "std": [2.0]}
    found = qc.intensity_distance(case.reshape(10, 15, 20, 1), reference)
    expected = wasserstein_distance(case[:, 0], training[:, 0]) / 2.0
    assert found == pytest.approx(expected, rel=0.05)  # 101 quantiles approximate the integral
    same = qc.intensity_distance(training.reshape(40, 10, 10, 1), reference)
    assert same == pytest.approx(0.0, abs=1e-12)


def test_intensity_distance_averages_the_channels():
    rng = np.random.default_rng(1)
    training = rng.normal(0.0, 1.0, (2000, 2))
    reference = {"quantiles": qc.intensity_quantiles(training).tolist(), "std": [1.0, 1.0]}
    shifted = training + np.array([0.0, 2.0])  # only the second channel moves, by 2 SDs
    assert qc.intensity_distance(shifted.reshape(20, 10, 10, 2), reference) == pytest.approx(1.0)


def test_agreement_is_the_mean_pairwise_dice():
    a = np.zeros((2, 4, 4), bool)
    b, c = a.copy(), a.copy()
    a[0, :2] = True  # 8 voxels
    b[0, :1] = True  # 4 voxels, all inside a
    c[1, :1] = True  # 4 voxels, disjoint from both
    dice_ab = 2 * 4 / (8 + 4)
    assert qc.agreement([a, b, c]) == pytest.approx((dice_ab + 0.0 + 0.0) / 3)
    assert qc.agreement([a, a]) == 1.0
    empty = np.zeros_like(a)
    assert qc.agreement([empty, empty]) == 1.0  # both empty: they agree
    assert math.isnan(qc.agreement([a]))  # one network has nothing to agree with


def test_normalised_entropy_and_its_mean_over_the_foreground():
    p = np.array([[1.0, 0.5, 1 / 3], [0.0, 0.5, 1 / 3], [0.0, 0.0, 1 / 3]])  # [K, voxels]
    h = qc.normalised_entropy(p)
    expected = entropy(p, axis=0) / math.log(3)
    np.testing.assert_allclose(h, expected, atol=1e-6)
    assert h[2] == pytest.approx(1.0) and h[0] == pytest.approx(0.0, abs=1e-6)
    foreground = np.array([False, True, True])
    assert qc.mean_uncertainty(h, foreground) == pytest.approx(h[1:].mean())
    assert qc.mean_uncertainty(h, np.zeros(3, bool)) == 0.0


def test_calibration_sets_tukeys_far_out_fences_on_the_checked_sides():
    rng = np.random.default_rng(2)
    rows = pd.DataFrame(
        {
            "agreement": rng.uniform(0.9, 1.0, 12),
            "uncertainty": rng.uniform(0.1, 0.2, 12),
            "intensity_distance": rng.uniform(0.3, 0.5, 12),
            "volume_ml_foreground": rng.uniform(150, 250, 12),
        }
    )
    rows.loc[0, "agreement"] = np.nan  # missing values are left out
    calibration = qc.calibrate(rows)
    assert calibration["patients"] == 12
    fences = calibration["thresholds"]
    for measure, sides in qc.SIDES.items():
        values = rows[measure].dropna().to_numpy()
        q1, q3 = np.percentile(values, [25, 75])
        low, high = q1 - 3 * (q3 - q1), q3 + 3 * (q3 - q1)
        assert fences[measure]["low"] == (pytest.approx(low) if qc.LOW in sides else None)
        assert fences[measure]["high"] == (pytest.approx(high) if qc.HIGH in sides else None)


def test_a_case_is_flagged_with_every_reason_and_an_ordinary_one_is_not():
    calibration = {
        "thresholds": {
            "agreement": {"low": 0.9, "high": None},
            "uncertainty": {"low": None, "high": 0.3},
            "intensity_distance": {"low": None, "high": 0.8},
            "volume_ml_foreground": {"low": 100.0, "high": 300.0},
        }
    }
    ordinary = {"agreement": 0.95, "uncertainty": 0.2, "intensity_distance": 0.5}
    assert qc.flag({**ordinary, "volume_ml_foreground": 200.0}, calibration) == (False, "")
    odd = {"agreement": 0.5, "uncertainty": 0.6, "intensity_distance": 2.0}
    flagged, reason = qc.flag({**odd, "volume_ml_foreground": 400.0}, calibration)
    assert flagged
    for part in ("agreement 0.5 < 0.9", "uncertainty 0.6 > 0.3", "intensity_distance 2 > 0.8"):
        assert part in reason
    assert "volume_ml_foreground 400 > 300" in reason
    flagged, reason = qc.flag({**ordinary, "volume_ml_foreground": 0.0}, calibration)
    assert flagged and reason.startswith("nothing segmented")
    single = {**ordinary, "agreement": math.nan, "volume_ml_foreground": 200.0}
    assert qc.flag(single, calibration) == (False, "")  # NaN (one network) is not checked


def test_qc_columns_name_each_class_and_the_foreground_once():
    assert qc.columns(["femur", "tibia"]) == [
        "case",
        "volume_ml_femur",
        "volume_ml_tibia",
        "volume_ml_foreground",
        "agreement",
        "uncertainty",
        "intensity_distance",
        "flag",
        "reason",
    ]
    assert qc.columns(["foreground"])[1:3] == ["volume_ml_foreground", "agreement"]
