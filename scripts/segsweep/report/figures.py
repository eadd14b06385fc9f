"""Figures of the sweep, after the PET/CT thesis's chapter 5 (seaborn on matplotlib's Agg backend).

- jitter plots of the validation score per level of each swept hyperparameter, coloured by a
  second one (thesis Fig. 5.2/5.3): results/figures/jitter_{name}.png;
- per-patient boxplots of per-slice foreground Dice, one panel per final model, on validation and
  on the test set (Fig. 5.5): boxplot_val.png, boxplot_test.png;
- training curves of the final models: rolling mean of the training loss with ±1σ and ±2σ bands,
  validation loss as points, and validation Dice (Fig. 5.1): training_curves.png;
- histograms of per-slice foreground Dice per final model (Fig. 5.4): histogram_{split}.png;
- checkpoint scores over training for every run, the selected checkpoint marked:
  checkpoint_scores.png;
- validation score against training cost (GPU hours, else wall-clock hours) for every
  configuration, its Pareto front as a step line, the final models labelled, under successive
  halving the pruned configurations with their own marker: cost.png;
(The outlines of test patients are drawn by the final-model stage, `segsweep.evaluate.outlines`,
the only one that sees test images.)

Every figure is written as PNG (150 dpi) with SVG (the thesis HTML and PDF) and PDF (the LaTeX
kit) beside it, fitted to the page's text width, `segsweep.plotting`. Jitter is drawn from a
fixed seed, so reruns draw identical figures.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from segsweep import layout
from segsweep.cli import add_sweep_options, sweep_options
from segsweep.io.records import read_json
from segsweep.labels import FOREGROUND
from segsweep.plotting import (
    FILL_COLOUR,
    LINE_COLOUR,
    TRAIN_COLOUR,
    VAL_COLOUR,
    level_colours,
    save,
)
from segsweep.sweep.analysis import configured_pairs, hue_partner, read_tables
from segsweep.sweep.cost import MEASURES, cost_points
from segsweep.sweep.grammar import configurations, sweep_runs, swept_names
from segsweep.sweep.pruning import first_rung_text, halving, rung_epochs
from segsweep.sweep.sites import labelled_sites, site_of
from segsweep.vocabulary import format_level, level_order, model_label, score_label

JITTER_SEED = 0


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed numpy's global generator (seaborn jitters with it) and restore it afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def jitter_plot(
    runs_df: pd.DataFrame,
    name: str,
    hue: str | None,
    out: Path,
    ylabel: str = "score",
    title: str = "",
) -> None:
    """One point per run at its level of `name`, jittered sideways, coloured by `hue`; `title`
    (none when empty) says what is compared, e.g. at which rung of successive halving."""
    order = [format_level(v) for v in level_order(runs_df[name])]
    data = runs_df.assign(_x=runs_df[name].map(format_level))
    kwargs: dict[str, Any] = {}
    if hue is not None:
        data["_hue"] = data[hue].map(format_level)
        hue_order = [format_level(v) for v in level_order(data[hue])]
        kwargs = {"hue": "_hue", "hue_order": hue_order, "palette": level_colours(hue_order)}
    fig = Figure(figsize=(max(4.0, 1.1 * len(order) + 2.5), 3.6))
    ax = fig.subplots()
    with _seeded(JITTER_SEED):
        sns.stripplot(
            data=data,
            x="_x",
            y="score",
            order=order,
            jitter=0.25,
            size=6,
            alpha=0.85,
            ax=ax,
            **kwargs,
        )
    ax.set_xlabel(name)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    if hue is not None:
        ax.legend(title=hue, frameon=False, bbox_to_anchor=(1.01, 1), loc="upper left")
    save(fig, out)


def boxplot(per_slice: dict[str, pd.DataFrame], out: Path, title: str) -> None:
    """Per-patient boxplots of per-slice foreground Dice, one panel per model (label → slices).

    Boxes span the quartiles with the median line; whiskers reach the furthest slice within 1.5
    IQR; slices beyond are outliers, drawn as diamonds (thesis Fig. 5.5). Slices without a defined
    Dice (reference and prediction both empty) are not drawn.
    """
    n = max(1, len(per_slice))
    fig = Figure(figsize=(8, 2.8 * n), layout="tight")
    axes = fig.subplots(n, 1, squeeze=False, sharey=True)
    for ax, (label, slices) in zip(axes[:, 0], per_slice.items(), strict=False):
        data = slices[slices["class"] == FOREGROUND].dropna(subset=["dice"])
        order = sorted(data["patient_id"].astype(str).unique())
        sns.boxplot(
            data=data.assign(patient_id=data["patient_id"].astype(str)),
            x="patient_id",
            y="dice",
            order=order,
            whis=1.5,
            color=FILL_COLOUR,
            linecolor=LINE_COLOUR,
            ax=ax,
            flierprops={"marker": "D", "markersize": 4, "markerfacecolor": LINE_COLOUR},
        )
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("patient")
        ax.set_ylabel("Dice per slice")
        ax.set_ylim(-0.03, 1.03)
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    if not per_slice:
        axes[0, 0].text(0.5, 0.5, "no final models", ha="center", va="center")
    fig.suptitle(title, fontsize=10)
    save(fig, out)


def native_boxplot(per_patient: dict[str, pd.DataFrame], out: Path) -> None:
    """Per-patient foreground Dice on test in native space, one box per model (label → its
    per_patient.csv rows) with every patient drawn as a point: the one space in which the final
    models and external methods are scored alike. Undefined Dice is not drawn."""
    rows = [
        table[(table["class"] == FOREGROUND) & (table["space"] == "native")]
        .dropna(subset=["dice"])
        .assign(model=label)
        for label, table in per_patient.items()
    ]
    data = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["model", "dice"])
    fig = Figure(figsize=(1.6 + 1.4 * max(1, len(per_patient)), 3.6), layout="tight")
    ax = fig.subplots()
    order = list(per_patient)
    sns.boxplot(data=data, x="model", y="dice", order=order, color=FILL_COLOUR, whis=1.5,
                linecolor=LINE_COLOUR, showfliers=False, ax=ax)  # fmt: skip
    sns.stripplot(data=data, x="model", y="dice", order=order, color=LINE_COLOUR, size=4,
                  jitter=0.15, ax=ax)  # fmt: skip
    ax.set_xlabel("")
    ax.set_ylabel("Dice per patient (native space)")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(axis="y", alpha=0.3)
    patients = data["patient_id"].nunique() if len(data) else 0
    ax.set_title(f"Test set, {patients} patient{'s' * (patients != 1)}", fontsize=10)
    save(fig, out)


def site_boxplot(per_patient: dict[str, pd.DataFrame], sites: dict[str, str], out: Path) -> None:
    """Per-patient foreground Dice on test (processed space) by site, one box per site and
    final model (label → its per_patient.csv rows), every patient drawn as a point; each site's
    tick names its n. Patients without a site are not drawn."""
    rows = [
        table[(table["class"] == FOREGROUND) & (table["space"] == "processed")]
        .assign(model=label, site=lambda t: t["patient_id"].astype(str).map(sites))
        .dropna(subset=["dice", "site"])
        for label, table in per_patient.items()
    ]
    data = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    columns = ["model", "site", "patient_id", "dice"]
    data = data[columns] if len(data) else pd.DataFrame(columns=columns)
    order = sorted(data["site"].unique())
    counts = data.drop_duplicates(["site", "patient_id"])["site"].value_counts()
    fig = Figure(figsize=(1.8 + 1.3 * max(1, len(order)), 3.6), layout="tight")
    ax = fig.subplots()
    hue = "model" if len(per_patient) > 1 else None
    sns.boxplot(data=data, x="site", y="dice", hue=hue, order=order, color=FILL_COLOUR,
                linecolor=LINE_COLOUR, showfliers=False, ax=ax)  # fmt: skip
    sns.stripplot(data=data, x="site", y="dice", hue=hue, order=order, color=LINE_COLOUR,
                  dodge=hue is not None, size=4, jitter=0.15, legend=False, ax=ax)  # fmt: skip
    ax.set_xticks(range(len(order)), [f"{s}\n(n = {counts.get(s, 0)})" for s in order])
    ax.set_xlabel("")
    ax.set_ylabel("Dice per patient (processed space)")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Test set by site", fontsize=10)
    save(fig, out)


def rolling_window(n_rows: int) -> int:
    """Rows of the training-loss rolling mean: about a fifth of the log, between 2 and 51."""
    return int(np.clip(n_rows // 5, 2, 51))


def training_curves(
    logs: dict[str, pd.DataFrame], out: Path, metric: tuple[str, str] = ("val_dice", "Dice")
) -> None:
    """Per model (label → train_log): loss with bands and validation points; the validation
    metric (`metric`: its log column and its name; classification logs val_auc)."""
    n = max(1, len(logs))
    fig = Figure(figsize=(9, 2.8 * n), layout="tight")
    axes = fig.subplots(n, 2, squeeze=False)
    for (loss_ax, dice_ax), (label, log) in zip(axes, logs.items(), strict=False):
        window = rolling_window(len(log))
        rolling = log["train_loss"].rolling(window, min_periods=1)
        mean, std = rolling.mean(), rolling.std(ddof=1).fillna(0.0)
        for k, alpha in ((2, 0.15), (1, 0.3)):
            loss_ax.fill_between(
                log["epoch"],
                mean - k * std,
                mean + k * std,
                color=TRAIN_COLOUR,
                alpha=alpha,
                linewidth=0,
                label=f"±{k}σ",
            )
        loss_ax.plot(
            log["epoch"], mean, color=TRAIN_COLOUR, label=f"train (rolling mean, {window} epochs)"
        )
        loss_ax.plot(log["epoch"], log["val_loss"], "o", color=VAL_COLOUR, ms=4, label="validation")
        loss_ax.set_title(f"{label}: loss", fontsize=8, loc="left")
        loss_ax.set_xlabel("epoch")
        loss_ax.set_ylabel("loss")
        loss_ax.legend(fontsize=7, frameon=False)
        dice_ax.plot(log["epoch"], log[metric[0]], "o-", color=VAL_COLOUR, ms=4)
        dice_ax.set_title(f"validation {metric[1]}", fontsize=8)
        dice_ax.set_xlabel("epoch")
        dice_ax.set_ylabel(metric[1])
        for ax in (loss_ax, dice_ax):
            ax.grid(alpha=0.3)
    save(fig, out)


def histograms(per_slice: dict[str, pd.DataFrame], out: Path, title: str) -> None:
    """Histogram of per-slice foreground Dice (defined slices), one panel per model."""
    n = max(1, len(per_slice))
    fig = Figure(figsize=(4.2 * n, 3.0), layout="tight")
    axes = fig.subplots(1, n, squeeze=False, sharey=True)
    for ax, (label, slices) in zip(axes[0], per_slice.items(), strict=False):
        dice = slices.loc[slices["class"] == FOREGROUND, "dice"].dropna()
        ax.hist(dice, bins=np.linspace(0, 1, 21), color=FILL_COLOUR, edgecolor=LINE_COLOUR)
        ax.axvline(dice.median(), color=VAL_COLOUR, label=f"median {dice.median():.3f}")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("Dice per slice")
        ax.set_ylabel("slices")
        ax.legend(fontsize=7, frameon=False, loc="upper left")
    if not per_slice:
        axes[0, 0].text(0.5, 0.5, "no final models", ha="center", va="center")
    fig.suptitle(title, fontsize=10)
    save(fig, out)


def checkpoint_scores(selections: dict[str, dict], out: Path, ylabel: str) -> None:
    """Validation score of every checkpoint over training, one line per run; the selected
    checkpoint of each run is ringed."""
    fig = Figure(figsize=(7.5, 3.6), layout="tight")
    ax = fig.subplots()
    colours = level_colours(sorted(selections))
    for run_id, selection in sorted(selections.items()):
        colour = colours[run_id]
        scores = pd.DataFrame(selection["scores"])
        ax.plot(
            scores["epoch"], scores["score"].astype(float), "o-", ms=3, color=colour, label=run_id
        )
        chosen = selection["selected"]
        if chosen.get("score") is not None:
            ax.plot(chosen["epoch"], chosen["score"], "o", ms=10, mfc="none", mec=colour, mew=1.5)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False, bbox_to_anchor=(1.01, 1), loc="upper left")
    save(fig, out)


def rank_plot(frequencies: pd.DataFrame, out: Path) -> None:
    """Blob plot of the bootstrap ranking (challengeR): per configuration (ordered by its
    median rank) a disc per rank whose area is the share of resamples with that rank."""
    fig = Figure(figsize=(max(4.5, 1.0 * frequencies["configuration"].nunique() + 2.5), 3.6))
    ax = fig.subplots()
    shown = frequencies[frequencies["share"] > 0]
    if shown.empty:
        ax.text(0.5, 0.5, "no complete configurations to rank", ha="center", va="center")
        ax.axis("off")
        save(fig, out)
        return
    by_rank = shown.sort_values(["configuration", "rank"])
    cumulative = by_rank.groupby("configuration")["share"].cumsum()
    median = by_rank[cumulative >= 0.5].groupby("configuration")["rank"].first()
    order = median.sort_values(kind="stable").index.tolist()
    x = shown["configuration"].map({c: i for i, c in enumerate(order)})
    ax.scatter(x, shown["rank"], s=600 * shown["share"], color=TRAIN_COLOUR, alpha=0.75)
    ax.set_xticks(range(len(order)), order, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(1, int(frequencies["rank"].max()) + 1))
    ax.margins(x=0.2, y=0.25)  # room for the largest disc at the ends
    ax.invert_yaxis()
    ax.set_xlabel("configuration")
    ax.set_ylabel("rank in bootstrap resamples")
    ax.grid(alpha=0.3)
    save(fig, out)


def cost_plot(
    points: pd.DataFrame,
    measure: str,
    out: Path,
    ylabel: str,
    labels: Mapping[str, str],
    pruned: Collection[str] = (),
) -> None:
    """Score against training cost, one point per configuration (`cost_points`: its hours of
    `measure`, score and place on the Pareto front): the front ringed and joined as a step line
    (the best score reached for at most that cost), the configurations of `labels` (id → label:
    the final models) named, with a leader line to their point; those of `pruned` (stopped at a
    rung of successive halving, their cost until then) drawn as crosses."""
    fig = Figure(figsize=(6.0, 3.8), layout="tight")
    ax = fig.subplots()
    drawn = points.dropna(subset=["hours", "score"])
    if drawn.empty:
        ax.text(0.5, 0.5, "no measured cost of a complete run", ha="center", va="center")
        ax.axis("off")
        save(fig, out)
        return
    front = drawn[drawn["front"]].sort_values(["hours", "score"])
    stopped = drawn["configuration"].isin(list(pruned))
    kept = drawn[~stopped]
    ax.scatter(kept["hours"], kept["score"], s=22, color=TRAIN_COLOUR, alpha=0.7, zorder=2)
    if stopped.any():
        ax.scatter(drawn.loc[stopped, "hours"], drawn.loc[stopped, "score"], s=26, marker="x",
                   color=TRAIN_COLOUR, alpha=0.7, zorder=2, label="pruned at a rung")  # fmt: skip
    ax.plot(front["hours"], front["score"], drawstyle="steps-post", color=VAL_COLOUR, zorder=1)
    ax.scatter(front["hours"], front["score"], s=70, facecolors="none", edgecolors=VAL_COLOUR,
               linewidths=1.5, zorder=3, label="Pareto front")  # fmt: skip
    middle = (drawn["hours"].min() + drawn["hours"].max()) / 2
    for row in drawn[drawn["configuration"].isin(list(labels))].itertuples(index=False):
        side = -1 if row.hours > middle else 1  # named towards the middle, inside the axes
        ax.annotate(
            labels[row.configuration],
            (row.hours, row.score),
            xytext=(14 * side, 14),
            textcoords="offset points",
            ha="left" if side > 0 else "right",
            fontsize=7,
            arrowprops={"arrowstyle": "-", "linewidth": 0.6, "shrinkB": 3},
        )
    ax.set_xlabel(f"training cost ({MEASURES[measure]})")
    ax.set_ylabel(ylabel)
    ax.margins(x=0.15, y=0.12)  # room for the labels
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, loc="lower right")
    save(fig, out)


@dataclass(frozen=True)
class FigureInputs:
    """What the figures show: the runs and configurations tables, the bootstrap rank
    frequencies, the final models (final.csv) and their runs' training logs, each run's
    selection.json (by run id), the final models' runs' validation per_slice.csv (by run id),
    and each final model's per_slice test table (by its id: the reported one, `final.model`);
    with external methods, its per_patient test table and theirs (by name)."""

    runs: str | Path
    configurations: str | Path
    rank_frequencies: str | Path
    final: str | Path
    selections: Mapping[str, str | Path]
    train_logs: Mapping[str, str | Path]
    val_per_slice: Mapping[str, str | Path]
    test_per_slice: Mapping[str, str | Path]
    test_per_patient: Mapping[str, str | Path] = field(default_factory=dict)
    external: Mapping[str, str | Path] = field(default_factory=dict)  # name → its test table
    splits: str | Path | None = None  # splits.csv, whose source column the site figure reads


def draw_figures(
    config: dict[str, Any],
    sweep: dict[str, Any],
    given: FigureInputs,
    outputs: Mapping[str, str | Path],
    curve: tuple[str, str],
) -> None:
    """Every figure of `outputs`: "jitter_<name>" per swept hyperparameter (one point per
    complete configuration), "boxplot_<split>" and "histogram_<split>" for val (out-of-fold
    with folds) and test, "training_curves" (a panel per run of each final model, `curve` the
    training log's column of its validation metric and its name),
    "checkpoint_scores", "ranking" (the bootstrap ranking of the top configurations) and "cost"
    (score against training cost); with external methods also "boxplot_test_native", with two
    or more labelled sites "boxplot_sites"."""
    final = pd.read_csv(given.final, keep_default_na=False)
    labels = {r.run_id: model_label(r.run_id, r.group) for r in final.itertuples(index=False)}
    runs = sweep_runs(config, sweep)
    members = {c: [r.run_id for r in group] for c, group in configurations(runs).items()}
    val = {model: [given.val_per_slice[run] for run in members[model]] for model in labels}
    test = {model: [given.test_per_slice[model]] for model in labels}
    for split, files, title in (("val", val, "validation set"), ("test", test, "test set")):
        slices = {labels[m]: read_tables(files[m], m) for m in labels}
        boxplot(slices, Path(outputs[f"boxplot_{split}"]), f"Dice per slice, {title}")
        histograms(slices, Path(outputs[f"histogram_{split}"]), f"Dice per slice, {title}")
    if "boxplot_sites" in outputs:  # with two or more labelled sites
        tables = {labels[m]: pd.read_csv(given.test_per_patient[m]) for m in labels}
        sites = site_of(pd.read_csv(given.splits, dtype=str))
        site_boxplot(tables, sites, Path(outputs["boxplot_sites"]))
    if "boxplot_test_native" in outputs:  # with external methods (final.external)
        tables = {labels[m]: pd.read_csv(given.test_per_patient[m]) for m in labels}
        tables |= {name: pd.read_csv(path) for name, path in given.external.items()}
        native_boxplot(tables, Path(outputs["boxplot_test_native"]))
    rank_plot(pd.read_csv(given.rank_frequencies), Path(outputs["ranking"]))
    sweep_figures(config, sweep, given, outputs, curve, score_label(config["selection"]))
    print(f"wrote {len(outputs)} figures")


def sweep_figures(
    config: dict[str, Any],
    sweep: dict[str, Any],
    given: Any,
    outputs: Mapping[str, str | Path],
    curve: tuple[str, str],
    score: str,
) -> None:
    """The figures of the sweep that both tasks draw: "jitter_<name>" per swept hyperparameter
    (one point per complete configuration, `score` naming what its axis shows),
    "training_curves" (a panel per run of each final model, `curve` its validation metric),
    "checkpoint_scores" and "cost" (score against training cost); `given` holds the paths
    runs, configurations, final, selections and train_logs (by run id), as `FigureInputs`
    does."""
    swept = swept_names(sweep)
    experiments = pd.read_csv(given.configurations)
    experiments = experiments[experiments["status"] == "ok"]
    pairs = configured_pairs(config, swept)
    compared = first_rung_text(config, sweep, len(experiments), "configuration")
    for name in swept:
        hue = hue_partner(name, swept, pairs)
        out = Path(outputs[f"jitter_{name}"])
        jitter_plot(experiments, name, hue, out, score, compared[:1].upper() + compared[1:])
    final = pd.read_csv(given.final, keep_default_na=False)
    labels = {r.run_id: model_label(r.run_id, r.group) for r in final.itertuples(index=False)}
    runs = sweep_runs(config, sweep)
    members = {c: [r.run_id for r in group] for c, group in configurations(runs).items()}
    folds = {r.run_id: r.fold for r in runs}
    logs = {
        labels[model] if folds[run] is None else f"{labels[model]}, fold {folds[run]}": pd.read_csv(
            given.train_logs[run]
        )
        for model in labels
        for run in members[model]
    }
    training_curves(logs, Path(outputs["training_curves"]), curve)
    runs_df = pd.read_csv(given.runs)
    completed = runs_df.loc[runs_df["status"] != "failed", "run_id"].astype(str)
    checkpoint_scores(
        {run: read_json(given.selections[run]) for run in completed},
        Path(outputs["checkpoint_scores"]),
        score,
    )
    higher = bool(config["selection"]["higher_is_better"])
    points, measure = cost_points(runs_df, pd.read_csv(given.configurations), higher)
    named = {str(model): label for model, label in labels.items()}
    pruned = pruned_configurations(runs_df)
    cost_plot(points, measure, Path(outputs["cost"]), score, named, pruned)


def pruned_configurations(runs_df: pd.DataFrame) -> set[str]:
    """The configurations (run ids without folds) whose runs successive halving pruned (the runs
    table's `pruned_at`); none without halving."""
    if "pruned_at" not in runs_df:
        return set()
    key = "configuration" if "configuration" in runs_df else "run_id"
    return set(runs_df.loc[runs_df["pruned_at"].notna(), key].astype(str))


def main(argv: list[str] | None, curve: tuple[str, str]) -> None:
    """Write the jitter plots, boxplots, histograms, training curves, checkpoint scores, the
    ranking and the cost figure (with external methods the native-space boxplot) of the run
    whose results folder is --results (`python -m segsweep figures`): the training curves show
    `curve` (log column, name)."""
    parser = argparse.ArgumentParser(prog="segsweep figures", description=main.__doc__)
    add_sweep_options(parser)
    config, sweep, results = sweep_options(parser.parse_args(argv))
    runs = [run.run_id for run in sweep_runs(config, sweep)]
    finals = pd.read_csv(layout.under(results, layout.FINAL))["run_id"].astype(str).tolist()
    reported = config["final"]["model"] == "best_fold" and config["split"]["folds"]
    test = layout.BEST_FOLD_PER_SLICE if reported else layout.TEST_PER_SLICE
    test_patients = layout.BEST_FOLD_PER_PATIENT if reported else layout.TEST_PER_PATIENT
    external = sorted(config["final"].get("external") or {})

    def by(pattern: str, ids: list[str]) -> dict[str, Path]:
        return {i: layout.under(results, pattern, run=i) for i in ids}

    compared = layout.SELECTION  # under halving the first rung's, as the analysis compares
    if halving(config, sweep):
        compared = layout.path(layout.at_rung(compared), epochs=str(rung_epochs(config, sweep)[0]))
    given = FigureInputs(
        runs=layout.under(results, layout.RUNS_TABLE),
        configurations=layout.under(results, layout.CONFIGURATIONS_TABLE),
        rank_frequencies=layout.under(results, layout.TABLE, name="rank_frequencies"),
        final=layout.under(results, layout.FINAL),
        selections=by(compared, runs),
        train_logs=by(layout.RUN_LOG, runs),
        val_per_slice=by(layout.VAL_PER_SLICE, runs),
        test_per_slice=by(test, finals),
        test_per_patient=by(test_patients, finals),
        external={n: layout.under(results, layout.EXTERNAL_PER_PATIENT, name=n) for n in external},
        splits=layout.under(results, layout.SPLITS),
    )
    # the figures the thesis shows (`layout.segmentation_thesis_files`)
    sites = len(labelled_sites(pd.read_csv(given.splits, dtype=str))) >= 2
    files = layout.segmentation_thesis_files(swept_names(sweep), bool(external), sites=sites)
    outputs = layout.named_under(results, files, "figure_")
    draw_figures(config, sweep, given, outputs, curve)
