"""Chapter 4, sections 4.3 and 4.4: the final models on the validation and test sets (PET/CT
thesis Tables 5.14–5.19, Figs. 5.4–5.5, with per-class tables, both spaces and paired tests) and
the outlines of test patients and predictions of unlabelled subjects (Figs. 5.9–5.22)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from markupsafe import Markup

from segsweep import layout
from segsweep.labels import FOREGROUND
from segsweep.numerals import NA, ci_text, integer, number, plural
from segsweep.report.chapters.methods import nsd_tolerance
from segsweep.report.chapters.sweep_results import cross_validated, tests_frame
from segsweep.report.document import Figure, Section, Table, text
from segsweep.report.inputs import ReportInputs, read_table
from segsweep.sweep.analysis import CLASS_METRICS, NATIVE_TEST
from segsweep.vocabulary import METRIC_NAMES, format_level

SPLIT_NAMES = {"val": "validation set", "test": "test set"}  # with folds: out of fold
SPACE_ORDER = ["processed", "native"]


def per_patient_frame(table: pd.DataFrame, run_ids: list[str]) -> tuple[pd.DataFrame, dict]:
    """Patients × final models as "mean (median)", the best mean per patient in bold.

    Bold marks every model tied for the highest mean Dice of a patient, and only when two or
    more models have a defined mean for that patient. Also returns each model's number of wins.
    """
    patients = sorted(table["patient_id"].astype(str).unique(), key=_natural)
    cells = table.assign(patient_id=table["patient_id"].astype(str)).set_index(
        ["patient_id", "run_id"]
    )
    wins = dict.fromkeys(run_ids, 0)
    rows = []
    for patient in patients:
        means = {r: cells["mean"].get((patient, r), float("nan")) for r in run_ids}
        defined = {r: m for r, m in means.items() if not pd.isna(m)}
        top = max(defined.values()) if len(defined) >= 2 else None
        row = [patient]
        for run in run_ids:
            cell = f"{number(means[run])} ({number(cells['median'].get((patient, run)))})"
            if top is not None and run in defined and defined[run] == top:
                wins[run] += 1
                cell = Markup("<strong>{}</strong>").format(cell)
            row.append(cell)
        rows.append(row)
    return pd.DataFrame(rows, columns=["Patient", *run_ids]), wins


def _natural(text: str) -> tuple:
    """Sort key that puts patient 9 before patient 10."""
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


def distribution_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Per final model: the distribution of per-slice foreground Dice."""
    rows = [
        [
            row["run_id"],
            integer(row["slices"]),
            integer(row["undefined"]),
            *(number(row[c]) for c in ["mean", "median", "std", "q25", "q75"]),
        ]
        for _, row in table.iterrows()
    ]
    columns = ["Model", "Slices", "Undefined", "Mean", "Median", "STD", "25 %", "75 %"]
    return pd.DataFrame(rows, columns=columns)


def summary_cell(mean: Any, median: Any, std: Any, low: Any = None, high: Any = None) -> str:
    """One "mean (median) ± std" cell (thesis Tables 5.15/5.18), with the bootstrap interval of
    the mean "[low, high]" after it when given."""
    if pd.isna(mean):
        return NA
    cell = f"{number(mean)} ({number(median)}) ± {number(std)}"
    return cell if low is None else f"{cell} {ci_text(low, high)}"


def metrics_frame(table: pd.DataFrame, run_ids: list[str]) -> pd.DataFrame:
    """Metrics (rows) × final models (columns) as "mean (median) ± std" over patients."""
    rows = []
    for metric in dict.fromkeys(table["metric"]):
        row = [METRIC_NAMES.get(metric, metric)]
        for run in run_ids:
            match = table[(table["metric"] == metric) & (table["run_id"] == run)]
            stats = ["mean", "median", "std", "ci_low", "ci_high"]
            row.append(summary_cell(*match[stats].iloc[0]) if len(match) else NA)
        rows.append(row)
    return pd.DataFrame(rows, columns=["Metric", *run_ids])


