"""Choose the final models on validation only: the best runs overall and, per group, the best run
of each combination of `final.group_by` hyperparameters (the PET/CT thesis took the best model per
input modality). Only these runs are ever scored on the test set.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from segsweep import layout
from segsweep.cli import add_sweep_options, sweep_options
from segsweep.io.records import read_json, write_csv
from segsweep.sweep.grammar import Run, expand_sweep
from segsweep.vocabulary import groupable


def selection_scores(runs: list[Run], selections: Mapping[str, str | Path]) -> pd.DataFrame:
    """Each run's selected validation score (its selection.json, by run id) with its
    hyperparameters (lists such as `inputs` as display text, `ct+pet`, so they can be grouped
    by); failed runs (their selection.json says so) are left out: they have no model to
    choose."""
    rows = []
    for run in runs:
        selection = read_json(selections[run.run_id])
        if selection.get("status") == "failed":
            print(f"skipping {run.run_id}: its training failed ({selection['error']})")
            continue
        score = selection["selected"]["score"]
        rows.append({"run_id": run.run_id, **groupable(run.params), "score": score})
    return pd.DataFrame(rows, columns=["run_id", *(runs[0].params if runs else []), "score"])


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
    sweep: dict[str, Any],
    selections: Mapping[str, str | Path],
    out: str | Path,
) -> pd.DataFrame:
    """results/summary/final.csv from every run's selection.json (by run id)."""
    runs = expand_sweep(sweep, config["train"])
    final = choose_final(
        selection_scores(runs, selections),
        n_best=config["final"]["n_best"],
        group_by=config["final"]["group_by"],
        higher_is_better=config["selection"]["higher_is_better"],
    )
    write_csv(final, out)
    print(final.to_string(index=False))
    return final


def main(argv: list[str] | None = None) -> None:
    """Write the final models' table from every run's selection.json under --results."""
    parser = argparse.ArgumentParser(prog="segsweep final", description=main.__doc__)
    add_sweep_options(parser)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    config, sweep, results = sweep_options(args)
    runs = expand_sweep(sweep, config["train"])
    selections = {
        run.run_id: layout.under(results, layout.SELECTION, run=run.run_id) for run in runs
    }
    write_final(config, sweep, selections, args.out)


if __name__ == "__main__":
    main()
