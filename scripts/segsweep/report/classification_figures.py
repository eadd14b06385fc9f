"""Figures of the classification task's final models, after Kaliyugarsan 2019 (Figs 5.5, 5.7)
and Harrison 2018:

- ROC curves per split, one curve per final model with its bootstrap 95 % band (over patients)
  shaded, the chance diagonal, and the AUC with its interval in the legend: roc.png;
- confusion matrices, one per final model and split (rows the true class, columns the
  predicted one), each cell its count and its share of the row: confusion.png;
- the study probabilities of the positive class on the test set, by true class, with the
  decision threshold: probabilities.png;
- reliability diagrams per split (`segsweep.evaluate.calibration`): per bin of the study
  probability, the share of positive studies against the bin's mean probability, one line per
  final model with its ECE and bootstrap 95 % interval (over patients) in the legend beneath,
  the diagonal of perfect calibration, and the studies of each bin as bars: calibration.png;
(The gallery of a final model's most confident test errors is drawn by the final test, the one
stage that reads test images: `segsweep.evaluate.gallery`.)

Classes are ordered by their value in `data.labels`; the last one is the positive class. A
study is predicted positive iff its probability p_<positive> >= the model's threshold (chosen
on validation, stated in per_study.csv). Every figure is written through
`segsweep.plotting.save` (PNG, with SVG and PDF beside it).

`draw_figures` draws them with the sweep's figures (`segsweep.report.figures.sweep_figures`),
for the workflow's rule and for `python -m segsweep figures` alike.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from segsweep import layout
from segsweep.cli import add_sweep_options, sweep_options
from segsweep.evaluate.calibration import TOP_LABEL
from segsweep.evaluate.predictions import positive_column
from segsweep.numerals import ci_text, number, percent, plural
from segsweep.plotting import (
    FONT_SIZE,
    LINE_COLOUR,
    TEXT_WIDTH,
    TRAIN_COLOUR,
    level_colours,
    save,
)
from segsweep.report.figures import sweep_figures
from segsweep.sweep.grammar import sweep_runs, swept_names
from segsweep.sweep.pruning import halving, rung_epochs
from segsweep.vocabulary import model_label, pooled_score_label

SPLIT_TITLES = {"val": "Validation set", "test": "Test set"}
SPLIT_ORDER = ["val", "test"]
SHARE_COLOURS = LinearSegmentedColormap.from_list("share", ["#ffffff", TRAIN_COLOUR])
FIGURES = {  # the final models' figures by name
    "cls_roc": layout.ROC_FIGURE,
    "cls_confusion": layout.CONFUSION_FIGURE,
    "cls_probabilities": layout.PROBABILITY_FIGURE,
    "cls_calibration": layout.CALIBRATION_FIGURE,
}
# the analysis tables they show
TABLES = ("roc", "confusion", "classification_metrics", "calibration", "reliability")


def _splits(table: pd.DataFrame) -> list[str]:
    """The splits of a table: validation, test, then any other in order of appearance."""
    found = list(dict.fromkeys(table["split"].astype(str)))
    return [s for s in SPLIT_ORDER if s in found] + [s for s in found if s not in SPLIT_ORDER]


def _auc_interval(metrics: pd.DataFrame | None, model: str, split: str) -> str:
    """ " [low, high]" of the model's AUC on the split from classification_metrics.csv; "" when
    no table is given or it has no such row."""
    if metrics is None:
        return ""
    row = metrics[
        (metrics["model"].astype(str) == model)
        & (metrics["split"] == split)
        & (metrics["metric"] == "auc")
    ]
    return f" {ci_text(row['low'].iloc[0], row['high'].iloc[0])}" if len(row) else ""


def _split_counts(metrics: pd.DataFrame | None, split: str) -> str:
    """ " (12 studies, 9 patients)" of a split from classification_metrics.csv; "" without."""
    if metrics is None or not (metrics["split"] == split).any():
        return ""
    row = metrics[metrics["split"] == split].iloc[0]
    studies, patients = int(row["n_studies"]), int(row["n_patients"])
    return f" ({plural(studies, 'study', 'studies')}, {plural(patients, 'patient')})"


def roc_figure(roc: pd.DataFrame, out_png: Path, metrics: pd.DataFrame | None = None) -> None:
    """One panel per split of roc.csv (model, split, fpr, tpr, tpr_low, tpr_high, auc), one
    curve per model with its 95 % band of the true-positive rate shaded, and the chance
    diagonal. The legend gives each model's AUC, with its interval from `metrics`
    (classification_metrics.csv) when given; panel titles then count studies and patients."""
    splits = _splits(roc) if len(roc) else []
    models = list(dict.fromkeys(roc["model"].astype(str)))
    colours = level_colours(models)
    n = max(1, len(splits))
    fig = Figure(figsize=(min(TEXT_WIDTH, 3.15 * n), 3.3), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, split in zip(axes, splits, strict=False):
        in_split = roc[roc["split"] == split]
        for model in models:
            curve = in_split[in_split["model"].astype(str) == model].sort_values("fpr")
            if curve.empty:
                continue
            colour = colours[model]
            ax.fill_between(
                curve["fpr"],
                curve["tpr_low"],
                curve["tpr_high"],
                color=colour,
                alpha=0.2,
                linewidth=0,
            )
            label = f"{model}: AUC {number(curve['auc'].iloc[0])}"
            label += _auc_interval(metrics, model, split)
            ax.plot(curve["fpr"], curve["tpr"], color=colour, label=label)
        ax.plot([0, 1], [0, 1], linestyle="--", color="0.5", linewidth=0.8, label="chance")
        ax.set_title(SPLIT_TITLES.get(split, split) + _split_counts(metrics, split))
        ax.set_xlabel("1 − specificity")
        ax.set_ylabel("sensitivity")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
        # the curves keep to the upper left: the legend sits in the lower right
        ax.legend(loc="lower right", fontsize=FONT_SIZE - 2, frameon=True, framealpha=0.9)
    if not splits:
        axes[0].text(0.5, 0.5, "no ROC curves", ha="center", va="center")
        axes[0].axis("off")
    save(fig, out_png)


def _classes(confusion: pd.DataFrame) -> list[str]:
    """Class names in the order confusion.csv lists them (the classes' order)."""
    return list(
        dict.fromkeys([*confusion["true"].astype(str), *confusion["predicted"].astype(str)])
    )


def confusion_figure(confusion: pd.DataFrame, out_png: Path) -> None:
    """One confusion matrix per model (rows of panels) and split (columns) of confusion.csv
    (model, split, true, predicted, count): rows the true class, columns the predicted one,
    each cell its count and its share of the row (the row's studies of that true class),
    shaded by that share. A class without studies in a split has empty shares."""
    splits = _splits(confusion) if len(confusion) else []
    models = list(dict.fromkeys(confusion["model"].astype(str)))
    classes = _classes(confusion)
    k = max(1, len(classes))
    side = 0.55 * k + 1.3
    fig = Figure(
        figsize=(side * max(1, len(splits)), side * max(1, len(models))), layout="constrained"
    )
    axes = fig.subplots(max(1, len(models)), max(1, len(splits)), squeeze=False)
    for row, model in enumerate(models):
        for column, split in enumerate(splits):
            ax = axes[row, column]
            cells = confusion[
                (confusion["model"].astype(str) == model) & (confusion["split"] == split)
            ]
            counts = (
                cells.pivot_table(index="true", columns="predicted", values="count", aggfunc="sum")
                .reindex(index=classes, columns=classes)
                .fillna(0)
                .to_numpy(dtype=float)
            )
            totals = counts.sum(axis=1, keepdims=True)
            shares = np.divide(counts, totals, out=np.full_like(counts, np.nan), where=totals > 0)
            ax.imshow(np.nan_to_num(shares), cmap=SHARE_COLOURS, vmin=0, vmax=1)
            for i in range(k):
                for j in range(k):
                    share = shares[i, j]
                    label = f"{int(counts[i, j])}"
                    label += "" if np.isnan(share) else f"\n({percent(share)})"
                    dark = not np.isnan(share) and share > 0.6
                    ax.text(
                        j,
                        i,
                        label,
                        ha="center",
                        va="center",
                        color="white" if dark else "black",
                        fontsize=FONT_SIZE - 1,
                    )
            ax.set_xticks(range(k), classes)
            ax.set_yticks(range(k), classes, rotation=90, va="center")
            ax.set_xlabel("predicted class")
            ax.set_ylabel("true class")
            n = int(counts.sum())
            title = f"{SPLIT_TITLES.get(split, split)}, {plural(n, 'study', 'studies')}"
            ax.set_title(f"{model}\n{title}" if len(models) > 1 else title)
    if not models:
        axes[0, 0].text(0.5, 0.5, "no confusion matrices", ha="center", va="center")
        axes[0, 0].axis("off")
    save(fig, out_png)


def probability_figure(
    per_study: Mapping[str, pd.DataFrame], classes: list[str], out_png: Path
) -> None:
    """Histograms of the study probability of the positive class, one panel per model (label →
    its per_study.csv), stacked by true class (each in its colour), and the model's decision
    threshold (per_study.csv's `threshold`) as a dashed line; the legend right of the last."""
    column, colours = positive_column(classes), level_colours(classes)
    n = max(1, len(per_study))
    fig = Figure(figsize=(min(TEXT_WIDTH, 2.9 * n + 1.8), 2.8), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False, sharey=True)[0]
    bins = np.linspace(0, 1, 21)
    for i, (ax, (label, studies)) in enumerate(zip(axes, per_study.items(), strict=False)):
        values = [studies.loc[studies["true"].astype(str) == name, column] for name in classes]
        ax.hist(
            values,
            bins=bins,
            stacked=True,
            color=[colours[name] for name in classes],
            edgecolor="white",
            linewidth=0.5,
            label=[f"true {name} ({len(v)})" for name, v in zip(classes, values, strict=True)],
        )
        threshold = float(studies["threshold"].iloc[0]) if len(studies) else float("nan")
        if not np.isnan(threshold):
            ax.axvline(
                threshold, color=LINE_COLOUR, linestyle="--", label=f"threshold {number(threshold)}"
            )
        ax.set_title(f"{label}, {plural(len(studies), 'study', 'studies')}")
        ax.set_xlabel(f"study probability of {classes[-1]}")
        ax.set_xlim(0, 1)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(axis="y", alpha=0.3)
        if i == len(per_study) - 1:
            ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1))
    axes[0].set_ylabel("studies")
    if not per_study:
        axes[0].text(0.5, 0.5, "no final models", ha="center", va="center")
    save(fig, out_png)


