"""Section "Quality control of predictions" of the results: what the predictor's QC measures
are, how their thresholds were calibrated, and whether they predict Dice on the test patients,
which no fold model saw: per final model and measure Spearman's rho with the per-patient
foreground Dice, its bootstrap interval and n, and the flagged test patients' median Dice
against the others'.

The table is computed here, in the report stage, from each final model's qc.csv and its test
per_patient.csv (`ReportInputs.final_qc`, `test_per_patient`;
`segsweep.evaluate.qc_validation`). Shown for the final models with a qc.csv; without any, the
section is left out.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from segsweep import layout
from segsweep.evaluate.qc_validation import FLAG, MEASURES, RESAMPLES, qc_validations
from segsweep.numerals import ci_text, integer, number, p_value, plural, sentence_case
from segsweep.report.chapters.sweep_results import cross_validated
from segsweep.report.document import Paragraph, Section, Table, text
from segsweep.report.inputs import ReportInputs

MEASURE_NAMES = {
    "agreement": "Agreement",
    "uncertainty": "Uncertainty",
    "intensity_distance": "Intensity distance",
    "volume_ml_foreground": "Foreground volume (ml)",
}
# the sign of rho a measure that flags poor predictions should have (volume: none expected)
EXPECTED = {"agreement": 1, "uncertainty": -1, "intensity_distance": -1}


def validation(inputs: ReportInputs) -> pd.DataFrame:
    """The QC against the test Dice of every final model with a qc.csv."""
    return qc_validations(inputs.final_qc, inputs.test_per_patient)


def rho_frame(table: pd.DataFrame, spaces: bool) -> pd.DataFrame:
    """The measures' rows as display text: model, measure, patients, rho, interval, p and the
    reason an undefined rho is undefined; the Dice's space as a column when `spaces`."""
    rows = [
        [
            row["run_id"],
            *([row["space"]] if spaces else []),
            MEASURE_NAMES.get(row["measure"], row["measure"]),
            integer(row["n"]),
            number(row["rho"]),
            ci_text(row["ci_low"], row["ci_high"]),
            p_value(row["p"]),
            row["note"] or "",
        ]
        for _, row in table[table["measure"] != FLAG].iterrows()
    ]
    columns = ["Model", *(["Dice space"] if spaces else []), "Measure", "Patients", "ρ"]
    return pd.DataFrame(rows, columns=[*columns, "95 % CI", "p", "Note"])


def flag_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The flag rows as display text: patients, flagged and not flagged, each group's median
    Dice."""
    rows = [
        [
            row["run_id"],
            integer(row["n"]),
            integer(row["flagged"]),
            number(row["median_dice_flagged"]),
            integer(row["not_flagged"]),
            number(row["median_dice_not_flagged"]),
        ]
        for _, row in table[table["measure"] == FLAG].iterrows()
    ]
    columns = ["Model", "Patients", "Flagged", "Median Dice, flagged", "Not flagged"]
    columns.append("Median Dice, not flagged")
    return pd.DataFrame(rows, columns=columns)


def _measures_text(folds: int) -> str:
    members = f"the {folds} fold models" if folds else "the model's members (one without folds)"
    return (
        "The predictor a user runs on new scans, the one that predicted the test patients "
        "here, writes with every prediction its quality-control measures and a flag: "
        f"agreement, the mean pairwise Dice between the predictions of {members} (undefined "
        "for a model of one member); uncertainty, the mean normalised entropy of the "
        "fold-averaged class probabilities over the predicted foreground (0 where every voxel "
        "is certain, 1 where the classes are equally likely); intensity distance, the "
        "Wasserstein-1 distance between the case's normalised intensities and the training "
        "patients', in training standard deviations; and the predicted volume of each class "
        "and of the foreground, in ml. A case is flagged when a measure lies beyond its "
        "threshold (agreement below it, uncertainty and intensity distance above it, the "
        "foreground volume on either side) or nothing is segmented, and the flag's reason "
        "names the measures, their values and the thresholds they crossed "
        f"({layout.path(layout.FINAL_QC, run='<run>')})."
    )


def _calibration_text(folds: int) -> str:
    if folds:
        return (
            "The thresholds were calibrated when each model was packaged, on its out-of-fold "
            "validation patients, each predicted by the fold model that did not train on it. "
            "Every one of those patients was seen in training by the other folds' models, so "
            "their agreement and uncertainty are optimistic: the fold models agree more, and "
            "are surer, on a patient most of them trained on than on a new scan. The test "
            "patients were seen by no fold model; they test the flag as it works on new scans."
        )
    return (
        "The thresholds were calibrated when each model was packaged, on the validation "
        "patients, which the model did not train on but which chose its checkpoint. The test "
        "patients were seen by no model; they test the flag as it works on new scans."
    )


def _excluding(row: pd.Series) -> bool:
    return bool(row["ci_low"] > 0 or row["ci_high"] < 0)


def _reading(run: str, rows: pd.DataFrame) -> Paragraph:
    """One model's reading: whether the interval of agreement's rho excludes 0 (its n), and
    which other measures' intervals do."""
    by = rows.set_index("measure")
    parts = []
    if "agreement" in by.index:
        row = by.loc["agreement"]
        if pd.isna(row["rho"]):
            parts.append(
                f"For {run}, agreement's ρ is undefined ({row['note'].removeprefix('undefined: ')}"
                "), so these test patients cannot say whether agreement predicts Dice"
            )
        else:
            patients = plural(int(row["n"]), "test patient")
            interval = (
                f"the 95 % interval of agreement's ρ over the {patients}, "
                f"{ci_text(row['ci_low'], row['ci_high'])}"
            )
            if pd.isna(row["ci_low"]):
                parts.append(
                    f"For {run}, agreement's ρ over the {patients} is {number(row['rho'])} but "
                    "has no bootstrap interval"
                )
            elif not _excluding(row):
                parts.append(
                    f"For {run}, {interval}, includes 0: on these patients agreement does not "
                    "detectably predict Dice"
                )
            elif row["rho"] > 0:
                parts.append(
                    f"For {run}, {interval}, excludes 0: the test patients on which the fold "
                    "models agreed more were segmented better"
                )
            else:
                parts.append(
                    f"For {run}, {interval}, excludes 0 with the sign against the flag: the "
                    "test patients on which the fold models agreed more were segmented worse"
                )
    others = [
        f"{MEASURE_NAMES[m].lower()} (ρ = {number(by.loc[m, 'rho'])}, "
        f"{ci_text(by.loc[m, 'ci_low'], by.loc[m, 'ci_high'])}, n = {integer(by.loc[m, 'n'])})"
        for m in MEASURES
        if m != "agreement" and m in by.index and not pd.isna(by.loc[m, "rho"])
        if _excluding(by.loc[m])
    ]
    if others:
        listed = others[0] if len(others) == 1 else ", ".join(others[:-1]) + " and " + others[-1]
        verb = "excludes" if len(others) == 1 else "exclude"
        parts.append(f"of the other measures, the interval of {listed} {verb} 0")
    else:
        parts.append("no other measure's interval excludes 0")
    return Paragraph([sentence_case("; ".join(parts)) + "."])


