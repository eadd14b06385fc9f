"""Does the quality control of a final model's predictions predict their Dice? The QC measures
of its test patients (`layout.FINAL_QC`, one row per patient: `case`, `agreement`,
`uncertainty`, `intensity_distance`, `volume_ml_foreground`, `flag`, …) set against their
per-patient foreground Dice (`layout.TEST_PER_PATIENT`), so that the flag is validated on
patients no fold model saw, not asserted.

- The Dice is the test table's class "foreground" in space "native" where the table has it,
  else in space "processed"; the table says which (`space`). Patients match on `case` =
  `patient_id`; a patient counts for a measure when both its Dice and its measure are defined
  (`n`).
- Per measure: Spearman's rho and its p-value (`scipy.stats.spearmanr`), and a 95 % interval
  of rho by the percentile bootstrap over patients (seeded, `resamples` draws of the n patients
  with replacement, each resample's rho the Pearson correlation of its average ranks as
  spearmanr computes it). Resamples whose rho is undefined (a resample with one value of a
  column) are dropped (`resamples` in the table says how many were kept), and with fewer than
  two kept the interval is NaN.
- An undefined rho is never an exception: rho, its interval and p are NaN and `note` says why:
  fewer than 3 patients with both values (`n < 3`; with none, e.g. `agreement` of a model of
  one member, which has no pairwise agreement, the note says that every value is missing), or a
  constant column (the measure, or the Dice, takes one value over the n patients).
- The flag (True/False, read by `segsweep.io.records.flags`): of the n patients with a Dice,
  how many were flagged and how many not, and the median Dice of each group (NaN for an empty
  group), on the row `measure` = "flag".
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from segsweep.io.records import flags, write_csv
from segsweep.labels import FOREGROUND

MEASURES = ("agreement", "uncertainty", "intensity_distance", "volume_ml_foreground")
FLAG = "flag"  # the `measure` of the flagged-vs-not row
SPACES = ("native", "processed")  # the Dice's space: the first the test table has
RESAMPLES = 2000
SEED = 0
MIN_PATIENTS = 3
COUNTED = ["n", "resamples", "flagged", "not_flagged"]  # whole numbers (empty where undefined)
COLUMNS = [
    "run_id",
    "measure",
    "space",
    "n",
    "rho",
    "ci_low",
    "ci_high",
    "p",
    "resamples",
    "flagged",
    "not_flagged",
    "median_dice_flagged",
    "median_dice_not_flagged",
    "note",
]


def patient_dice(per_patient: pd.DataFrame) -> tuple[pd.Series, str]:
    """(Dice by patient id, its space): the class "foreground" rows of a test per-patient table,
    in native space where the table has it, else in processed space."""
    foreground = per_patient[per_patient["class"].astype(str) == FOREGROUND]
    spaces = set(foreground["space"].astype(str))
    space = next((s for s in SPACES if s in spaces), None)
    if space is None:
        raise ValueError(f"no foreground Dice in space {' or '.join(SPACES)}")
    rows = foreground[foreground["space"].astype(str) == space]
    dice = pd.to_numeric(rows["dice"], errors="coerce")
    dice.index = rows["patient_id"].astype(str)
    if dice.index.duplicated().any():
        raise ValueError(f"a patient has several foreground rows in space {space}")
    return dice, space


def rank_correlations(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row of x [k, n] with the same row of y [k, n]: the Pearson
    correlation of their average ranks (ties share their mean rank, as in spearmanr); NaN for a
    row where either has one value only."""
    rx = stats.rankdata(x, axis=1)
    ry = stats.rankdata(y, axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    scale = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scale > 0, (rx * ry).sum(axis=1) / scale, math.nan)