def _space_key(space: str) -> tuple[int, str]:
    """Processed space first, then native, then any other in alphabetical order."""
    return (SPACE_ORDER.index(space) if space in SPACE_ORDER else len(SPACE_ORDER), space)


def _class_cells(cells: pd.DataFrame, key: tuple[str, str, str]) -> list[str]:
    """Patients and a "mean (median) ± std" cell per class metric of (run, space, class)."""
    values = [
        summary_cell(*cells.loc[(*key, metric), ["mean", "median", "std"]])
        if (*key, metric) in cells.index
        else NA
        for metric in CLASS_METRICS
    ]
    return [integer(cells.loc[(*key, CLASS_METRICS[0]), "patients"]), *values]


def class_frame(table: pd.DataFrame, run_ids: list[str]) -> pd.DataFrame:
    """class_summary.csv rows of one split: per final model, space and class (in the CSV's
    order), the number of patients and Dice, IoU, HD95 and NSD as "mean (median) ± std"; the Space
    column only when the split was scored in more than one space."""
    spaces = sorted(dict.fromkeys(table["space"]), key=_space_key)
    cells = table.set_index(["run_id", "space", "class", "metric"])
    rows = [
        [run, space, name, *_class_cells(cells, (run, space, name))]
        for run in run_ids
        for space in spaces
        for name in dict.fromkeys(table["class"])
        if (run, space, name, CLASS_METRICS[0]) in cells.index
    ]
    columns = ["Model", "Space", "Class", "Patients", *(METRIC_NAMES[m] for m in CLASS_METRICS)]
    frame = pd.DataFrame(rows, columns=columns)
    return frame if len(spaces) > 1 else frame.drop(columns="Space")


def class_extremes(table: pd.DataFrame, run_ids: list[str]) -> list[dict[str, str]]:
    """Per final model with two or more classes of defined mean Dice in the processed space
    (the foreground left out): the classes with the highest and the lowest mean Dice."""
    dice = table[
        (table["metric"] == "dice")
        & (table["space"] == "processed")
        & (table["class"] != FOREGROUND)
    ].dropna(subset=["mean"])
    found = []
    for run in run_ids:
        ordered = dice[dice["run_id"] == run].sort_values("mean", ascending=False, kind="stable")
        if len(ordered) >= 2:
            best, worst = ordered.iloc[0], ordered.iloc[-1]
            found.append(
                {
                    "run": run,
                    "best": str(best["class"]),
                    "best_mean": number(best["mean"]),
                    "worst": str(worst["class"]),
                    "worst_mean": number(worst["mean"]),
                }
            )
    return found


