"""Section "Results by site" of the results, wherever the data name two or more labelled sites
(the manifest's `source`): per final model and split, each site's per-patient foreground Dice
(processed space) with n, mean, median and interval; a Kruskal-Wallis test of whether the sites
differ, with n per site; the figure of the test patients by site; and the sites left out because
none of their subjects is labelled. On validation a site's patients are scored out of fold: with
leave-one-site-out (`split.folds: by_source`) by the fold model trained without that site. The
summary names the weakest site on test (`summary_sentence`).

The tables are computed here, in the report stage, from splits.csv and the final models' test
and validation per_patient.csv (`segsweep.sweep.sites`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from segsweep.numerals import ci_text, integer, number, p_value, plural
from segsweep.report.document import Document, Figure, Paragraph, Section, Table, text
from segsweep.report.inputs import ReportInputs
from segsweep.sweep.grammar import configurations, sweep_runs
from segsweep.sweep.sites import (
    foreground_scores,
    labelled_sites,
    site_of,
    site_table,
    site_test,
    unlabelled_sites,
)
from segsweep.sweep.stats import BOOTSTRAP_RESAMPLES

SPLIT_NAMES = {"val": "validation", "test": "test"}


def _finals(inputs: ReportInputs) -> list[str]:
    return pd.read_csv(inputs.final, keep_default_na=False)["run_id"].astype(str).tolist()


def site_frames(inputs: ReportInputs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(sites, tests): per final model and split (validation from its runs' per_patient tables,
    test from its own) one row per site, and one Kruskal-Wallis row; empty with fewer than two
    labelled sites."""
    splits = pd.read_csv(inputs.splits, dtype=str)
    if len(labelled_sites(splits)) < 2:
        return pd.DataFrame(), pd.DataFrame()
    sites = site_of(splits)
    members = configurations(sweep_runs(inputs.config, inputs.sweep))
    rows, tests = [], []
    for model in _finals(inputs):
        val = [
            pd.read_csv(inputs.val_per_patient[run.run_id], dtype={"patient_id": str})
            for run in members.get(model, [])
            if run.run_id in inputs.val_per_patient
        ]
        test = [pd.read_csv(inputs.test_per_patient[model], dtype={"patient_id": str})]
        for split, tables in (("val", val), ("test", test)):
            scores = foreground_scores(tables)
            table = site_table(scores, sites)
            rows.append(table.assign(model=model, split=split))
            tests.append({"model": model, "split": split, **site_test(scores, sites)})
    return pd.concat(rows, ignore_index=True), pd.DataFrame(tests)


def _leave_one_site_out(config: dict[str, Any]) -> bool:
    return bool(config.get("split", {}).get("fold_sites"))


def sections(inputs: ReportInputs) -> list[Section]:
    """The section "Results by site" (a list of it), empty with fewer than two labelled
    sites."""
    table, tests = site_frames(inputs)
    if table.empty:
        return []
    splits = pd.read_csv(inputs.splits, dtype=str)
    loso = _leave_one_site_out(inputs.config)
    folds = int(inputs.config.get("split", {}).get("folds") or 0)
    val_note = (
        "On validation each site's patients were predicted by the fold model trained without "
        "that site (leave-one-site-out): the score of a site the model never saw."
        if loso
        else "On validation the patients are scored out of fold: each by the fold model that "
        "did not train on it, which trained on other patients of the same sites."
        if folds
        else "On validation the patients are those of the validation split."
    )
    sites_table = Table.of(
        "sites",
        "Per-patient foreground Dice (processed space) of each final model by site, on "
        "validation and on test: patients, mean, median and the percentile-bootstrap 95 % "
        "interval of the mean.",
        pd.DataFrame(
            [
                [
                    r["model"],
                    SPLIT_NAMES[r["split"]],
                    r["site"],
                    integer(r["patients"]),
                    number(r["mean"]),
                    number(r["median"]),
                    ci_text(r["ci_low"], r["ci_high"]),
                ]
                for _, r in table.iterrows()
            ],
            columns=["Model", "Split", "Site", "Patients", "Mean", "Median", "95 % CI"],
        ),
        notes=[
            f"The interval resamples the site's patients ({BOOTSTRAP_RESAMPLES} resamples, "
            "seeded); a site of one patient has none.",
            val_note,
        ],
    )
    tests_table = Table.of(
        "site-tests",
        "Kruskal–Wallis test of whether the sites differ in per-patient foreground Dice, per "
        "final model and split, with the patients of each site.",
        pd.DataFrame(
            [
                [
                    r["model"],
                    SPLIT_NAMES[r["split"]],
                    r["patients"],
                    number(r["h"]),
                    p_value(r["p"]),
                ]
                for _, r in tests.iterrows()
            ],
            columns=["Model", "Split", "Patients per site", "H", "p"],
        ),
        notes=["A dash: fewer than two sites with patients, or every score equal."],
    )
    blocks: list[Any] = [
        text(
            "{sites} gives each final model's per-patient foreground Dice by site (the "
            "manifest's source) and {tests} tests whether the sites differ; every row says how "
            "many patients it rests on.",
            sites=sites_table,
            tests=tests_table,
        ),
        sites_table,
        tests_table,
    ]
    if "boxplot_sites" in inputs.figures:
        figure = Figure.of(
            "boxplot-sites",
            "Per-patient foreground Dice of the final models on the test set, by site; each "
            "tick gives the site's number of test patients.",
            inputs.figures["boxplot_sites"],
        )
        blocks += [text("{figure} shows the test patients by site.", figure=figure), figure]
    left_out = unlabelled_sites(splits)
    if left_out:
        blocks.append(
            text(
                f"Left out: {', '.join(left_out)}, whose subjects are all unlabelled, so no "
                "score can be computed there."
            )
        )
    return [Section("sites", "Results by site", blocks)]


def summary_sentence(inputs: ReportInputs, document: Document) -> Paragraph | None:
    """The weakest site on test, per final model (lowest mean Dice), citing the site table;
    None without it."""
    placed = document.find("sites")
    if placed is None:
        return None
    table, _ = site_frames(inputs)
    test = table[table["split"] == "test"].dropna(subset=["mean"])
    parts = []
    for model, rows in test.groupby("model", sort=False):
        if len(rows) < 2:
            continue
        weakest = rows.loc[rows["mean"].idxmin()]
        parts.append(
            f"the weakest site of {model} was {weakest['site']} (mean Dice "
            f"{number(weakest['mean'])} over {plural(int(weakest['patients']), 'test patient')})"
        )
    if not parts:
        return None
    return text("On test, " + "; ".join(parts) + " ({t}).", t=placed)
