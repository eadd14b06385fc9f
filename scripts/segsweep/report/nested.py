"""The thesis of a nested cross-validation (`split.outer_folds: m`): what the design estimates,
the pooled estimate with its interval and n, each outer fold's choice and held-out score, how
often each configuration was chosen, and the held-out patients' scores per outer fold
(`segsweep.sweep.nested` writes the tables). Each outer fold's own thesis, with its sweep's
tables and figures, lies in its results folder (`layout.outer`); this document names them.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from segsweep import layout  # noqa: E402
from segsweep.numerals import ci_text, integer, number, plural  # noqa: E402
from segsweep.plotting import save  # noqa: E402
from segsweep.report.document import (  # noqa: E402
    Chapter,
    Document,
    Figure,
    Section,
    Table,
    text,
)
from segsweep.report.render import TEMPLATES, render_html, render_pdf  # noqa: E402
from segsweep.sweep.nested import POOLED  # noqa: E402
from segsweep.vocabulary import METRIC_NAMES  # noqa: E402


def metric_name(selection: dict[str, Any]) -> str:
    """The selection's metric as the thesis names it (e.g. "Dice")."""
    return METRIC_NAMES.get(selection["metric"], selection["metric"])


def score_name(selection: dict[str, Any]) -> str:
    """The score as the text says it: e.g. "mean per-patient foreground Dice"."""
    return f"{selection['aggregate']} per-patient {selection['class']} {metric_name(selection)}"


def draw_held_out(patients: pd.DataFrame, selection: dict[str, Any], png: Path) -> None:
    """Each held-out patient's score by the outer fold that predicted it (points over boxes)."""
    rows = patients[(patients["class"] == selection["class"]) & (patients["space"] == "processed")]
    folds = sorted(rows["outer_fold"].unique())
    values = [rows.loc[rows["outer_fold"] == f, selection["metric"]].astype(float) for f in folds]
    fig, axes = plt.subplots(figsize=(max(3.0, 1.2 * len(folds) + 1.5), 3.2))
    axes.boxplot(values, showfliers=False)
    for i, v in enumerate(values, start=1):
        axes.scatter([i] * len(v), v, s=14, alpha=0.8, zorder=3)
    axes.set_xticks(range(1, len(folds) + 1), [f"outer fold {f}" for f in folds])
    axes.set_ylabel(f"{selection['class']} {metric_name(selection)} (held out)")
    axes.set_ylim(-0.03, 1.03)  # every selection metric lies on [0, 1]
    save(fig, png)