def _final_split(inputs: ReportInputs, split: str, final_ids: list[str], data) -> Section:
    """The tables and figures of the final models on one split, and the sentence that cites
    them."""
    name = SPLIT_NAMES[split]
    external = list(inputs.config.get("final", {}).get("external") or {}) if split == "test" else []
    models = [*final_ids, *external]  # external methods: scored on test, in native space
    tau = format_level(nsd_tolerance(inputs.config))
    distribution = Table.of(
        f"distribution-{split}",
        f"Distribution of the per-slice foreground Dice of the final models on the {name}.",
        distribution_frame(data["distribution"][data["distribution"]["split"] == split]),
        notes=[
            "Slices where reference and prediction are both empty have no Dice: they are "
            "counted as undefined and left out of the statistics."
        ],
    )
    in_split = data["summary"][data["summary"]["split"] == split]

    def beside(space: str) -> list[str]:
        """The models scored in `space`: external methods only in native space."""
        return [m for m in models if m in set(in_split.loc[in_split["space"] == space, "run_id"])]

    metrics = [
        Table.of(
            f"metrics-{split}-{space}",
            f"All per-patient foreground metrics of the final models on the {name} "
            f"({space} space)"
            + (", beside the external methods" if set(beside(space)) & set(external) else "")
            + ".",
            metrics_frame(in_split[in_split["space"] == space], beside(space)),
            notes=[
                "The format is “mean (median) ± std” over patients, with the bootstrap 95 % "
                "confidence interval of the mean in brackets."
            ],
        )
        for space in sorted(dict.fromkeys(in_split["space"]), key=_space_key)
    ]
    split_classes = data["classes"][data["classes"]["split"] == split]
    classes = Table.of(
        f"classes-{split}",
        f"Per-class per-patient Dice, IoU, HD95 and NSD (τ = {tau} mm) of the final models on the "
        f"{name}, for every class a model predicts and the foreground (the union of its "
        "classes).",
        class_frame(split_classes, models),
        notes=[
            "The format is “mean (median) ± std” over the patients; patients where a class is "
            "absent from both reference and prediction are counted but have no value."
        ],
    )
    per_patient = data["per_patient"]
    frame, wins = per_patient_frame(per_patient[per_patient["split"] == split], final_ids)
    notes = ["The format is “mean (median)” of the per-slice foreground Dice."]
    if len(final_ids) > 1:
        notes.append("The model with the highest mean Dice for the patient is in bold.")
    patients = Table.of(
        f"per-patient-{split}",
        f"Mean and median Dice per slice of the final models for each patient of the {name}.",
        frame,
        notes=notes,
    )
    split_tests = data["tests"][data["tests"]["split"] == split]
    tests = (
        Table.of(
            f"tests-{split}",
            f"Paired tests of the final models on the per-patient foreground Dice of the {name}, "
            "with the median of the per-patient differences and its bootstrap 95 % confidence "
            "interval.",
            tests_frame(split_tests),
            notes=[
                "Wilcoxon signed-rank for two models; for more, Friedman and pairwise Wilcoxon "
                "tests with Holm's correction."
            ],
        )
        if len(split_tests)
        else None
    )
    histogram = Figure.of(
        f"histogram-{split}",
        f"Histogram of the per-slice foreground Dice of each final model on the {name}; the "
        "orange line marks the median.",
        inputs.figures[f"histogram_{split}"],
    )
    boxplot = Figure.of(
        f"boxplot-{split}",
        f"Dice per slice for each patient of the {name}, one panel per final model. The line in "
        "each box is the median, the box spans the 25% to 75% quantiles, the whiskers reach the "
        "furthest slice within 1.5 times the interquartile range and outliers beyond are marked "
        "with diamonds. Slices where reference and prediction are both empty have no Dice and "
        "are not shown.",
        inputs.figures[f"boxplot_{split}"],
    )
    n = len(frame)
    cited = text(
        "On the {name} ({patients}), {distribution} gives the distribution of the per-slice "
        "Dice, {metrics} every metric per patient, {classes} the Dice, IoU, HD95 and NSD per "
        "class, "
        "{table} the per-patient Dice",
        name=name,
        patients=plural(n, "patient"),
        distribution=distribution,
        metrics=metrics,
        classes=classes,
        table=patients,
    )
    if tests is not None:
        cited.parts += text(
            " and {tests} the paired tests between the final models", tests=tests
        ).parts
    cited.parts += text(
        "; {histogram} and {boxplot} show the per-slice Dice. {comparison}",
        histogram=histogram,
        boxplot=boxplot,
        comparison=_wins_sentence(wins, n),
    ).parts
    for found in class_extremes(split_classes, final_ids):
        cited.parts.append(
            f" In the processed space, {found['run']} segmented {found['best']} best (mean Dice "
            f"{found['best_mean']}) and {found['worst']} worst ({found['worst_mean']})."
        )
    blocks = [cited, distribution, *metrics, classes, patients, *([tests] if tests else [])]
    native_tests = data["tests"][data["tests"]["split"] == NATIVE_TEST]
    if external and len(native_tests):
        compared = Table.of(
            "tests-external",
            "Paired tests of the final models and the external "
            f"{'method' if len(external) == 1 else 'methods'} ({', '.join(external)}) on the "
            "per-patient "
            f"foreground Dice of the {name} in native space, the space they share, with the "
            "median of the per-patient differences and its bootstrap 95 % confidence interval.",
            tests_frame(native_tests),
            notes=[
                "Wilcoxon signed-rank; for more than two models, Friedman and pairwise "
                "Wilcoxon tests with Holm's correction."
            ],
        )
        n_native = int(native_tests["n"].max()) if "n" in native_tests else 0
        boxes = Figure.of(
            "boxplot-external",
            f"Foreground Dice per patient of the {name} in native space, one box per final "
            "model and external method, each patient a point. The line in each box is the "
            "median, the box spans the 25% to 75% quantiles and the whiskers reach the furthest "
            "patient within 1.5 times the interquartile range.",
            inputs.figures["boxplot_test_native"],
        )
        blocks += [
            text(
                "The external {methods} {names} {were} scored on the same {patients} with the "
                "same metrics, in native space (the tables above); {boxes} shows the Dice per "
                "patient and {table} compares them with the final models.",
                methods="method" if len(external) == 1 else "methods",
                names=", ".join(external),
                were="was" if len(external) == 1 else "were",
                patients=plural(n_native, "test patient"),
                boxes=boxes,
                table=compared,
            ),
            boxes,
            compared,
        ]
    return Section(
        f"final-{split}", name[:1].upper() + name[1:], [*blocks, histogram, boxplot], level=3
    )