def _calibration_axes(probability: str) -> tuple[str, str]:
    """(x, y) axis labels of a reliability diagram of calibration.csv's `probability`."""
    if probability == TOP_LABEL:
        return "mean confidence (top-label probability)", "observed accuracy"
    positive = probability.removeprefix("p_")
    return f"mean study probability of {positive}", f"observed share of {positive}"


def reliability_figure(reliability: pd.DataFrame, calibration: pd.DataFrame, out_png: Path) -> None:
    """One column per split of reliability.csv (model, split, bin, bin_low, bin_high, n_studies,
    mean_probability, observed): above, each model's observed frequency against the mean
    probability of its non-empty bins, and the diagonal of perfect calibration; beneath, the
    studies of each bin, the models' bars side by side. The legend beneath gives each model's
    ECE with its interval and the title the split's studies, from calibration.csv (model, split,
    n_studies, bins, probability, ece, ece_low, ece_high)."""
    splits = _splits(reliability) if len(reliability) else []
    models = list(dict.fromkeys(reliability["model"].astype(str)))
    colours = level_colours(models)
    n = max(1, len(splits))
    fig = Figure(figsize=(min(TEXT_WIDTH, 3.15 * n), 4.4), layout="constrained")
    axes = fig.subplots(2, n, squeeze=False, sharex="col", height_ratios=[3, 1])
    probability = calibration["probability"].iloc[0] if len(calibration) else ""
    x_label, y_label = _calibration_axes(str(probability))
    for column, split in enumerate(splits):
        diagram, counts = axes[0, column], axes[1, column]
        in_split = reliability[reliability["split"] == split]
        summary = calibration[calibration["split"] == split].set_index("model")
        diagram.plot(
            [0, 1], [0, 1], linestyle="--", color="0.5", linewidth=0.8, label="perfect calibration"
        )
        for i, model in enumerate(models):
            bins = in_split[in_split["model"].astype(str) == model].sort_values("bin")
            if bins.empty:
                continue
            filled = bins[bins["n_studies"] > 0]
            label = model
            if model in summary.index:
                row = summary.loc[model]
                label += f": ECE {number(row['ece'])} {ci_text(row['ece_low'], row['ece_high'])}"
            diagram.plot(
                filled["mean_probability"],
                filled["observed"],
                marker="o",
                markersize=3.5,
                color=colours[model],
                label=label,
            )
            width = (bins["bin_high"] - bins["bin_low"]) / len(models)
            counts.bar(
                bins["bin_low"] + width * i,
                bins["n_studies"],
                width=width,
                align="edge",
                color=colours[model],
                edgecolor="white",
                linewidth=0.5,
            )
        title = SPLIT_TITLES.get(split, split)
        if len(summary):
            title += f", {plural(int(summary['n_studies'].max()), 'study', 'studies')}"
        diagram.set_title(title)
        diagram.set_ylabel(y_label)
        diagram.set_xlim(0, 1)
        diagram.set_ylim(0, 1.01)
        diagram.grid(alpha=0.3)
        # points may lie anywhere around the diagonal: the legend goes beneath the column
        counts.legend(
            *diagram.get_legend_handles_labels(),
            loc="upper center",
            bbox_to_anchor=(0.5, -0.55),
            fontsize=FONT_SIZE - 2,
            frameon=False,
        )
        counts.set_xlabel(x_label)
        counts.set_ylabel("studies")
        counts.yaxis.set_major_locator(MaxNLocator(nbins=3, integer=True))
        counts.grid(axis="y", alpha=0.3)
    if not splits:
        for ax in axes[:, 0]:
            ax.axis("off")
        axes[0, 0].text(0.5, 0.5, "no reliability diagrams", ha="center", va="center")
    save(fig, out_png)