def _flag_sentence(row: pd.Series) -> str:
    """How many test patients of one model were flagged, against how many not, with each
    group's median Dice."""
    n, flagged, others = int(row["n"]), int(row["flagged"]), int(row["not_flagged"])
    patients = f"the {plural(n, 'test patient')} of {row['run_id']}"
    if flagged == 0:
        return (
            f"the predictor flagged none of {patients} (median Dice "
            f"{number(row['median_dice_not_flagged'])})"
        )
    if others == 0:
        return (
            f"the predictor flagged all {patients} (median Dice "
            f"{number(row['median_dice_flagged'])})"
        )
    return (
        f"the predictor flagged {flagged} of {patients}, median Dice "
        f"{number(row['median_dice_flagged'])}, against {number(row['median_dice_not_flagged'])} "
        f"for the {others} not flagged"
    )


def sections(inputs: ReportInputs) -> list[Section]:
    """The section "Quality control of predictions" (a list of it), empty without a final model
    with a qc.csv."""
    if not inputs.final_qc:
        return []
    table = validation(inputs)
    folds = cross_validated(inputs)
    spaces = sorted(set(table["space"]))
    space = f"{spaces[0]} space" if len(spaces) == 1 else "the space given per row"
    source = layout.path(layout.TEST_PER_PATIENT, run="<run>")
    rhos = Table.of(
        "qc-rho",
        "Spearman's ρ between each quality-control measure and the per-patient foreground Dice "
        f"({space}) of the test patients, per final model, with its percentile-bootstrap 95 % "
        "confidence interval, its p-value and the number of patients with both values.",
        rho_frame(table, len(spaces) > 1),
        notes=[
            f"The interval resamples the patients with replacement ({RESAMPLES} resamples, "
            "seeded); resamples where ρ is undefined are dropped. An undefined ρ (fewer than "
            "3 patients, or a measure or the Dice constant over them, e.g. the agreement of a "
            "model of one member) is a dash, with the reason in the note.",
            "A measure that flags poor predictions has ρ > 0 for agreement and ρ < 0 for "
            "uncertainty and intensity distance; volume has no expected sign.",
        ],
    )
    flagged = table[table["measure"] == FLAG]
    flag_table = Table.of(
        "qc-flags",
        f"The test patients with a foreground Dice ({space}) per final model: how many its "
        "predictor flagged and how many it did not, and the median Dice of each group.",
        flag_frame(table),
    )
    blocks: list[Any] = [
        text(_measures_text(folds)),
        text(_calibration_text(folds)),
        text(
            "{rhos} sets each measure against the per-patient foreground Dice, in {space}, of "
            "the predictions the measures describe ({source}), over the test patients with "
            "both values; {flags} compares the flagged test patients with the others.",
            rhos=rhos,
            space=space,
            source=source,
            flags=flag_table,
        ),
        rhos,
        text(
            "{sentences} ({flags}).",
            sentences=sentence_case("; ".join(_flag_sentence(r) for _, r in flagged.iterrows())),
            flags=flag_table,
        ),
        flag_table,
    ]
    blocks += [_reading(run, rows) for run, rows in table.groupby("run_id", sort=False)]
    return [Section("prediction-qc", "Quality control of predictions", blocks)]