def _wins_sentence(wins: dict[str, int], n_patients: int) -> str:
    if len(wins) <= 1:
        return "With a single final model there is no paired comparison."
    counts = [f"{run} for {n}" for run, n in wins.items()]
    listed = counts[0] if len(counts) == 1 else ", ".join(counts[:-1]) + " and " + counts[-1]
    return (
        f"The highest mean Dice per patient was reached by {listed} of the {n_patients} patients."
    )


def final_models(inputs: ReportInputs, final_ids: list[str]) -> Section:
    """Section 4.3: the final models on validation and, once, on test."""
    tables = inputs.tables
    data = {
        "per_patient": read_table(
            tables["final_per_patient"], text=["patient_id", "run_id", "split"]
        ),
        "distribution": read_table(tables["slice_distribution"], text=["run_id", "split"]),
        "summary": read_table(
            tables["metrics_summary"], text=["run_id", "split", "space", "metric"]
        ),
        "tests": read_table(tables["final_tests"], text=["split", "test", "a", "b"]),
        "classes": read_table(
            tables["class_summary"], text=["run_id", "split", "space", "class", "metric"]
        ),
    }
    folds = cross_validated(inputs)
    validation = (
        "on the validation folds (out of fold: each development patient by the fold model that "
        f"did not train on it) and, once, on the test set by the ensemble of its {folds} fold "
        "models (the mean of their softmax probabilities)"
        if folds
        else "per slice on the validation set and, once, on the test set"
    )
    intro = text(
        "The final models were evaluated {validation}. For each patient the tables give the "
        "mean and the median of the per-slice Dice; the boxplots show its distribution. On the "
        "test set, the metrics are given in two spaces: the processed space the networks see "
        "(cropped, slice-harmonised) and each subject's native space, where the exported "
        "prediction is compared with the original mask within the labelled region, so that "
        "what cropping and slice decimation hide becomes visible.",
        validation=validation,
    )
    blocks: list[Any] = [intro, *ensemble_blocks(inputs)]
    blocks += [_final_split(inputs, split, final_ids, data) for split in SPLIT_NAMES]
    return Section("final-models", "Final models on validation and test", blocks)