def draw_classification_figures(
    final: str | Path,
    tables: Mapping[str, str | Path],
    test_per_study: Mapping[str, str | Path],
    outputs: Mapping[str, str | Path],
) -> None:
    """The figures "cls_roc", "cls_confusion", "cls_probabilities" and "cls_calibration" of
    `outputs`, of the final models of final.csv (run_id = model id, group; labelled "id
    (group)"). `tables` holds roc.csv, confusion.csv, calibration.csv and reliability.csv by
    those names, and classification_metrics.csv (for the AUC intervals of the ROC legend and the
    studies and patients of its panels) where given; the per-study test tables are keyed by
    model id. The classes are confusion.csv's, in its order. (The gallery, which needs the test
    images, is drawn by the final test, per model.)"""
    models = pd.read_csv(final, dtype=str, keep_default_na=False)
    labels = {r.run_id: model_label(r.run_id, r.group) for r in models.itertuples(index=False)}
    relabel = {"model": labels}
    text = {"model": str, "true": str, "predicted": str}
    confusion = pd.read_csv(tables["confusion"], dtype=text, keep_default_na=False)
    metrics = None
    if "classification_metrics" in tables:
        metrics = pd.read_csv(tables["classification_metrics"], dtype={"model": str})
        metrics = metrics.replace(relabel)
    roc = pd.read_csv(tables["roc"], dtype={"model": str})
    roc_figure(roc.replace(relabel), Path(outputs["cls_roc"]), metrics)
    confusion_figure(confusion.replace(relabel), Path(outputs["cls_confusion"]))
    columns = {"study_id": str, "patient_id": str, "study_type": str, "true": str}
    studies = {
        labels[m]: pd.read_csv(test_per_study[m], dtype=columns, keep_default_na=False)
        for m in labels
    }
    probability_figure(studies, _classes(confusion), Path(outputs["cls_probabilities"]))
    named = {"model": str, "split": str, "probability": str}
    calibration = pd.read_csv(tables["calibration"], dtype=named).replace(relabel)
    reliability = pd.read_csv(tables["reliability"], dtype={"model": str}).replace(relabel)
    reliability_figure(reliability, calibration, Path(outputs["cls_calibration"]))
    print(f"wrote {len(outputs)} classification figures")


