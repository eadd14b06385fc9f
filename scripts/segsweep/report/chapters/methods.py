"""Chapter 3, Methods: the sweep and what every run shares, how a run's checkpoint and the final
models were chosen, the metrics with their conventions, and the statistics; written from the
configuration and the sweep."""

from __future__ import annotations

from typing import Any

import pandas as pd

from segsweep.config_schema import complete
from segsweep.numerals import plural
from segsweep.report.document import Chapter, Figure, Section, Table, text
from segsweep.report.inputs import ReportInputs
from segsweep.sweep.grammar import Run, sweep_runs, swept_names
from segsweep.sweep.stats import BOOTSTRAP_RESAMPLES
from segsweep.vocabulary import METRIC_NAMES, format_level, level_order


def selection_sentence(selection: dict[str, Any], checkpoint_every: Any = None) -> str:
    """The checkpoint-selection rule of config["selection"] as a sentence."""
    best = "highest" if selection.get("higher_is_better", True) else "lowest"
    level = {"patient": "per-patient (3D)", "slice": "per-slice"}.get(
        selection["level"], f"per-{selection['level']}"
    )
    metric = METRIC_NAMES.get(selection["metric"], selection["metric"])
    every = "every epoch" if checkpoint_every == 1 else f"every {checkpoint_every} epochs"
    saved = f"Checkpoints were saved {every}. " if checkpoint_every else ""
    return (
        f"{saved}For each run, the checkpoint with the {best} {selection['aggregate']} {level} "
        f"{metric} of the {selection['class']} class on the validation set was selected; this "
        "validation score is the run's score in all tables and figures of chapter 4."
    )


def final_sentence(final_config: dict[str, Any]) -> str:
    """How the final models were chosen, from config["final"]."""
    n_best = int(final_config.get("n_best", 1))
    best = "best run" if n_best == 1 else f"{n_best} best runs"
    text = f"The final models are the {best} overall on validation"
    group_by = final_config.get("group_by") or []
    if group_by:
        text += " and the best run for each combination of " + ", ".join(f"“{g}”" for g in group_by)
    return text + "; only these were evaluated on the test set."


def swept_frame(runs: list, sweep: dict[str, Any], base: dict[str, Any]) -> pd.DataFrame:
    """Swept hyperparameters with their levels and the value every other run keeps."""
    rows = []
    for name in swept_names(sweep):
        levels = level_order(pd.Series([run.values[name] for run in runs]))
        rows.append([name, ", ".join(format_level(v) for v in levels), format_level(base[name])])
    return pd.DataFrame(rows, columns=["Hyperparameter", "Levels", "Base value"])


def fixed_frame(sweep: dict[str, Any], defaults: dict[str, Any]) -> pd.DataFrame:
    """Settings shared by all runs: train defaults with the sweep's `fixed` overrides applied."""
    fixed = sweep.get("fixed") or {}
    swept = set(swept_names(sweep))
    rows = [
        [name, format_level(fixed.get(name, value)), "sweep: fixed" if name in fixed else "config"]
        for name, value in sorted(defaults.items())
        if name not in swept
    ]
    return pd.DataFrame(rows, columns=["Setting", "Value", "Set in"])


