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
- twelve linearly spaced slices of a patient with ground-truth and predicted outlines (Fig.
  5.9–5.22), `slice_outlines`, drawn by the final-model stage, the only one that sees test images.

Every figure is written as PNG (150 dpi, embedded in the thesis) and as SVG beside it (for print
and editing). Jitter is drawn from a fixed seed, so reruns draw identical figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from segsweep.analysis import (
    FOREGROUND,
    configured_pairs,
    format_level,
    hue_partner,
    level_order,
    score_label,
)
from segsweep.sweep import swept_names

matplotlib.use("Agg")  # no display: figures are only ever written to files

DPI = 150
JITTER_SEED = 0
TRAIN_COLOUR = "#1f4e8c"
VAL_COLOUR = "#e8781e"


def save(fig: Figure, png: Path) -> None:
    """Write the figure as PNG and as SVG beside it, without timestamps or random ids."""
    png.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({"svg.hashsalt": "segsweep"}):
        fig.savefig(png, dpi=DPI, bbox_inches="tight", metadata={"Software": None})
        fig.savefig(png.with_suffix(".svg"), bbox_inches="tight", metadata={"Date": None})


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
    runs_df: pd.DataFrame, name: str, hue: str | None, out: Path, ylabel: str = "score"
) -> None:
    """One point per run at its level of `name`, jittered sideways, coloured by `hue`."""
    order = [format_level(v) for v in level_order(runs_df[name])]
    data = runs_df.assign(_x=runs_df[name].map(format_level))
    kwargs: dict[str, Any] = {}
    if hue is not None:
        data["_hue"] = data[hue].map(format_level)
        kwargs = {"hue": "_hue", "hue_order": [format_level(v) for v in level_order(data[hue])]}
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
            palette="colorblind" if hue else None,
            ax=ax,
            **kwargs,
        )
    ax.set_xlabel(name)
    ax.set_ylabel(ylabel)
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
            color="#9ecae1",
            linecolor="#08306b",
            ax=ax,
            flierprops={"marker": "D", "markersize": 4, "markerfacecolor": "#08306b"},
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


def rolling_window(n_rows: int) -> int:
    """Rows of the training-loss rolling mean: about a fifth of the log, between 2 and 51."""
    return int(np.clip(n_rows // 5, 2, 51))


def training_curves(logs: dict[str, pd.DataFrame], out: Path) -> None:
    """Per model (label → train_log): loss with bands and validation points; validation Dice."""
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
        loss_ax.set_title(f"{label}: loss", fontsize=9)
        loss_ax.set_xlabel("epoch")
        loss_ax.set_ylabel("loss")
        loss_ax.legend(fontsize=7, frameon=False)
        dice_ax.plot(log["epoch"], log["val_dice"], "o-", color=VAL_COLOUR, ms=4)
        dice_ax.set_title(f"{label}: validation Dice", fontsize=9)
        dice_ax.set_xlabel("epoch")
        dice_ax.set_ylabel("Dice")
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
        ax.hist(dice, bins=np.linspace(0, 1, 21), color="#9ecae1", edgecolor="#08306b")
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
    colours = sns.color_palette("colorblind", max(1, len(selections)))
    for colour, (run_id, selection) in zip(colours, sorted(selections.items()), strict=False):
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


def twelve_slices(n_slices: int, count: int = 12) -> np.ndarray:
    """`count` linearly spaced slice positions over a volume (all when it has fewer)."""
    return np.unique(np.linspace(0, n_slices - 1, min(count, n_slices)).round().astype(int))


def slice_outlines(
    image: np.ndarray, reference: np.ndarray, prediction: np.ndarray, out: Path, title: str
) -> None:
    """Twelve linearly spaced slices (z, y, x) with the reference outlined in green and the
    prediction in orange (label maps: every non-zero label is outlined)."""
    positions = twelve_slices(len(image))
    columns = 6
    rows = int(np.ceil(len(positions) / columns))
    fig = Figure(figsize=(1.6 * columns, 1.75 * rows + 0.4), layout="tight")
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, k in zip(axes.flat, positions, strict=False):
        ax.imshow(image[k], cmap="gray", interpolation="nearest")
        for mask, colour in ((reference[k], "#2ca02c"), (prediction[k], VAL_COLOUR)):
            if mask.any():
                ax.contour(mask > 0, levels=[0.5], colors=colour, linewidths=0.9)
        ax.set_title(f"slice {k}", fontsize=7)
    fig.suptitle(f"{title} (green: reference, orange: prediction)", fontsize=9)
    save(fig, out)


def final_models(results: Path) -> pd.DataFrame:
    """results/summary/final.csv: run_id, group, score of each final model."""
    return pd.read_csv(results / "summary" / "final.csv", keep_default_na=False)


def model_label(run_id: str, group: str) -> str:
    """A panel title naming the run and why it was chosen (e.g. "overall")."""
    return f"{run_id} ({group})" if group else run_id


def main(argv: list[str] | None = None) -> None:
    """Write the jitter plots, the per-patient boxplots and the training curves."""
    parser = argparse.ArgumentParser(prog="segsweep figures", description=main.__doc__)
    parser.add_argument("--config-json", required=True, help="the whole validated config")
    parser.add_argument("--sweep-json", required=True, help="the sweep specification")
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    config: dict[str, Any] = json.loads(args.config_json)
    swept = swept_names(json.loads(args.sweep_json))
    results: Path = args.results
    figures = results / "figures"
    runs_df = pd.read_csv(results / "summary" / "runs.csv")
    pairs = configured_pairs(config, swept)
    for name in swept:
        hue = hue_partner(name, swept, pairs)
        jitter_plot(
            runs_df, name, hue, figures / f"jitter_{name}.png", score_label(config["selection"])
        )
    final = final_models(results)
    labels = {r.run_id: model_label(r.run_id, r.group) for r in final.itertuples(index=False)}
    sources = {
        "val": lambda run: results / "runs" / run / "val" / "per_slice.csv",
        "test": lambda run: results / "final" / run / "test" / "per_slice.csv",
    }
    titles = {"val": "validation set", "test": "test set"}
    for split, path in sources.items():
        slices = {labels[r]: pd.read_csv(path(r), dtype={"patient_id": str}) for r in labels}
        boxplot(slices, figures / f"boxplot_{split}.png", f"Dice per slice, {titles[split]}")
        histograms(slices, figures / f"histogram_{split}.png", f"Dice per slice, {titles[split]}")
    logs = {labels[r]: pd.read_csv(results / "runs" / r / "train_log.csv") for r in labels}
    training_curves(logs, figures / "training_curves.png")
    selections = {
        run: json.loads((results / "runs" / run / "selection.json").read_text())
        for run in runs_df.loc[runs_df["status"] != "failed", "run_id"].astype(str)
    }
    checkpoint_scores(
        selections, figures / "checkpoint_scores.png", score_label(config["selection"])
    )
    print(f"wrote the figures to {figures}")


if __name__ == "__main__":
    main()
