"""Chapter 4, sections 4.1 and 4.2: what the hyperparameters did (per-level tables, pairwise
tables, Kruskal–Wallis, jitter plots; PET/CT thesis Tables 5.1–5.10, Figs. 5.2–5.3) and the best
runs (Tables 5.11, 5.13)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from segsweep.report.document import Figure, Section, Table, text
from segsweep.report.inputs import ReportInputs, read_table
from segsweep.report.numbers import NA, ci_text, integer, number, p_value, plural, sentence_case
from segsweep.sweep.analysis import configured_pairs, hue_partner, pair_grid
from segsweep.sweep.grammar import swept_names
from segsweep.vocabulary import format_level, score_label

PAIR_NOTE = (
    "The format is “mean/median (count)”, where count is the number of experiments with this "
    "particular parameter configuration."
)


def hyperparameter_frame(table: pd.DataFrame) -> pd.DataFrame:
    """One hyperparameter's rows of hyperparameters.csv in the thesis layout."""
    frame = table[["level", "Min", "Max", "STD", "Mean", "Median", "No. experiments"]].copy()
    for column in ["Min", "Max", "STD", "Mean", "Median"]:
        frame[column] = frame[column].map(number)
    frame["No. experiments"] = frame["No. experiments"].map(integer)
    return frame.rename(columns={"level": "Level"})


def extremes(table: pd.DataFrame, higher_is_better: bool) -> dict[str, Any] | None:
    """The best and worst level by mean score, for the text; None with fewer than two levels."""
    defined = table.dropna(subset=["Mean"])
    if len(defined) < 2:
        return None
    ordered = defined.sort_values("Mean", ascending=not higher_is_better)
    best, worst = ordered.iloc[0], ordered.iloc[-1]
    return {
        "tie": best["Mean"] == worst["Mean"],
        "best": best["level"],
        "best_mean": number(best["Mean"]),
        "best_n": int(best["No. experiments"]),
        "worst": worst["level"],
        "worst_mean": number(worst["Mean"]),
    }


def pair_frame(table: pd.DataFrame, a: str) -> pd.DataFrame:
    """A pair grid with the levels of `a` as its first column."""
    grid = pair_grid(table)
    return grid.reset_index(names=a)


def runs_frame(runs_df: pd.DataFrame) -> pd.DataFrame:
    """Runs (all, or the best ones) as display text: levels verbatim, scores with 3 decimals."""
    frame = runs_df.copy()
    for column in frame.columns:
        if column in {"score", "dice_mean", "dice_median", "dice_std"}:
            frame[column] = frame[column].map(number)
        elif column in {"rank", "selected_epoch"}:
            frame[column] = frame[column].map(integer)
        else:
            frame[column] = frame[column].map(format_level)
    names = {"rank": "Rank", "run_id": "Run", "score": "Score", "selected_epoch": "Epoch"}
    names |= {"status": "Status"}
    names |= {"dice_mean": "Dice mean", "dice_median": "Dice median", "dice_std": "Dice STD"}
    return frame.rename(columns=names)


