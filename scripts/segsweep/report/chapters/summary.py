"""The summary after the title page, written from the results as a thesis abstract reads: what
was swept and on how many patients, the best configuration with its score and interval, which
hyperparameters made a difference and which did not (with the test and n behind each claim),
with several seeds whether the best setting beats the runner-up beyond seed noise, and the final
models' test result in both spaces.

Every sentence cites the table it comes from, found in the numbered document by its key, and
writes its numbers as that table does (the same CSVs, the same formatting), so the summary claims
nothing a table does not show. A sentence whose table the document lacks is left out.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from segsweep.numerals import NA, ci_text, number, p_value, plural
from segsweep.report.chapters import budget, seeds, sites
from segsweep.report.chapters.sweep_results import experiment
from segsweep.report.document import Document, Paragraph, join_words, text
from segsweep.report.inputs import ReportInputs, read_table
from segsweep.sweep.grammar import sweep_runs, swept_names
from segsweep.vocabulary import format_level

ALPHA = 0.05  # the level below which a test's p counts as a difference


def summary(
    inputs: ReportInputs,
    document: Document,
    final: Callable[[ReportInputs, Document], list[Paragraph]],
) -> list[Paragraph]:
    """The summary's paragraphs (the document numbered, so its tables can be found), `final`
    writing those on the final models' test (the thesis's `final_summary`)."""
    paragraphs = [_sweep(inputs, document), _best(inputs, document), _effects(inputs, document)]
    paragraphs.append(seeds.summary_sentence(inputs, document))
    paragraphs.append(budget.summary_sentence(inputs, document))
    paragraphs += final(inputs, document)
    paragraphs.append(sites.summary_sentence(inputs, document))
    return [p for p in paragraphs if p is not None]


def _sweep(inputs: ReportInputs, document: Document) -> Paragraph | None:
    runs_table, splits_table = document.find("all-runs"), document.find("splits")
    if runs_table is None or splits_table is None:
        return None
    runs = sweep_runs(inputs.config, inputs.sweep)
    names = swept_names(inputs.sweep)
    levels = [
        f"“{name}” ({plural(len({str(r.params.get(name)) for r in runs}), 'level')})"
        for name in names
    ]
    assigned = pd.read_csv(inputs.splits, dtype=str)
    group = inputs.config.get("split", {}).get("group")
    if inputs.thesis.rows_per_study and group in assigned:  # count the studies' patients
        assigned = assigned.drop_duplicates(["split", group])
    splits = assigned["split"].value_counts()
    development = int(splits.get("train", 0) + splits.get("val", 0))
    folds = int(inputs.config.get("split", {}).get("folds") or 0)
    sites = inputs.config.get("split", {}).get("fold_sites")
    design = (
        f"leave-one-site-out cross-validation over {plural(folds, 'site')}"
        if sites
        else f"{folds}-fold cross-validation"
    )
    how = (
        f"in {design} on {plural(development, 'development patient')}"
        if folds
        else f"on {plural(int(splits.get('train', 0)), 'training patient')}, selected on "
        f"{plural(int(splits.get('val', 0)), 'validation patient')}"
    )
    swept = str(join_words(levels)) if levels else "no hyperparameter"
    return text(
        "The sweep trained {runs} over {swept} {how}, and tested the final models on {test} "
        "({table}, {splits}).",
        runs=plural(len(runs), "run"),
        swept=swept,
        how=how,
        test=plural(int(splits.get("test", 0)), "test patient"),
        table=runs_table,
        splits=splits_table,
    )


def _best(inputs: ReportInputs, document: Document) -> Paragraph | None:
    table = document.find("best-runs")
    if table is None:
        return None
    best = read_table(inputs.tables["best_runs"], text=["run_id"])
    if best.empty:
        return None
    top = best.sort_values("rank").iloc[0]
    names = [n for n in swept_names(inputs.sweep) if n in best.columns]
    levels = ", ".join(f"{n} = {format_level(top[n])}" for n in names)
    return text(
        "The best {unit}, {run}{levels}, reached a {score} of {value}{ci} on the validation "
        "set, over {patients} ({table}).",
        unit=experiment(inputs),
        run=top["run_id"],
        levels=f" ({levels})" if levels else "",
        score=inputs.thesis.score_label(inputs.config["selection"]),
        value=number(top["score"]),
        ci=mean_interval(top),
        patients=plural(int(top["patients"]), "patient"),
        table=table,
    )


def _effects(inputs: ReportInputs, document: Document) -> Paragraph | None:
    """Which hyperparameters' levels differed (Kruskal–Wallis over the runs' scores) and, with
    the per-patient paired test of the configurations, whether they differed per patient."""
    table = document.find("kruskal")
    if table is None:
        return None
    tests = read_table(inputs.tables["kruskal"], text=["hyperparameter", "best", "worst"])
    unit = experiment(inputs)
    if tests.dropna(subset=["p"]).empty:
        return text(
            "With {n}, no test of the hyperparameters' effects is defined ({table}).",
            n=plural(int(tests["n"].max()), unit) if len(tests) else "no " + unit,
            table=table,
        )
    tests = tests.dropna(subset=["p"])

    def claim(row: pd.Series) -> str:
        test = f"H = {number(row['H'])}, {p_is(row['p'])}, n = {plural(int(row['n']), unit)}"
        if row["p"] < ALPHA:
            test += f"; best {format_level(row['best'])}, worst {format_level(row['worst'])}"
        return f"“{row['hyperparameter']}” ({test})"

    differed = [claim(row) for _, row in tests.iterrows() if row["p"] < ALPHA]
    not_differed = [claim(row) for _, row in tests.iterrows() if row["p"] >= ALPHA]
    sentences = []
    if differed:
        sentences.append(f"the levels of {join_words(differed)} differed")
    if not_differed:
        those = "those of " if differed else "the levels of "
        sentences.append(f"{those}{join_words(not_differed)} showed no detectable difference")
    paragraph = text(
        "Across the {unit}s (Kruskal–Wallis, α = {alpha}), {claims} ({table}).",
        unit=unit,
        alpha=ALPHA,
        claims="; ".join(sentences),
        table=table,
    )
    paired = document.find("configuration-tests")
    if paired is not None:
        friedman = read_table(inputs.tables["configuration_tests"], text=["split", "test", "a"])
        friedman = friedman[friedman["test"] == "Friedman"]
        if len(friedman):
            row = friedman.iloc[0]
            verdict = "differed" if row["p"] < ALPHA else "did not differ detectably"
            paragraph.parts += text(
                " Compared patient by patient, the {unit}s {verdict} (Friedman, "
                "{p}, n = {n}; {table}).",
                unit=unit,
                verdict=verdict,
                p=p_is(row["p"]),
                n=plural(int(row["n"]), "patient"),
                table=paired,
            ).parts
    return paragraph


def p_is(p: float) -> str:
    """ "p = 0.121", or "p < 0.001" (not "p = < 0.001")."""
    text = p_value(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def mean_interval(row: pd.Series) -> str:
    """ " [low, high]" after a mean, nothing when the interval is undefined."""
    interval = ci_text(row["ci_low"], row["ci_high"])
    return "" if interval == NA else f" {interval}"