@dataclass(frozen=True)
class ClassificationFigureInputs:
    """What the figures show: the runs and configurations tables, the final models (final.csv),
    each run's selection.json (under successive halving its first rung's, as the sweep's tables
    compare) and training log (by run id), the analysis tables of `TABLES` by name, and each
    final model's test per_study.csv (by its id)."""

    runs: str | Path
    configurations: str | Path
    final: str | Path
    selections: Mapping[str, str | Path]
    train_logs: Mapping[str, str | Path]
    tables: Mapping[str, str | Path]
    test_per_study: Mapping[str, str | Path]


def draw_figures(
    config: dict[str, Any],
    sweep: dict[str, Any],
    given: ClassificationFigureInputs,
    outputs: Mapping[str, str | Path],
    curve: tuple[str, str],
) -> None:
    """The sweep's figures of `outputs` ("jitter_<name>", "training_curves" with `curve` the
    training log's validation metric and its name, "checkpoint_scores", "cost") and the final
    models' (`FIGURES`)."""
    sweep_figures(config, sweep, given, outputs, curve, pooled_score_label(config["selection"]))
    finals = {name: outputs[name] for name in FIGURES}
    draw_classification_figures(given.final, given.tables, given.test_per_study, finals)


def main(argv: list[str] | None, curve: tuple[str, str]) -> None:
    """Write the sweep's figures and the final models' ROC curves, confusion matrices, study
    probabilities and reliability diagrams of the classification run whose results folder is
    --results (`python -m segsweep figures`): the training curves show `curve` (log column,
    name)."""
    parser = argparse.ArgumentParser(prog="segsweep figures", description=main.__doc__)
    add_sweep_options(parser)
    config, sweep, results = sweep_options(parser.parse_args(argv))
    runs = [run.run_id for run in sweep_runs(config, sweep)]
    final = layout.under(results, layout.FINAL)
    finals = pd.read_csv(final, dtype={"run_id": str})["run_id"].tolist()

    def under(pattern: str, **wildcards: str) -> Path:
        return layout.under(results, pattern, **wildcards)

    compared = layout.SELECTION  # under halving the first rung's, as the analysis compares
    if halving(config, sweep):
        compared = layout.path(layout.at_rung(compared), epochs=str(rung_epochs(config, sweep)[0]))
    given = ClassificationFigureInputs(
        runs=under(layout.RUNS_TABLE),
        configurations=under(layout.CONFIGURATIONS_TABLE),
        final=final,
        selections={r: under(compared, run=r) for r in runs},
        train_logs={r: under(layout.RUN_LOG, run=r) for r in runs},
        tables={name: under(layout.TABLE, name=name) for name in TABLES},
        test_per_study={m: under(layout.TEST_PER_STUDY, run=m) for m in finals},
    )
    outputs = {f"jitter_{n}": under(layout.JITTER, name=n) for n in swept_names(sweep)}
    outputs |= {
        "training_curves": under(layout.TRAINING_CURVES),
        "checkpoint_scores": under(layout.CHECKPOINT_SCORES),
        "cost": under(layout.COST_FIGURE),
        **{name: under(pattern) for name, pattern in FIGURES.items()},
    }
    draw_figures(config, sweep, given, outputs, curve)