def spearman(
    x: np.ndarray,
    y: np.ndarray,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    names: tuple[str, str] = ("the measure", "the Dice"),
) -> dict[str, float | int | str]:
    """Spearman's rho of paired values (NaN pairs left out): n, rho, its percentile-bootstrap
    95 % interval over the pairs (ci_low, ci_high; `resamples` draws, seeded, the undefined
    ones dropped: `resamples` in the answer is how many were kept), p and the reason when rho
    is undefined (`note`, empty otherwise; `names` say x and y there)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    both = ~(np.isnan(x) | np.isnan(y))
    x, y = x[both], y[both]
    n = int(both.sum())
    result: dict[str, float | int | str] = {
        "n": n,
        "rho": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "p": math.nan,
        "resamples": 0,
        "note": "",
    }
    if n < MIN_PATIENTS:
        result["note"] = f"undefined: n = {n} < {MIN_PATIENTS}"
        return result
    constant = [name for name, v in zip(names, (x, y), strict=True) if np.all(v == v[0])]
    if constant:
        are = "is" if len(constant) == 1 else "are"
        result["note"] = f"undefined: {' and '.join(constant)} {are} constant over the {n} patients"
        return result
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho, p = stats.spearmanr(x, y)
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    rhos = rank_correlations(x[draws], y[draws])
    kept = rhos[~np.isnan(rhos)]
    result |= {"rho": float(rho), "p": float(p), "resamples": int(kept.size)}
    if kept.size >= 2:
        low, high = np.percentile(kept, [2.5, 97.5])
        result |= {"ci_low": float(low), "ci_high": float(high)}
    return result


def qc_validation(
    qc: pd.DataFrame,
    per_patient: pd.DataFrame,
    run_id: str = "",
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> pd.DataFrame:
    """One final model's QC against its test Dice (`COLUMNS`): a row per measure of
    `MEASURES` (Spearman's rho, interval, p and n, `spearman`) and the row "flag" (flagged and
    not flagged patients and their median Dice); every row names the Dice's space."""
    dice, space = patient_dice(per_patient)
    qc = qc.assign(case=qc["case"].astype(str)).set_index("case")
    if qc.index.duplicated().any():
        raise ValueError("a case has several rows in the QC table")
    common = qc.index.intersection(dice.index)
    patients = dice.loc[common]
    rows = []
    for measure in MEASURES:
        values = (
            pd.to_numeric(qc.loc[common, measure], errors="coerce")
            if measure in qc
            else pd.Series(math.nan, index=common)
        )
        row = spearman(
            values.to_numpy(), patients.to_numpy(), resamples, seed, (measure, "the Dice")
        )
        if measure not in qc:
            row["note"] = "not in the QC table"
        elif row["n"] == 0 and patients.notna().any():
            row["note"] = f"undefined: {measure} is missing for every patient"
            if measure == "agreement":
                row["note"] += "; a model of one member has no pairwise agreement"
        rows.append({"measure": measure, **row})
    known = patients.dropna() if FLAG in qc else patients.iloc[:0]
    marked = (
        flags(qc.loc[known.index, FLAG]).to_numpy(dtype=bool) if FLAG in qc else np.zeros(0, bool)
    )
    on, off = known[marked], known[~marked]
    rows.append(
        {
            "measure": FLAG,
            "n": len(known),
            "flagged": len(on),
            "not_flagged": len(off),
            "median_dice_flagged": float(on.median()) if len(on) else math.nan,
            "median_dice_not_flagged": float(off.median()) if len(off) else math.nan,
            "resamples": 0,
            "note": "" if FLAG in qc else "not in the QC table",
        }
    )
    table = pd.DataFrame(rows).assign(run_id=run_id, space=space).reindex(columns=COLUMNS)
    return table.astype(dict.fromkeys(COUNTED, "Int64"))


def qc_validations(
    qc: Mapping[str, str | Path],
    test: Mapping[str, str | Path],
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> pd.DataFrame:
    """`qc_validation` of every final model with a QC table (`qc`: run id → qc.csv, `test`: run
    id → its test per_patient.csv), one after the other in the order of `qc`."""
    tables = [
        qc_validation(
            pd.read_csv(qc[run], dtype={"case": str}, keep_default_na=True),
            pd.read_csv(test[run], dtype={"patient_id": str, "class": str, "space": str}),
            run,
            resamples,
            seed,
        )
        for run in qc
    ]
    if not tables:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(tables, ignore_index=True)


def write_qc_validation(
    qc: Mapping[str, str | Path],
    test: Mapping[str, str | Path],
    out: str | Path,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> pd.DataFrame:
    """Write `qc_validations` of the final models to `out` (CSV) and return it."""
    table = qc_validations(qc, test, resamples, seed)
    write_csv(table, out)
    print(f"wrote {out} ({len(table)} rows)")
    return table