def ensemble_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Per final model: the ensemble's and the best fold's mean Dice on test with intervals, and
    the median paired difference with its interval."""
    rows = [
        [
            row.run_id,
            integer(row.patients),
            f"{number(row.ensemble)} {ci_text(row.ensemble_low, row.ensemble_high)}",
            f"{number(row.best_fold)} {ci_text(row.best_fold_low, row.best_fold_high)}",
            number(row.median_difference),
            ci_text(row.ci_low, row.ci_high),
        ]
        for row in table.itertuples(index=False)
    ]
    columns = ["Model", "Patients", "Ensemble", "Best fold", "Δ median", "95 % CI"]
    return pd.DataFrame(rows, columns=columns)


def ensemble_blocks(inputs: ReportInputs) -> list:
    """With folds: the fold ensemble against the best single fold on test, and which of the
    two the reported results are."""
    if not cross_validated(inputs):
        return []
    table = read_table(inputs.tables["ensemble_vs_fold"], text=["run_id"])
    if not len(table):
        return []
    compared = Table.of(
        "ensemble-vs-fold",
        "Mean per-patient foreground Dice on the test set of each final model's fold ensemble "
        "and of its best fold alone (the fold with the best validation score), each with its "
        "bootstrap 95 % confidence interval, and the median of the per-patient differences "
        "(ensemble − best fold) with its interval.",
        ensemble_frame(table),
    )
    reported = inputs.config.get("final", {}).get("model", "ensemble")
    which = "the fold ensemble"
    if reported == "best_fold":  # the exported predictions stay the ensemble's
        which = "the best fold; the predictions exported and outlined are the ensemble's"
    return [
        text(
            "{table} compares the fold ensemble with the best single fold on the {patients} of "
            "the test set; the results below are those of {which} (final.model: {reported}).",
            table=compared,
            patients=plural(int(table["patients"].max()), "patient"),
            which=which,
            reported=reported,
        ),
        compared,
    ]


def _outline_caption(run: str, png: Path) -> tuple[str, str]:
    """(key, caption) of an outline figure named outlines_<i>_<tags>_<patient>.png."""
    _, _, tag, patient = png.stem.split("_", 3)
    tags = [t for t in tag.split("-") if t != "patient"]
    what = f"the {' and '.join(tags)} test patient by Dice" if tags else "a chosen patient"
    caption = (
        f"Final model {run} on {patient} ({what}): up to twelve linearly spaced slices with the "
        "reference outlined in green and the prediction in orange."
    )
    return f"outlines-{run}-{patient}", caption


def visualisation(inputs: ReportInputs, final_ids: list[str]) -> Section:
    """Section 4.4: outlines of test patients and predictions of unlabelled subjects."""
    outlines = [
        Figure.of(*_outline_caption(run, png), png)
        for run in final_ids
        for png in sorted(Path(inputs.outlines[run]).glob("outlines_*.png"))
    ]
    if outlines:
        blocks: list[Any] = [
            text(
                "{figures} {shows} up to twelve linearly spaced slices of test patients with the "
                "reference and the prediction of the final models outlined.",
                figures=outlines,
                shows="shows" if len(outlines) == 1 else "show",
            ),
            *outlines,
        ]
    else:
        blocks = [text("No outline figures were drawn.")]
    unlabelled = [
        Figure.of(
            f"unlabelled-{run}",
            f"Predictions of final model {run} for subjects without a reference: the middle "
            "slice of each cropped image with the predicted outline in orange.",
            inputs.unlabelled[run],
        )
        for run in final_ids
        if run in inputs.unlabelled and Path(inputs.unlabelled[run]).is_file()
    ]
    if unlabelled:
        blocks += [
            text(
                "Subjects without a reference were predicted by the final models ({figures}). "
                "Every prediction is also exported as a NIfTI label map in the subject's "
                "original geometry (crop, slice harmonisation and reorientation undone), under "
                "{native} and {unlabelled}, so it overlays on the raw image in a viewer.",
                native=layout.path(layout.PREDICTIONS_NATIVE, run="<run>"),
                unlabelled=layout.path(layout.UNLABELLED, run="<run>"),
                figures=unlabelled,
            ),
            *unlabelled,
        ]
    return Section("visualisation", "Visualisation", blocks)