def build(
    config: dict[str, Any],
    summary: pd.DataFrame,
    choices: pd.DataFrame,
    figure: Path,
    date: str | None = None,
) -> Document:
    """The numbered nested-CV thesis."""
    split, selection = config["split"], config["selection"]
    m, k = int(split["outer_folds"]), int(split["folds"] or 0)
    pooled = summary[summary["outer_fold"].astype(str) == POOLED].iloc[0]
    folds = summary[summary["outer_fold"].astype(str) != POOLED]
    name = score_name(selection)
    inner = f"{k}-fold cross-validation" if k else "one train/validation split"
    per_fold = Table.of(
        "nested-folds",
        f"Each outer fold: its held-out patients, the configuration the procedure chose on the "
        f"other patients (by {inner}), that configuration's inner cross-validated score and "
        f"its {name} on the held-out patients.",
        pd.DataFrame(
            [
                [
                    str(r["outer_fold"]),
                    integer(r["patients"]),
                    r["configuration"],
                    number(r["inner_score"]),
                    number(r["score"]),
                ]
                for _, r in folds.iterrows()
            ],
            columns=["Outer fold", "Held-out patients", "Chosen", "Inner score", "Held-out score"],
        ),
    )
    chosen = Table.of(
        "nested-choices",
        f"How often each configuration was chosen, over the {m} outer folds.",
        pd.DataFrame(
            [
                [r["configuration"], integer(r["chosen"]), r["outer_folds"]]
                for _, r in choices.iterrows()
            ],  # fmt: skip
            columns=["Configuration", "Chosen", "Outer folds"],
        ),
    )
    plot = Figure.of(
        "nested-held-out",
        f"Per-patient {selection['class']} {metric_name(selection)} of every held-out patient, by "
        f"the outer fold whose model predicted it ({plural(int(pooled['patients']), 'patient')}"
        " in all).",
        figure,
    )
    design = Section(
        "nested-design",
        "Design",
        [
            text(
                f"The labelled patients were dealt into {m} outer folds (stratified by "
                f"{split.get('stratify') or 'nothing'}, seeded). For each outer fold, the whole "
                "procedure ran on the other outer folds' patients only: the crop plan and the "
                f"normalisation statistics, the sweep with {inner}, the selection of every run's "
                "checkpoint, the choice of the final configuration and its fold ensemble. The "
                "chosen model then predicted the outer fold's patients, which no step had seen."
            ),
            text(
                "Every labelled patient was thus predicted once, by a model that never saw it. "
                f"The pooled {name} estimates how well this procedure — sweep, selection and "
                "ensemble together — segments new patients from a cohort like this one when "
                "it is run on a cohort of this size. It does not describe one particular "
                "model: the outer folds may choose different configurations, and a model "
                "trained by the procedure on all patients is not among those tested."
            ),
        ],
    )
    results = Section(
        "nested-results",
        "Results",
        [
            text(
                f"Pooled over the {plural(int(pooled['patients']), 'held-out patient')}, the "
                f"{name} is {number(pooled['score'])}, 95 % percentile-bootstrap interval "
                f"{ci_text(pooled['ci_low'], pooled['ci_high'])} (resampling patients). "
                "{per_fold} gives each outer fold's choice and score; {chosen} how often each "
                "configuration was chosen; {plot} every held-out patient.",
                per_fold=per_fold,
                chosen=chosen,
                plot=plot,
            ),
            per_fold,
            chosen,
            plot,
            text(
                "Each outer fold's own thesis, with its sweep's tables and figures, is "
                + ", ".join(layout.outer(layout.THESIS_HTML, str(f)) for f in folds["outer_fold"])
                + "."
            ),
        ],
    )
    report = config.get("report", {})
    document = Document(
        title=report.get("title", "Segmentation sweep") + ": nested cross-validation",
        author=report.get("author", ""),
        date=date or datetime.date.today().isoformat(),
        generated=f"Generated by segsweep from {m} outer folds of nested cross-validation.",
        chapters=[Chapter("nested", "1", "Nested cross-validation", [design, results])],
    )
    document.summary = [
        text(
            f"Nested cross-validation ({m} outer × {inner}) estimates the procedure's {name} "
            f"at {number(pooled['score'])} {ci_text(pooled['ci_low'], pooled['ci_high'])}, "
            f"over {plural(int(pooled['patients']), 'patient')} ({{per_fold}}).",
            per_fold=per_fold,
        )
    ]
    return document.number()


def main(argv: list[str] | None = None) -> None:
    """Write the nested-CV thesis (HTML, PDF) and its figure from summary.csv and choices.csv."""
    parser = argparse.ArgumentParser(prog="segsweep nested-report", description=main.__doc__)
    parser.add_argument("--config-json", required=True)
    parser.add_argument("--patients", type=Path, required=True, help="nested per_patient.csv")
    parser.add_argument("--summary", type=Path, required=True)
    parser.add_argument("--choices", type=Path, required=True)
    parser.add_argument("--out-figure", type=Path, required=True)
    parser.add_argument("--out-html", type=Path, required=True)
    parser.add_argument("--out-pdf", type=Path, required=True)
    args = parser.parse_args(argv)
    config = json.loads(args.config_json)
    patients = pd.read_csv(args.patients, dtype={"patient_id": str, "outer_fold": str})
    draw_held_out(patients, config["selection"], args.out_figure)
    summary = pd.read_csv(args.summary, dtype={"outer_fold": str}, keep_default_na=False)
    summary = summary.replace("", None).infer_objects()
    for column in ("patients", "inner_score", "score", "ci_low", "ci_high"):
        summary[column] = pd.to_numeric(summary[column], errors="coerce")
    choices = pd.read_csv(args.choices, dtype=str)
    document = build(config, summary, choices, args.out_figure)
    html = render_html(document, TEMPLATES)
    args.out_html.parent.mkdir(parents=True, exist_ok=True)
    args.out_html.write_text(html, encoding="utf-8")
    pages = render_pdf(html, args.out_pdf)
    print(f"wrote {args.out_html} and {args.out_pdf} ({pages} pages)")


if __name__ == "__main__":
    main()
