"""The chapters of the segmentation thesis (the default task, `ReportInputs.under`'s): the
data, preprocessing, methods and results chapters and the appendices, and the summary's
paragraphs on the final models."""

from __future__ import annotations

import pandas as pd

from segsweep.numerals import number, plural
from segsweep.report.chapters import appendix, data, methods, preprocessing, results
from segsweep.report.chapters.summary import mean_interval
from segsweep.report.document import Chapter, Document, Paragraph, Table, text
from segsweep.report.inputs import ReportInputs, read_table
from segsweep.sweep.grammar import sweep_runs


def chapters(inputs: ReportInputs, all_runs: Table) -> list[Chapter]:
    """The thesis's chapters, `all_runs` the appendix's table of every run (the results cite
    it)."""
    runs = sweep_runs(inputs.config, inputs.sweep)
    inputs_used = any(run.params.get("inputs") for run in runs)
    return [
        data.chapter(inputs),
        preprocessing.chapter(inputs, inputs_used),
        methods.chapter(inputs),
        results.chapter(inputs, all_runs),
        *appendix.chapters(inputs, all_runs),
    ]


def final_summary(inputs: ReportInputs, document: Document) -> list[Paragraph]:
    """The summary's paragraphs on the final models: their per-patient foreground Dice on the
    test set, processed and native."""
    metrics = read_table(inputs.tables["metrics_summary"], text=["run_id", "split", "space"])
    test = metrics[(metrics["split"] == "test") & (metrics["metric"] == "dice")]
    finals = pd.read_csv(inputs.final, dtype=str, keep_default_na=False)["run_id"].tolist()
    out = []
    for run in finals:
        parts = []
        for space in ("processed", "native"):
            table = document.find(f"metrics-test-{space}")
            row = test[(test["run_id"] == run) & (test["space"] == space)]
            if table is None or row.empty:
                continue
            row = row.iloc[0]
            parts.append(
                text(
                    "{mean}{ci} in {space} space ({table})",
                    mean=number(row["mean"]),
                    ci=mean_interval(row),
                    space=space,
                    table=table,
                )
            )
            patients = int(row["patients"])
        if not parts:
            continue
        paragraph = text(
            "On the {n}, the final model {run} reached a mean per-patient foreground Dice of ",
            n=plural(patients, "test patient"),
            run=run,
        )
        for i, part in enumerate(parts):
            paragraph.parts += ([" and "] if i else []) + part.parts
        paragraph.parts.append(".")
        out.append(paragraph)
    return out