def metric_conventions(nsd_tolerance_mm: float) -> list[str]:
    """The metric definitions and empty conventions (`segsweep.metrics`,
    `segsweep.evaluate.distances`), with the NSD's tolerance in mm."""
    tau = format_level(float(nsd_tolerance_mm))
    return [
        "Metrics are computed per class and for the foreground (the union of all classes) from "
        "the confusion counts of each slice and of each patient's volume (per patient, 3D; the "
        "primary level): Dice (F1) = 2TP/(2TP+FP+FN), IoU = TP/(TP+FP+FN), sensitivity = "
        "TP/(TP+FN), specificity = TN/(TN+FP), precision = TP/(TP+FP), accuracy = "
        "(TP+TN)/(TP+FP+FN+TN) and F2 = 5TP/(5TP+4FN+FP) (Fβ with β = 2, weighting recall). "
        "Volumes are voxel counts times the voxel volume, in mL.",
        "Per patient, the surface distances HD95 and ASSD are computed in mm on the voxel grid "
        "with its spacing. Surface voxels are mask voxels with a face neighbour outside the mask; "
        "voxels beyond the image border count as outside, so a structure cut by the border has a "
        "surface along it. Distances run between voxel centres from each surface to the other. "
        "HD95 is the larger of the two directed 95th percentiles, ASSD the mean of the distances "
        "of both directions pooled. The normalised surface Dice (NSD, the boundary metric of "
        f"Metrics Reloaded) at a tolerance of τ = {tau} mm is the share of the surface voxels of "
        "reference and prediction together that lie within τ of the other's surface (distance "
        "at most τ; each surface voxel counts once, as MONAI's surface Dice without subvoxels). "
        "τ is in mm of the grid the metric is computed on, the cropped grid in the processed "
        "space and the original image in the native space, so it is the same physical tolerance "
        "in both (metrics.nsd_tolerance_mm). Volumes and distances use the spacing each image "
        "records; a subject without a known spacing is an error, never measured as if its voxels "
        "were 1 mm.",
        "Empty conventions: when reference and prediction are both empty, Dice, IoU, F2, "
        "sensitivity, precision, HD95, ASSD and NSD are undefined; such slices or patients are "
        "left out of means and medians but counted. An empty reference with false positives "
        "scores a Dice, IoU, F2 and precision of 0; a missed structure (empty prediction) scores "
        "0 sensitivity. When exactly one of reference and prediction is empty, HD95 and ASSD take "
        "the worst case, never an undefined value: the length of the image diagonal in mm, the "
        "square root of the summed squared extents (voxels times spacing per axis) of the grid "
        "the distance is computed on (the cropped grid in the processed space, the original "
        "image in the native space); the NSD is then 0. Specificity is undefined only when the "
        "reference covers every voxel.",
    ]


def nsd_tolerance(config: dict[str, Any]) -> float:
    """The NSD's tolerance in mm of a config (the schema's default where it has no `metrics`)."""
    return complete(config.get("metrics") or {}, "metrics")["nsd_tolerance_mm"]


def statistics_text(unit: str = "run") -> str:
    return (
        "Statistics: the effect of each swept hyperparameter is tested with a Kruskal–Wallis "
        f"test over the {unit}s' scores; the best {unit}s and the final models are compared on "
        "paired per-patient scores with a Wilcoxon signed-rank test (two models) or a Friedman "
        "test followed by pairwise Wilcoxon tests with Holm's correction (more). Means and "
        "differences of medians carry percentile bootstrap 95 % confidence intervals over "
        f"patients ({BOOTSTRAP_RESAMPLES} resamples, seeded), and the ranking of the best "
        f"{unit}s is resampled the same way to show how often each would rank first."
    )


def cross_validation_text(config: dict[str, Any]) -> str | None:
    """How cross-validation trains, scores and tests a configuration (None without folds)."""
    folds = int(config.get("split", {}).get("folds") or 0)
    if not folds:
        return None
    selection = config["selection"]
    metric = METRIC_NAMES.get(selection["metric"], selection["metric"])
    final = config.get("final", {}).get("model", "ensemble")
    reported = "the ensemble" if final == "ensemble" else "its best fold"
    sites = config.get("split", {}).get("fold_sites")
    design = (
        f"leave-one-site-out cross-validation: {folds} runs, one per site "
        f"({', '.join(sites)}), each trained on the development subjects of the other sites "
        "and validated on its own site's, so that every validation score is that of a site "
        "the model never saw, and choosing its checkpoint on that site"
        if sites
        else f"{folds}-fold cross-validation: {folds} runs, each trained on the development "
        "subjects of the other folds and validated on its own fold, and choosing its "
        "checkpoint on that fold"
    )
    return (
        f"Every configuration was trained with {design}. A configuration's score is the "
        f"{selection['aggregate']} per-{selection['level']} {metric} of the "
        f"{selection['class']} class over its pooled out-of-fold scores: every development "
        "patient scored once, by the fold model that never trained on it. A transfer run "
        "starts from the same fold of its source configuration, and nested training subsets "
        "are drawn within each fold's training subjects, so no validation patient of a fold "
        "reaches its weights. On the test set, a final configuration is the ensemble of its "
        f"{folds} fold models (the mean of their softmax probabilities, as nnU-Net ensembles "
        "its folds) and, for comparison, its best single fold; the final results reported "
        f"are {reported}'s (final.model)."
    )


