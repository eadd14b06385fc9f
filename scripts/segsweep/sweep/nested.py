"""Nested cross-validation (`split.outer_folds: m`): the estimate of the whole procedure.

The workflow of outer fold o runs the whole procedure (crop plan, normalisation, the sweep on
its inner folds, selection, the choice of the final configuration and its fold ensemble) on the
patients outside outer fold o, and its final models predict outer fold o's patients, its test
split. `held_out_table` keeps, of one outer fold, the per-patient test rows of the model the
procedure chose (the first of final.csv) with the configuration's inner cross-validated score;
`estimate` pools the outer folds: every labelled patient is predicted exactly once by a model
that never saw it, so the pooled per-patient scores estimate how well the procedure, run on a
cohort like this one, segments new patients (not how well one particular model does). Its
interval resamples patients (percentile bootstrap, `segsweep.sweep.stats`).

Tables: held_out.csv is the chosen model's test per_patient.csv rows (every class and space)
with outer_fold, configuration and inner_score; per_patient.csv pools them; summary.csv has one
row per outer fold (n patients, chosen configuration, inner score, held-out score) and an "all"
row (the pooled estimate with ci_low, ci_high); choices.csv counts how often each configuration
was chosen. Scores are the selection's metric and class in processed space, aggregated as the
selection aggregates (mean or median).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from segsweep.errors import InputError
from segsweep.io.records import write_csv
from segsweep.sweep.stats import bootstrap_ci

POOLED = "all"  # summary.csv's row of the pooled estimate


def held_out_table(
    final: pd.DataFrame,
    configurations: pd.DataFrame,
    test_per_patient: Mapping[str, str | Path],
    outer_fold: int,
) -> pd.DataFrame:
    """The test rows of the model outer fold `outer_fold` chose (final.csv's first row), with
    outer_fold, configuration and inner_score (its configurations.csv score)."""
    if final.empty:
        raise InputError(None, "final.csv", f"outer fold {outer_fold} chose no final model")
    chosen = str(final["run_id"].iloc[0])
    if chosen not in test_per_patient:
        raise InputError(chosen, None, "no test per_patient.csv of the chosen model")
    table = pd.read_csv(test_per_patient[chosen], dtype={"patient_id": str})
    scores = configurations.set_index(configurations["configuration"].astype(str))["score"]
    return table.assign(
        outer_fold=outer_fold, configuration=chosen, inner_score=float(scores.get(chosen))
    )


def _scores(pooled: pd.DataFrame, selection: Mapping[str, Any]) -> pd.DataFrame:
    metric, name = selection["metric"], selection["class"]
    if metric not in pooled:
        raise InputError(None, "held_out.csv", f"no column for the selection metric {metric}")
    rows = pooled[(pooled["class"] == name) & (pooled["space"] == "processed")]
    return rows.assign(score=rows[metric].astype(float))


def estimate(
    held_out: list[pd.DataFrame], selection: Mapping[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(per_patient, summary, choices) of the outer folds' held-out tables; InputError when a
    patient is predicted by two outer folds (the outer folds must be disjoint)."""
    pooled = pd.concat(held_out, ignore_index=True)
    scores = _scores(pooled, selection)
    twice = scores["patient_id"][scores["patient_id"].duplicated()]
    if len(twice):
        raise InputError(str(twice.iloc[0]), None, "held out by two outer folds")
    aggregate = selection["aggregate"]
    rows = []
    for fold, group in scores.groupby("outer_fold", sort=True):
        rows.append(
            {
                "outer_fold": str(fold),
                "patients": len(group),
                "configuration": group["configuration"].iloc[0],
                "inner_score": float(group["inner_score"].iloc[0]),
                "score": float(group["score"].agg(aggregate)),
            }
        )
    low, high = bootstrap_ci(scores["score"].to_numpy(), aggregate)
    rows.append(
        {
            "outer_fold": POOLED,
            "patients": len(scores),
            "configuration": "",
            "inner_score": float("nan"),
            "score": float(scores["score"].agg(aggregate)),
            "ci_low": low,
            "ci_high": high,
        }
    )
    summary = pd.DataFrame(rows)
    per_fold = summary[summary["outer_fold"] != POOLED]
    choices = (
        per_fold.groupby("configuration")["outer_fold"]
        .agg(chosen="count", outer_folds=lambda f: " ".join(f))
        .reset_index()
        .sort_values(["chosen", "configuration"], ascending=[False, True])
    )
    return pooled, summary, choices


def main(argv: list[str] | None = None) -> None:
    """`segsweep nested held-out`: one outer fold's held-out table; `segsweep nested
    estimate`: the pooled estimate of every outer fold's."""
    parser = argparse.ArgumentParser(prog="segsweep nested", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("held-out", help="the chosen model's test rows of one outer fold")
    one.add_argument("--final", type=Path, required=True, help="the outer fold's final.csv")
    one.add_argument("--configurations", type=Path, required=True, help="configurations.csv")
    one.add_argument("--tables", nargs="+", default=[], help="RUN=its test per_patient.csv")
    one.add_argument("--outer-fold", type=int, required=True)
    one.add_argument("--out", type=Path, required=True)
    pooled = commands.add_parser("estimate", help="pool the outer folds' held-out tables")
    pooled.add_argument("--held-out", type=Path, nargs="+", required=True)
    pooled.add_argument("--selection-json", required=True, help="the config's selection")
    pooled.add_argument("--out-patients", type=Path, required=True)
    pooled.add_argument("--out-summary", type=Path, required=True)
    pooled.add_argument("--out-choices", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "held-out":
        tables = dict(item.split("=", 1) for item in args.tables)
        table = held_out_table(
            pd.read_csv(args.final, dtype={"run_id": str}),
            pd.read_csv(args.configurations, dtype={"configuration": str}),
            tables,
            args.outer_fold,
        )
        write_csv(table, args.out)
        print(f"wrote {args.out} ({table['patient_id'].nunique()} patients)")
        return
    held_out = [pd.read_csv(p, dtype={"patient_id": str}) for p in args.held_out]
    patients, summary, choices = estimate(held_out, json.loads(args.selection_json))
    write_csv(patients, args.out_patients)
    write_csv(summary, args.out_summary)
    write_csv(choices, args.out_choices)
    print(summary.to_string(index=False))


if __name__ == "__main__":
    main()
