"""The QC of a final model's test patients against their Dice (`segsweep.evaluate.qc_validation`):
Spearman's rho as scipy computes it, its seeded patient-bootstrap interval, undefined rho as NaN
with its reason, the Dice's space, and the flagged against the not flagged patients."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from segsweep.evaluate import qc_validation as qv

PATIENTS = [f"case-{i:02d}" for i in range(12)]
DICE = [0.91, 0.62, 0.85, 0.40, 0.77, 0.88, 0.70, 0.95, 0.55, 0.81, 0.66, 0.90]


def qc_table(**columns) -> pd.DataFrame:
    """A qc.csv of the 12 patients: agreement follows the Dice closely, uncertainty against it,
    intensity distance unrelated; the 3 lowest Dice flagged."""
    dice = np.array(DICE)
    table = pd.DataFrame(
        {
            "case": PATIENTS,
            "volume_ml_femur": 10.0,
            "volume_ml_foreground": np.linspace(20.0, 31.0, 12),
            "agreement": dice + np.array([0.02, -0.03] * 6),
            "uncertainty": 1.0 - dice,
            "intensity_distance": [0.3, 0.1, 0.5, 0.2, 0.9, 0.4, 0.8, 0.6, 0.7, 0.0, 1.1, 1.0],
            "flag": dice < 0.65,
            "reason": ["agreement 0.41 < 0.88" if d < 0.65 else "" for d in dice],
        }
    )
    return table.assign(**columns)


def per_patient_table(spaces: tuple[str, ...] = ("processed",), shift: float = 0.0) -> pd.DataFrame:
    """A test per_patient.csv in long format: foreground and femur rows per patient and space
    (the native Dice `shift` above the processed one)."""
    rows = []
    for space in spaces:
        for patient, dice in zip(PATIENTS, DICE, strict=True):
            native = shift if space == "native" else 0.0
            rows.append(
                {
                    "run_id": "m",
                    "split": "test",
                    "space": space,
                    "patient_id": patient,
                    "class": "foreground",
                    "dice": dice + native,
                }
            )
            rows.append({**rows[-1], "class": "femur", "dice": 0.0})
    return pd.DataFrame(rows)


def row_of(table: pd.DataFrame, measure: str) -> pd.Series:
    return table.set_index("measure").loc[measure]


def test_rho_and_p_are_scipys_on_a_known_case() -> None:
    x, y = [1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 1.0, 4.0, 3.0, 5.0]
    found = qv.spearman(np.array(x), np.array(y), resamples=500)
    expected = stats.spearmanr(x, y)
    assert found["rho"] == pytest.approx(0.8) == pytest.approx(expected.statistic)
    assert found["p"] == pytest.approx(expected.pvalue)
    assert found["n"] == 5 and found["note"] == ""


def test_the_resamples_rho_is_spearmanr_with_ties() -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, size=(6, 9)).astype(float)  # ties on purpose
    y = rng.normal(size=(6, 9))
    y[0] = 1.0  # a constant row has no rho
    found = qv.rank_correlations(x, y)
    assert math.isnan(found[0])
    for k in range(1, 6):
        assert found[k] == pytest.approx(stats.spearmanr(x[k], y[k]).statistic)


def test_the_bootstrap_interval_contains_rho_and_is_seeded() -> None:
    table = qv.qc_validation(qc_table(), per_patient_table(), "m", resamples=1000, seed=7)
    for measure in qv.MEASURES:
        row = row_of(table, measure)
        assert row["ci_low"] <= row["rho"] <= row["ci_high"], measure
        assert row["n"] == 12 and row["resamples"] <= 1000
    agreement = row_of(table, "agreement")
    expected = stats.spearmanr(qc_table()["agreement"], DICE)
    assert agreement["rho"] == pytest.approx(expected.statistic)
    assert agreement["p"] == pytest.approx(expected.pvalue)
    assert agreement["ci_low"] > 0  # agreement follows the Dice
    assert row_of(table, "uncertainty")["rho"] == pytest.approx(-1.0)
    again = qv.qc_validation(qc_table(), per_patient_table(), "m", resamples=1000, seed=7)
    pd.testing.assert_frame_equal(table, again)
    other = qv.qc_validation(qc_table(), per_patient_table(), "m", resamples=1000, seed=8)
    assert (
        row_of(other, "intensity_distance")["ci_low"]
        != row_of(table, "intensity_distance")["ci_low"]
    )


def test_the_percentile_interval_is_that_of_the_seeded_resamples() -> None:
    x, y = np.array(qc_table()["intensity_distance"]), np.array(DICE)
    found = qv.spearman(x, y, resamples=300, seed=1)
    draws = np.random.default_rng(1).integers(0, 12, size=(300, 12))
    rhos = [stats.spearmanr(x[d], y[d]).statistic for d in draws]
    rhos = [r for r in rhos if not math.isnan(r)]
    low, high = np.percentile(rhos, [2.5, 97.5])
    assert found["resamples"] == len(rhos)
    assert (found["ci_low"], found["ci_high"]) == pytest.approx((low, high))


@pytest.mark.parametrize(
    ("x", "y", "note"),
    [
        ([0.1, 0.2], [0.5, 0.6], "undefined: n = 2 < 3"),
        ([0.1, math.nan, 0.3, 0.4], [0.5, 0.6, math.nan, 0.8], "undefined: n = 2 < 3"),
        ([0.3, 0.3, 0.3], [0.5, 0.6, 0.7], "undefined: the measure is constant over the 3"),
        ([0.1, 0.2, 0.3], [0.5, 0.5, 0.5], "undefined: the Dice is constant over the 3"),
        ([0.3, 0.3, 0.3], [0.5, 0.5, 0.5], "undefined: the measure and the Dice are constant"),
    ],
)
def test_an_undefined_rho_is_nan_with_its_reason(x: list, y: list, note: str) -> None:
    found = qv.spearman(np.array(x), np.array(y))
    assert all(math.isnan(found[k]) for k in ["rho", "ci_low", "ci_high", "p"])
    assert found["note"].startswith(note) and found["resamples"] == 0


def test_agreement_of_a_model_of_one_member_is_undefined_the_rest_is_not() -> None:
    table = qv.qc_validation(qc_table(agreement=math.nan), per_patient_table(), "single")
    agreement = row_of(table, "agreement")
    assert agreement["n"] == 0 and math.isnan(agreement["rho"]) and math.isnan(agreement["ci_low"])
    assert agreement["note"] == (
        "undefined: agreement is missing for every patient; a model of one member has no "
        "pairwise agreement"
    )
    assert row_of(table, "uncertainty")["n"] == 12
    assert not math.isnan(row_of(table, "intensity_distance")["rho"])


def test_native_dice_is_used_when_the_table_has_it_and_the_space_is_said() -> None:
    processed = qv.qc_validation(qc_table(), per_patient_table(("processed",)), "m")
    assert set(processed["space"]) == {"processed"}
    both = per_patient_table(("processed", "native"), shift=0.01)
    native = qv.qc_validation(qc_table(), both, "m")
    assert set(native["space"]) == {"native"}
    dice, space = qv.patient_dice(both)
    assert space == "native" and dice["case-00"] == pytest.approx(0.92)
    with pytest.raises(ValueError, match="no foreground Dice"):
        qv.patient_dice(per_patient_table()[lambda t: t["class"] == "femur"])


def test_flagged_against_not_flagged_counts_and_medians() -> None:
    table = qv.qc_validation(qc_table(), per_patient_table(), "m")
    flag = row_of(table, qv.FLAG)
    assert (flag["n"], flag["flagged"], flag["not_flagged"]) == (12, 3, 9)
    assert flag["median_dice_flagged"] == pytest.approx(np.median([0.62, 0.40, 0.55]))
    rest = [d for d in DICE if d >= 0.65]
    assert flag["median_dice_not_flagged"] == pytest.approx(np.median(rest))
    none = row_of(qv.qc_validation(qc_table(flag=False), per_patient_table(), "m"), qv.FLAG)
    assert none["flagged"] == 0 and math.isnan(none["median_dice_flagged"])


def test_patients_match_on_case_and_an_undefined_dice_is_left_out() -> None:
    tests = per_patient_table()
    tests.loc[(tests["patient_id"] == "case-03") & (tests["class"] == "foreground"), "dice"] = None
    qc = pd.concat([qc_table(), qc_table().iloc[:1].assign(case="unscored")])
    table = qv.qc_validation(qc, tests, "m")
    assert set(table["n"]) == {11}  # case-03 has no Dice, "unscored" no test row


def test_the_written_table_reads_back_with_one_block_per_model(tmp_path: Path) -> None:
    files = {}
    for run, qc in {"a": qc_table(), "b": qc_table(agreement=math.nan)}.items():
        qc.to_csv(tmp_path / f"{run}-qc.csv", index=False)
        per_patient_table().to_csv(tmp_path / f"{run}-test.csv", index=False)
        files[run] = (tmp_path / f"{run}-qc.csv", tmp_path / f"{run}-test.csv")
    out = tmp_path / "out" / "qc_validation.csv"
    table = qv.write_qc_validation(
        {r: q for r, (q, _) in files.items()},
        {r: t for r, (_, t) in files.items()},
        out,
        resamples=200,
    )
    read = pd.read_csv(out, keep_default_na=False)
    assert list(read.columns) == qv.COLUMNS and len(read) == 2 * (len(qv.MEASURES) + 1)
    assert list(dict.fromkeys(read["run_id"])) == ["a", "b"]
    assert read.loc[read["measure"] == qv.FLAG, "flagged"].tolist() == ["3", "3"]  # whole numbers
    assert read.loc[(read["run_id"] == "b") & (read["measure"] == "agreement"), "rho"].item() == ""
    assert table.loc[table["run_id"] == "a", "rho"].notna().sum() == len(qv.MEASURES)


def test_a_qc_table_without_a_column_says_so() -> None:
    qc = qc_table().drop(columns=["flag", "intensity_distance"])
    table = qv.qc_validation(qc, per_patient_table(), "m")
    assert row_of(table, "intensity_distance")["note"] == "not in the QC table"
    flag = row_of(table, qv.FLAG)
    assert flag["n"] == 0 and flag["note"] == "not in the QC table"
    assert row_of(table, "agreement")["n"] == 12