def kruskal_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Kruskal–Wallis per hyperparameter with the best − worst median difference and its CI."""
    rows = [
        [
            row["hyperparameter"],
            integer(row["levels"]),
            integer(row["n"]),
            number(row["H"]),
            p_value(row["p"]),
            f"{format_level(row['best'])} − {format_level(row['worst'])}"
            if row["best"] != ""
            else NA,
            number(row["median_difference"]),
            ci_text(row["ci_low"], row["ci_high"]),
        ]
        for _, row in table.iterrows()
    ]
    columns = ["Hyperparameter", "Levels", "Runs", "H", "p", "Best − worst", "Δ median", "95 % CI"]
    return pd.DataFrame(rows, columns=columns)


def failed_frame(runs_df: pd.DataFrame) -> pd.DataFrame:
    """The failed runs of runs.csv with their error."""
    failed = runs_df[runs_df["status"] == "failed"]
    return pd.DataFrame({"Run": failed["run_id"].astype(str), "Error": failed["error"]})


def read_runs(inputs: ReportInputs) -> pd.DataFrame:
    return read_table(inputs.tables["runs"], text=["run_id", "status", "error"])


def failed_runs(inputs: ReportInputs, all_runs: Table) -> list:
    """The paragraph and table of the runs whose training failed (nothing when none did)."""
    failed = failed_frame(read_runs(inputs))
    if not len(failed):
        return []
    n_runs = len(read_runs(inputs))
    table = Table.of(
        "failed-runs",
        f"The {plural(len(failed), 'run')} whose training failed, with the error of the last "
        "attempt.",
        failed,
    )
    one = len(failed) == 1
    return [
        text(
            "{n} of the {total} runs failed: {its} training raised an error on the last attempt "
            "and left no model and no score. {table} lists {them} with the error; failed runs "
            "are left out of every table, figure and test of this chapter and marked “failed” "
            "in {runs}.",
            n=len(failed),
            total=n_runs,
            its="its" if one else "their",
            them="it" if one else "them",
            table=table,
            runs=all_runs,
        ),
        table,
    ]


def _effect_sentence(name: str, extreme: dict[str, Any] | None, higher: bool) -> str:
    if extreme and extreme["tie"]:
        return f"All its levels reached the same mean score, {extreme['best_mean']}."
    if extreme:
        best, worst = ("highest", "lowest") if higher else ("lowest", "highest")
        return (
            f"The {best} mean score, {extreme['best_mean']}, was reached with {extreme['best']} "
            f"({plural(extreme['best_n'], 'run')}), the {worst}, {extreme['worst_mean']}, with "
            f"{extreme['worst']}."
        )
    return "Only one of its levels has a defined score."


def hyperparameter_effects(inputs: ReportInputs, all_runs: Table) -> Section:
    """Section 4.1: per swept hyperparameter its table and jitter plot, Kruskal–Wallis, and the
    pairwise tables."""
    config, sweep = inputs.config, inputs.sweep
    swept = swept_names(sweep)
    section = Section("hyperparameter-effects", "Hyperparameter effects")
    if not swept:
        section.blocks.append(
            text(
                "No hyperparameter was swept, so there are no hyperparameter effects to show; "
                "the single run is listed in {runs}.",
                runs=all_runs,
            )
        )
        return section
    score = score_label(config["selection"])
    higher = bool(config["selection"]["higher_is_better"])
    long_table = read_table(inputs.tables["hyperparameters"], text=["hyperparameter", "level"])
    pairs = configured_pairs(config, swept)
    section.blocks.append(
        text(
            "The tables below summarise, per level of each swept hyperparameter, the score of "
            "the runs on the validation set: the {score} of each run's selected checkpoint. All "
            "runs are listed in {runs}.",
            score=score,
            runs=all_runs,
        )
    )
    tables, figures = [], []
    for name in swept:
        rows = long_table[long_table["hyperparameter"] == name]
        table = Table.of(
            f"hp-{name}",
            f"{sentence_case(score)} on the validation set per level of “{name}”.",
            hyperparameter_frame(rows),
        )
        hue = hue_partner(name, swept, pairs)
        figure = Figure.of(
            f"jitter-{name}",
            f"Jitter plot of the {score} of every run on the validation set per level of "
            f"“{name}”" + (f", coloured by “{hue}”." if hue else "."),
            inputs.figures[f"jitter_{name}"],
        )
        section.blocks.append(
            text(
                "{table} and {figure} show the effect of “{name}”. {effect}",
                table=table,
                figure=figure,
                name=name,
                effect=_effect_sentence(name, extremes(rows, higher), higher),
            )
        )
        tables.append(table)
        figures.append(figure)
    section.blocks += tables
    kruskal = read_table(inputs.tables["kruskal"], text=["hyperparameter", "best", "worst"])
    test = Table.of(
        "kruskal",
        "Kruskal–Wallis test of the runs' scores across the levels of each swept "
        "hyperparameter, and the difference of the median score between the best and the "
        "worst level with its bootstrap 95 % confidence interval.",
        kruskal_frame(kruskal),
        notes=[
            "Each run is one observation; with few runs per level the test has little power "
            "and undefined values are shown as “–”."
        ],
    )
    section.blocks += [
        text("{table} tests whether the levels of each hyperparameter differ.", table=test),
        test,
    ]
    pair_long = read_table(inputs.tables["pairs"], text=["a", "b", "a_level", "b_level"])
    pair_tables = [
        Table.of(
            f"pair-{a}-{b}",
            f"{sentence_case(score)} on the validation set for “{a}” (rows) and “{b}” (columns).",
            pair_frame(table, a),
            notes=[PAIR_NOTE],
            group_header=[("", 1), (b, len(pair_grid(table).columns))],
        )
        for (a, b), table in pair_long.groupby(["a", "b"], sort=False)
    ]
    if pair_tables:
        section.blocks += [
            text(
                "Pairs of hyperparameters are analysed jointly in {tables}: each cell gives the "
                "mean and median score of the runs with that combination and their number.",
                tables=pair_tables,
            ),
            *pair_tables,
        ]
    section.blocks += figures
    return section


def final_models_frame(final: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Run": final["run_id"].astype(str),
            "Chosen as": final["group"].astype(str),
            "Validation score": final["score"].map(number),
        }
    )


def best_models(inputs: ReportInputs) -> Section:
    """Section 4.2: the best runs, the final models and their training curves."""
    score = score_label(inputs.config["selection"])
    best = read_table(inputs.tables["best_runs"], text=["run_id"])
    final = pd.read_csv(inputs.final, keep_default_na=False)
    table = Table.of(
        "best-runs",
        f"The {plural(len(best), 'best run')} by {score} on the validation set.",
        runs_frame(best),
    )
    finals = Table.of(
        "final-models",
        "The final models chosen on the validation set.",
        final_models_frame(final),
    )
    curves = Figure.of(
        "training-curves",
        "Training curves of the final models. Left: training loss as a rolling mean (dark "
        "line) with bands of one (dark) and two (light) standard deviations, validation loss as "
        "orange points; right: validation Dice per epoch.",
        inputs.figures["training_curves"],
    )
    reached = (
        f"; the best, {best['run_id'].iloc[0]}, reached {number(best['score'].iloc[0])}"
        if len(best)
        else ""
    )
    return Section(
        "best-models",
        "Best models",
        [
            text(
                "{table} lists the best runs by validation score{reached}. The final models "
                "chosen from these scores are listed in {finals}, and their training curves are "
                "shown in {curves}.",
                table=table,
                reached=reached,
                finals=finals,
                curves=curves,
            ),
            table,
            finals,
            curves,
        ],
    )
