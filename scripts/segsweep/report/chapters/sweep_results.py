"""Chapter 4, sections 4.1 and 4.2: what the hyperparameters did (per-level tables, pairwise
tables, Kruskal–Wallis, jitter plots; PET/CT thesis Tables 5.1–5.10, Figs. 5.2–5.3) and the best
runs (Tables 5.11, 5.13)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from segsweep.numerals import (
    NA,
    ci_text,
    integer,
    number,
    p_value,
    percent,
    plural,
    sentence_case,
    significant,
    verb,
)
from segsweep.report.document import Figure, Section, Table, text
from segsweep.report.inputs import ReportInputs, read_table
from segsweep.sweep.analysis import configured_pairs, hue_partner, pair_grid
from segsweep.sweep.cost import MEASURES, configuration_costs, cost_points
from segsweep.sweep.grammar import swept_names
from segsweep.sweep.pruning import first_rung_text
from segsweep.vocabulary import format_level

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


# cost column of runs.csv → (its heading in the thesis, the divisor from its unit: s or MB)
COST_DISPLAY = {
    "wall_s": ("Wall (min)", 60),
    "cpu_s": ("CPU (min)", 60),
    "max_rss_mb": ("Peak RAM (GB)", 1024),
    "device_s": ("GPU (min)", 60),
    "device_peak_mb": ("Peak GPU mem (GB)", 1024),
}


# the classification task's study-level validation metrics in runs.csv, and their headings
CLASSIFIER_COLUMNS = {"auc": "AUC", "accuracy": "Accuracy", "kappa": "κ"}


def runs_frame(runs_df: pd.DataFrame, key: str = "Run") -> pd.DataFrame:
    """Runs or configurations (all, or the best ones) as display text: levels verbatim, scores
    with 3 decimals, an interval as "[low, high]", fold scores as "mean ± STD", what a run cost
    in minutes and GB (a cost column no run measured, the GPU's on the CPU, left out); `key`
    names the id column."""
    frame = runs_df.copy()
    unmeasured = [c for c in COST_DISPLAY if c in frame and frame[c].isna().all()]
    frame = frame.drop(columns=unmeasured)
    if {"ci_low", "ci_high"} <= set(frame.columns):
        cis = [ci_text(lo, hi) for lo, hi in zip(frame["ci_low"], frame["ci_high"], strict=True)]
        frame = frame.drop(columns=["ci_low", "ci_high"])
        frame.insert(list(frame.columns).index("score") + 1, "95 % CI", cis)
    if {"fold_mean", "fold_std"} <= set(frame.columns):
        spread = [
            NA if pd.isna(m) else f"{number(m)} ± {number(sd)}"
            for m, sd in zip(frame["fold_mean"], frame["fold_std"], strict=True)
        ]
        frame = frame.drop(columns=["fold_mean", "fold_std"])
        if any(text != NA for text in spread):
            frame["Folds: mean ± STD"] = spread
    for column in frame.columns:
        if column in {"score", "dice_mean", "dice_median", "dice_std", *CLASSIFIER_COLUMNS}:
            frame[column] = frame[column].map(number)
        elif column in COST_DISPLAY:
            frame[column] = (frame[column] / COST_DISPLAY[column][1]).map(lambda x: number(x, 2))
        elif column in {
            "rank",
            "selected_epoch",
            "patients",
            "fold",
            "epochs_trained",
            "pruned_at",
        }:
            frame[column] = frame[column].map(integer)
        elif column not in {"95 % CI", "Folds: mean ± STD"}:
            frame[column] = frame[column].map(format_level)
    names = {"rank": "Rank", "run_id": key, "score": "Score", "selected_epoch": "Epoch"}
    names |= {"status": "Status", "patients": "Patients", "configuration": "Configuration"}
    names |= {"fold": "Fold", "epochs_trained": "Epochs trained", "pruned_at": "Pruned at rung"}
    names |= {"dice_mean": "Dice mean", "dice_median": "Dice median", "dice_std": "Dice STD"}
    names |= CLASSIFIER_COLUMNS
    names |= {column: heading for column, (heading, _) in COST_DISPLAY.items()}
    return frame.rename(columns=names)


def compared_at(inputs: ReportInputs) -> str:
    """ ", all N configurations at rung 1, E epochs": where the sweep's tables compare under
    successive halving (N the configurations whose training completed); "" without it."""
    configurations = read_table(inputs.tables["configurations"], text=["configuration", "status"])
    n = int((configurations["status"] == "ok").sum())
    at = first_rung_text(inputs.config, inputs.sweep, n, "configuration")
    return f", {at}" if at else ""


def cross_validated(inputs: ReportInputs) -> int:
    """The number of folds (0 without cross-validation)."""
    return int(inputs.config.get("split", {}).get("folds") or 0)


def experiment(inputs: ReportInputs) -> str:
    """What the sweep compares: runs, or with folds configurations (each trained on k folds)."""
    return "configuration" if cross_validated(inputs) else "run"


def kruskal_frame(table: pd.DataFrame, unit: str = "run") -> pd.DataFrame:
    """Kruskal–Wallis per hyperparameter with the best − worst median difference and its CI;
    `unit` names the observations (runs, or configurations with folds)."""
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
    columns = ["Hyperparameter", "Levels", f"{unit.capitalize()}s", "H", "p", "Best − worst"]
    columns += ["Δ median", "95 % CI"]
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


def _effect_sentence(
    name: str, extreme: dict[str, Any] | None, higher: bool, unit: str = "run"
) -> str:
    if extreme and extreme["tie"]:
        return f"All its levels reached the same mean score, {extreme['best_mean']}."
    if extreme:
        best, worst = ("highest", "lowest") if higher else ("lowest", "highest")
        return (
            f"The {best} mean score, {extreme['best_mean']}, was reached with {extreme['best']} "
            f"({plural(extreme['best_n'], unit)}), the {worst}, {extreme['worst_mean']}, with "
            f"{extreme['worst']}."
        )
    return "Only one of its levels has a defined score."


def hyperparameter_effects(inputs: ReportInputs, all_runs: Table) -> Section:
    """Section 4.1: per swept hyperparameter its table and jitter plot, Kruskal–Wallis, the
    pairwise tables, and with folds the per-fold scores of every configuration."""
    config, sweep = inputs.config, inputs.sweep
    swept = swept_names(sweep)
    unit = experiment(inputs)
    section = Section("hyperparameter-effects", "Hyperparameter effects")
    if not swept:
        section.blocks.append(
            text(
                "No hyperparameter was swept, so there are no hyperparameter effects to show; "
                "the single {unit} is listed in {runs}.",
                unit=unit,
                runs=all_runs,
            )
        )
        section.blocks += fold_blocks(inputs)
        return section
    score = inputs.thesis.score_label(config["selection"])
    higher = bool(config["selection"]["higher_is_better"])
    long_table = read_table(inputs.tables["hyperparameters"], text=["hyperparameter", "level"])
    pairs = configured_pairs(config, swept)
    of_each = (
        "the pooled out-of-fold score of each configuration (every development patient scored "
        f"once, by the fold that did not train on it), the {score}"
        if cross_validated(inputs)
        else f"the {score} of each run's selected checkpoint"
    )
    at = compared_at(inputs)
    section.blocks.append(
        text(
            "The tables below summarise, per level of each swept hyperparameter, the score of "
            "the {units} on the validation set: {of_each}. All runs are listed in {runs}.{rung}",
            units=f"{unit}s",
            of_each=of_each,
            runs=all_runs,
            rung=f" Under successive halving they compare{at}: the one budget every "
            "configuration trained to."
            if at
            else "",
        )
    )
    tables, figures = [], []
    for name in swept:
        rows = long_table[long_table["hyperparameter"] == name]
        table = Table.of(
            f"hp-{name}",
            f"{sentence_case(score)} on the validation set per level of “{name}”{at}.",
            hyperparameter_frame(rows),
        )
        hue = hue_partner(name, swept, pairs)
        figure = Figure.of(
            f"jitter-{name}",
            f"Jitter plot of the {score} of every {unit} on the validation set per level of "
            f"“{name}”" + (f", coloured by “{hue}”" if hue else "") + f"{at}.",
            inputs.figures[f"jitter_{name}"],
        )
        section.blocks.append(
            text(
                "{table} and {figure} show the effect of “{name}”. {effect}",
                table=table,
                figure=figure,
                name=name,
                effect=_effect_sentence(name, extremes(rows, higher), higher, unit),
            )
        )
        tables.append(table)
        figures.append(figure)
    section.blocks += tables
    kruskal = read_table(inputs.tables["kruskal"], text=["hyperparameter", "best", "worst"])
    test = Table.of(
        "kruskal",
        f"Kruskal–Wallis test of the {unit}s' scores across the levels of each swept "
        "hyperparameter, and the difference of the median score between the best and the "
        f"worst level with its bootstrap 95 % confidence interval{at}.",
        kruskal_frame(kruskal, unit),
        notes=[
            f"Each {unit} is one observation; with few {unit}s per level the test has little "
            "power and undefined values are shown as “–”."
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
            f"{sentence_case(score)} on the validation set for “{a}” (rows) and “{b}” "
            f"(columns){at}.",
            pair_frame(table, a),
            notes=[PAIR_NOTE.replace("experiments", f"{unit}s")],
            group_header=[("", 1), (b, len(pair_grid(table).columns))],
        )
        for (a, b), table in pair_long.groupby(["a", "b"], sort=False)
    ]
    if pair_tables:
        section.blocks += [
            text(
                "Pairs of hyperparameters are analysed jointly in {tables}: each cell gives the "
                "mean and median score of the {units} with that combination and their number.",
                tables=pair_tables,
                units=f"{unit}s",
            ),
            *pair_tables,
        ]
    section.blocks += figures
    section.blocks += fold_blocks(inputs)
    return section


def fold_frame(folds: pd.DataFrame, configurations: pd.DataFrame) -> pd.DataFrame:
    """Configurations × folds: each fold run's own validation score, the folds' mean ± STD and
    the pooled out-of-fold score with its interval and the patients it rests on."""
    wide = folds.pivot(index="configuration", columns="fold", values="score")
    rows = []
    for row in configurations.itertuples(index=False):
        if row.configuration not in wide.index:
            continue
        scores = wide.loc[row.configuration]
        spread = (
            NA if pd.isna(row.fold_mean) else f"{number(row.fold_mean)} ± {number(row.fold_std)}"
        )
        rows.append(
            [
                row.configuration,
                *(number(v) for v in scores),
                spread,
                number(row.score),
                ci_text(row.ci_low, row.ci_high),
                integer(row.patients),
            ]
        )
    columns = ["Configuration", *(f"Fold {int(f)}" for f in wide.columns)]
    columns += ["Mean ± STD", "Out-of-fold", "95 % CI", "Patients"]
    return pd.DataFrame(rows, columns=columns)


def fold_blocks(inputs: ReportInputs) -> list:
    """With folds: the per-fold scores beside the pooled scores, and what the spread says."""
    if not cross_validated(inputs):
        return []
    folds = read_table(inputs.tables["folds"], text=["configuration", "run_id", "status"])
    configurations = read_table(
        inputs.tables["configurations"], text=["configuration", "status", "error"]
    )
    table = Table.of(
        "folds",
        "The validation score of every configuration on each of its folds (each fold run's "
        "own selection score), the folds' mean ± STD, and the pooled out-of-fold score with its "
        f"bootstrap 95 % confidence interval over the patients it rests on{compared_at(inputs)}.",
        fold_frame(folds, configurations),
        notes=["A configuration with a failed fold has no out-of-fold score (“–”)."],
    )
    spread = configurations["fold_std"].dropna()
    gaps = configurations["score"].dropna()
    told = (
        f" The folds of a configuration differ by {number(spread.median())} (median STD), the "
        f"configurations' scores span {number(gaps.max() - gaps.min())}."
        if len(spread) and len(gaps) > 1
        else ""
    )
    return [
        text(
            "{table} shows the fold-to-fold spread beside the differences between "
            "configurations.{told}",
            table=table,
            told=told,
        ),
        table,
    ]


def final_models_frame(final: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Run": final["run_id"].astype(str),
            "Chosen as": final["group"].astype(str),
            "Validation score": final["score"].map(number),
        }
    )


def ranking_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The bootstrap ranking: per configuration its score, how often it ranked first, its
    median rank and 95 % rank interval."""
    rows = [
        [
            row.configuration,
            number(row.score),
            percent(row.first),
            f"{row.median_rank:g}",
            f"[{row.rank_low:g}, {row.rank_high:g}]",
        ]
        for row in table.itertuples(index=False)
    ]
    columns = ["Configuration", "Score", "Ranked first", "Median rank", "95 % rank interval"]
    return pd.DataFrame(rows, columns=columns)


def tests_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Paired tests (Friedman, Wilcoxon with Holm) with bootstrap CIs of the median difference."""
    rows = [
        [
            row["test"],
            row["a"] if row["test"] == "Friedman" else f"{row['a']} − {row['b']}",
            integer(row["n"]),
            number(row["statistic"]),
            p_value(row["p"]),
            p_value(row["p_holm"]),
            number(row["median_difference"]),
            ci_text(row["ci_low"], row["ci_high"]),
        ]
        for _, row in table.iterrows()
    ]
    columns = ["Test", "Models", "Patients", "Statistic", "p", "p (Holm)", "Δ median", "95 % CI"]
    return pd.DataFrame(rows, columns=columns)


def ranking_blocks(inputs: ReportInputs) -> list:
    """How stable the ranking of the top configurations is, and their pairwise comparison."""
    ranking = read_table(inputs.tables["ranking"], text=["configuration"])
    if len(ranking) < 2:
        return []
    unit, patients = experiment(inputs), int(ranking["patients"].max())
    table = Table.of(
        "ranking",
        f"Bootstrap ranking of the {plural(len(ranking), 'best ' + unit)}: the share of "
        f"{int(ranking['resamples'].iloc[0])} resamples of the {plural(patients, 'patient')} in "
        f"which each ranked first, its median rank and 95 % rank interval{compared_at(inputs)}.",
        ranking_frame(ranking),
        notes=[
            "Each resample draws the patients with replacement, the same for every model; "
            f"tied {unit}s share the better rank."
        ],
    )
    figure = Figure.of(
        "ranking",
        f"Ranks of the best {unit}s in the bootstrap resamples of the patients: the area of "
        "each disc is the share of resamples with that rank.",
        inputs.figures["ranking"],
    )
    first = ranking.sort_values("first", ascending=False, kind="stable").iloc[0]
    blocks = [
        text(
            "How sure is this ranking? {table} and {figure} resample the {patients} with "
            "replacement and rank the {n} best {units} again: {best} ranked first in "
            "{share} of the resamples.",
            table=table,
            figure=figure,
            patients=plural(patients, "patient"),
            n=len(ranking),
            units=f"{unit}s",
            best=first["configuration"],
            share=percent(first["first"]),
        ),
        table,
        figure,
    ]
    tests = read_table(inputs.tables["configuration_tests"], text=["split", "test", "a", "b"])
    if len(tests):
        compared = Table.of(
            "configuration-tests",
            f"Pairwise comparison of the best {unit}s on their paired per-patient validation "
            "scores, with the median of the per-patient differences and its bootstrap 95 % "
            f"confidence interval{compared_at(inputs)}.",
            tests_frame(tests),
            notes=[
                "Wilcoxon signed-rank for two; for more, Friedman and pairwise Wilcoxon tests "
                "with Holm's correction."
            ],
        )
        n = int(tests["n"].max())
        blocks += [
            text(
                "{table} compares them pairwise on the {patients} that every one of them scores.",
                table=compared,
                patients=plural(n, "patient"),
            ),
            compared,
        ]
    return blocks


def cost_blocks(inputs: ReportInputs) -> list:
    """What the sweep's training cost in all and what the best configuration took, with the
    figure of score against cost and its Pareto front; nothing when no cost was measured (a
    report run by hand without Snakemake's benchmarks)."""
    runs_df = read_runs(inputs)
    configurations = read_table(
        inputs.tables["configurations"], text=["configuration", "status", "error"]
    )
    higher = bool(inputs.config["selection"]["higher_is_better"])
    points, measure = cost_points(runs_df, configurations, higher)
    if runs_df[measure].isna().all():
        return []
    hours = MEASURES[measure]
    used = f"{significant(runs_df[measure].sum() / 3600)} {hours}"
    if measure == "wall_s" and runs_df["cpu_s"].notna().any():
        used = f"{significant(runs_df['cpu_s'].sum() / 3600)} CPU-hours ({used})"
    best = read_table(inputs.tables["best_runs"], text=["run_id"])
    took = ""
    if len(best):
        top = str(best["run_id"].iloc[0])
        seconds = configuration_costs(runs_df).set_index("configuration")[measure].get(top)
        took = f"; the best configuration, {top}, took {significant(seconds / 3600)} {hours}"
    unit = experiment(inputs)
    front = points[points["front"]].sort_values(["hours", "score"])["configuration"]
    left_out = int((configurations["status"] != "ok").sum())
    score = inputs.thesis.score_label(inputs.config["selection"])
    figure = Figure.of(
        "cost",
        f"The {score} on the validation set of every {unit} "
        f"whose training completed against its training cost ({hours}"
        + (", its folds summed" if cross_validated(inputs) else "")
        + ")"
        + (
            f"{compared_at(inputs)}, the cost as trained: the figure mixes budgets, the "
            "configurations pruned at a rung (crosses) cost only their training until then"
            if compared_at(inputs)
            else ""
        )
        + f". The Pareto front, the {unit}s no other {unit} beats on both lower cost and a "
        f"better score, is ringed and joined by a step line: {', '.join(front)}. The final "
        "models are labelled."
        + (
            f" {sentence_case(plural(left_out, unit))} whose training failed "
            f"{verb(left_out, 'is', 'are')} not drawn."
            if left_out
            else ""
        ),
        inputs.figures["cost"],
    )
    return [
        text(
            "The sweep's {runs} used {used} in all{took} ({figure}).",
            runs=plural(len(runs_df), "training run"),
            used=used,
            took=took,
            figure=figure,
        ),
        figure,
    ]


def best_models(inputs: ReportInputs) -> Section:
    """Section 4.2: the best runs (configurations), how stable their ranking is, the final
    models and their training curves, and what the training cost."""
    score = inputs.thesis.score_label(inputs.config["selection"])
    unit = experiment(inputs)
    best = read_table(inputs.tables["best_runs"], text=["run_id"])
    final = pd.read_csv(inputs.final, keep_default_na=False)
    table = Table.of(
        "best-runs",
        f"The {plural(len(best), 'best ' + unit)} by {score} on the validation set, with its "
        f"bootstrap 95 % confidence interval over the patients it rests on{compared_at(inputs)}.",
        runs_frame(best, key=unit.capitalize()),
    )
    finals = Table.of(
        "final-models",
        "The final models chosen on the validation set"
        + (
            ", among the configurations that reached the last rung, at the full budget."
            if compared_at(inputs)
            else "."
        ),
        final_models_frame(final),
    )
    curves = Figure.of(
        "training-curves",
        "Training curves of the final models"
        + (" (one row per fold)" if cross_validated(inputs) else "")
        + ". Left: training loss as a rolling mean (dark line) with bands of one (dark) and two "
        "(light) standard deviations, validation loss as orange points; right: validation "
        f"{inputs.thesis.curve} per epoch.",
        inputs.figures["training_curves"],
    )
    reached = ""
    if len(best):
        top = best.iloc[0]
        reached = (
            f"; the best, {top['run_id']}, reached {number(top['score'])} "
            f"{ci_text(top.get('ci_low'), top.get('ci_high'))}"
        )
        if "patients" in best and not pd.isna(top.get("patients")):
            reached += f" over {plural(int(top['patients']), 'patient')}"
    return Section(
        "best-models",
        "Best models",
        [
            text(
                "{table} lists the best {units} by validation score{reached}.",
                table=table,
                units=f"{unit}s",
                reached=reached,
            ),
            table,
            *(ranking_blocks(inputs) if "ranking" in inputs.tables else []),
            text(
                "The final models chosen from these scores are listed in {finals}, and their "
                "training curves are shown in {curves}.",
                finals=finals,
                curves=curves,
            ),
            finals,
            curves,
            *cost_blocks(inputs),
        ],
    )
