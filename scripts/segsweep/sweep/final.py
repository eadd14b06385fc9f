"""Choose the final models on validation only: the best configurations overall and, per group,
the best configuration of each combination of `final.group_by` hyperparameters (the PET/CT
thesis took the best model per input modality). Only these are ever scored on the test set.

A configuration's score is its validation score (`segsweep.sweep.configurations`): its run's
selection score, or with cross-validation the aggregate of its pooled out-of-fold scores. A
final model is then its configuration's run, or with folds its fold ensemble (and its best
fold), written in final.csv under the configuration's id (column `run_id`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from segsweep.io.records import write_csv
from segsweep.sweep.configurations import Scorer, configuration_table
from segsweep.sweep.grammar import Run
from segsweep.sweep.seeds import seed_averaged_choice, seed_scores
from segsweep.vocabulary import groupable


def selection_scores(
    runs: list[Run],
    selections: Mapping[str, str | Path],
    val_tables: Mapping[str, str | Path] | None = None,
    selection: dict[str, Any] | None = None,
    scorer: Scorer | None = None,
) -> pd.DataFrame:
    """Each configuration's validation score (column `run_id`: its id) with its
    hyperparameters (lists such as `inputs` as display text, `ct+pet`, so they can be grouped
    by); configurations with a failed run are left out: they have no model to choose.
    `val_tables` (each run's validation table at the selection level) and `selection` (the
    config section) are needed with cross-validation, for the out-of-fold scores; `scorer`
    scores the pooled tables of the classification task (`configuration_table`)."""
    table = configuration_table(runs, selections, val_tables, selection, scorer)
    params = {run.configuration: groupable(run.params) for run in runs}
    rows = []
    for row in table.itertuples(index=False):
        if row.status != "ok":
            print(f"skipping {row.configuration}: its training {row.status} ({row.error})")
            continue
        hp = {k: v for k, v in params[row.configuration].items() if k != "fold"}
        rows.append({"run_id": row.configuration, **hp, "score": row.score})
    names = [k for k in (runs[0].params if runs else []) if k != "fold"]
    return pd.DataFrame(rows, columns=["run_id", *names, "score"])


def choose_final(
    scores: pd.DataFrame, n_best: int, group_by: list[str], higher_is_better: bool
) -> pd.DataFrame:
    """Rows (run_id, group, score): `overall` for the n best runs, `name=value, …` per group.

    Runs with an undefined score (NaN) are never chosen; ties go to the smaller run id so the
    choice is reproducible.
    """
    unknown = sorted(set(group_by) - set(scores.columns))
    if unknown:
        raise ValueError(f"final.group_by names unknown hyperparameters: {unknown}")
    defined = scores["score"].map(lambda s: s is not None and not math.isnan(s)).astype(bool)
    ranked = scores[defined]
    ranked = ranked.sort_values(["score", "run_id"], ascending=[not higher_is_better, True])
    ranked = ranked.reset_index(drop=True)
    if ranked.empty:
        raise ValueError(
            "no run has a defined validation score (or every training failed); "
            "cannot choose final models"
        )
    groups: dict[str, list[str]] = {}
    for run_id in ranked["run_id"].head(n_best):
        groups.setdefault(run_id, []).append("overall")
    if group_by:
        for key, group in ranked.groupby(group_by, sort=True):
            values = key if isinstance(key, tuple) else (key,)
            label = ", ".join(f"{n}={v}" for n, v in zip(group_by, values, strict=True))
            groups.setdefault(group["run_id"].iloc[0], []).append(label)
    score = ranked.set_index("run_id")["score"]
    rows = [{"run_id": r, "group": "; ".join(g), "score": score[r]} for r, g in groups.items()]
    return pd.DataFrame(rows, columns=["run_id", "group", "score"])


def write_final(
    config: dict[str, Any],
    runs: list[Run],
    selections: Mapping[str, str | Path],
    val_tables: Mapping[str, str | Path],
    out: str | Path,
    scorer: Scorer | None = None,
    seed_averaged: bool = False,
    candidates: list[str] | None = None,
) -> pd.DataFrame:
    """results/summary/final.csv from the selection.json of `runs` (the configurations the
    choice is made among: under successive halving those that reached the last rung) and the
    validation table that scores a configuration (both by run id), scored by `scorer` (None:
    the per-patient or per-slice aggregate). `seed_averaged` (the sweep confirms its top
    settings with more seeds): the n_best settings on their seed-averaged score
    (`segsweep.sweep.seeds`; `group_by` does not apply), each by a configuration of
    `candidates` (the ones that reached the last rung; None: any)."""
    higher = config["selection"]["higher_is_better"]
    if seed_averaged:
        scores, _ = seed_scores(runs, selections, val_tables, config["selection"], scorer)
        n_best = config["final"]["n_best"]
        final = seed_averaged_choice(scores, n_best, higher, candidates)
    else:
        final = choose_final(
            selection_scores(runs, selections, val_tables, config["selection"], scorer),
            n_best=config["final"]["n_best"],
            group_by=config["final"]["group_by"],
            higher_is_better=higher,
        )
    write_csv(final, out)
    print(final.to_string(index=False))
    return final