def sweep_text(runs: list[Run], sweep: dict[str, Any]) -> str:
    """How the runs come about: the grids, their combinations and seeds."""
    runs_text = plural(len(runs), "training run")
    seeds_text = plural(int(sweep.get("repeats", 1)), "seed")
    grids = sorted((sweep.get("grids") or {}).keys())
    if grids:
        how = (
            f"The sweep has {runs_text}: every combination of the values in each of its "
            f"{plural(len(grids), 'grid')} ({', '.join(grids)}), with {seeds_text} per "
            "combination; a combination reached from two grids is one run."
        )
    else:
        how = f"The sweep has {runs_text}: the base settings, with {seeds_text}."
    return (
        how + " Each run is identified by the hyperparameter values that differ from the base run."
    )


def chapter(inputs: ReportInputs) -> Chapter:
    config, sweep = inputs.config, inputs.sweep
    runs = sweep_runs(config, sweep)
    base = {**config["train"], **(sweep.get("fixed") or {})}
    selection = config["selection"]
    fixed = Table.of(
        "fixed",
        "Settings shared by all runs (train defaults, with the sweep's fixed overrides).",
        fixed_frame(sweep, config["train"]),
    )
    swept = (
        Table.of(
            "swept",
            "Swept hyperparameters, their levels and the value of the base run.",
            swept_frame(runs, sweep, base),
        )
        if swept_names(sweep)
        else None
    )
    if swept is not None:
        tables = text(
            "{how} {swept} lists the swept hyperparameters and their levels, and {fixed} lists "
            "the settings shared by all runs.",
            how=sweep_text(runs, sweep),
            swept=swept,
            fixed=fixed,
        )
    else:
        tables = text(
            "{how} No hyperparameter was swept; {fixed} lists the settings shared by all runs.",
            how=sweep_text(runs, sweep),
            fixed=fixed,
        )
    blocks: list = [tables, *([swept] if swept else []), fixed]
    choice = selection_sentence(selection, base.get("checkpoint_every"))
    png = inputs.figures.get("checkpoint_scores")
    if png is not None:
        checkpoints = Figure.of(
            "checkpoint-scores",
            f"The {inputs.thesis.score_label(selection)} of every kept checkpoint of every run on "
            "the validation set over training; the selected checkpoint of each run is ringed.",
            png,
        )
        blocks += [
            text(
                "{choice} {figure} shows the score of every checkpoint over training.",
                choice=choice,
                figure=checkpoints,
            ),
            checkpoints,
        ]
    else:
        blocks.append(text(choice))
    blocks.append(text(final_sentence(config.get("final", {}))))
    folds = cross_validation_text(config)
    if folds:
        blocks.append(text(folds))
    unit = "configuration" if folds else "run"
    metrics = Section(
        "metrics",
        "Metrics and their conventions",
        [
            *(text(p) for p in metric_conventions(nsd_tolerance(config))),
            text(statistics_text(unit)),
        ],
    )
    return Chapter("methods", "3", "Methods", [*blocks, metrics])
