"""The decisions of successive halving: which configurations of the sweep train on.

With `budget.method: halving` every configuration first trains to `min_epochs` (the first
rung). At each rung the configurations are ranked and the best 1/eta continue to the next rung,
at `min_epochs * eta**k` epochs, until the last rung at `train.epochs`; the others stop there.

A configuration's score at a rung is its selection score as the sweep scores configurations
(`segsweep.sweep.configurations`), over the checkpoints it has so far: the best checkpoint up to
the rung's epochs, with folds its pooled out-of-fold aggregate. Only "ok" configurations with a
defined score are ranked; failed, incomplete and unscored ones stop.

`prune: rank` stops every configuration below the best `kept(m, eta)` of the m ranked.
`prune: wilcoxon` stops, of those, only the ones significantly worse than the rung's best: a
one-sided Wilcoxon signed-rank test of their per-patient values against the best's, paired over
the patients both have, Holm-corrected over the configurations tested, at `alpha`. It needs
per-patient values, so a task with a scorer (classification: AUC over studies) cannot use it.

A pruned configuration is a result, not a deletion: it keeps its runs' files and its score at
the epochs it reached. When the grid grows after a decision, a configuration an earlier decision
promoted may already have trained past a rung that is decided again (`trained_further`): it is
kept whatever its new rank, since its further training is already spent.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from segsweep.errors import ConfigError
from segsweep.io.records import write_csv
from segsweep.numerals import plural, significant
from segsweep.sweep.configurations import AGGREGATES, Scorer, configuration_table, out_of_fold
from segsweep.sweep.grammar import Run, configurations
from segsweep.sweep.stats import _quiet, holm

SCORE_COLUMNS = ["configuration", "status", "score", "ci_low", "ci_high", "patients"]
COLUMNS = [
    *SCORE_COLUMNS,
    "rank",
    "promoted_by_rank",
    "p_value",
    "p_holm",
    "decision",
    "reason",
]
PATIENT_COLUMNS = ["configuration", "patient_id", "value"]
KEPT_FURTHER = "kept: already trained past this rung by an earlier decision"


def budget_of(sweep: Mapping[str, Any]) -> dict[str, Any]:
    """The sweep's `budget` with the sweep schema's defaults filled in."""
    text = resources.files("segsweep").joinpath("schemas/sweep.schema.yaml").read_text()
    properties = yaml.safe_load(text)["properties"]["budget"]["properties"]
    return {**{k: spec["default"] for k, spec in properties.items()}, **(sweep.get("budget") or {})}


def sweep_rungs(sweep: Mapping[str, Any], runs: list[Run], task: str = "segmentation") -> list[int]:
    """The epochs of every rung of the sweep's runs, the last their train.epochs ([epochs]
    without halving). Halving refuses runs of different train.epochs, and `prune: wilcoxon`
    under a task whose score is no mean over patients (classification)."""
    budget = budget_of(sweep)
    epochs = sorted({int(run.params["epochs"]) for run in runs})
    if budget["method"] != "halving":
        return epochs[-1:]
    if len(epochs) > 1:
        raise ConfigError(
            "sweep: budget.method", "halving", f"one train.epochs for every run, not {epochs}"
        )
    if budget["prune"] == "wilcoxon" and task != "segmentation":
        raise ConfigError(
            "sweep: budget.prune",
            "wilcoxon",
            f"rank under task: {task} (the paired test needs per-patient scores)",
        )
    return rungs(epochs[0], int(budget["min_epochs"]), int(budget["eta"]))


def rungs(epochs: int, min_epochs: int, eta: int) -> list[int]:
    """The epochs of each rung: min_epochs * eta**k (k = 0, 1, …) while below `epochs`, then
    `epochs` itself; [epochs] when min_epochs >= epochs."""
    steps, step = [], min_epochs
    while step < epochs:
        steps.append(step)
        step *= eta
    return [*steps, epochs]


def kept(n: int, eta: int) -> int:
    """How many of n ranked configurations a rung promotes by rank: n // eta, at least one
    (none of none)."""
    return max(1, n // eta) if n else 0


def decide(
    scores: pd.DataFrame,
    per_patient: pd.DataFrame,
    budget: dict[str, Any],
    higher_is_better: bool,
    trained_further: Collection[str] = (),
) -> pd.DataFrame:
    """One rung's decision: a row per configuration of `scores` (columns of
    `configuration_table`) with its rank (1 = best; ties to the smaller id; none unless ok
    with a defined score), the number rank promotes, the test's p-values (NaN where untested),
    its decision ("promoted" or "pruned") and the reason; sorted by rank, unranked last.

    `per_patient` (configuration, patient_id, value; one row per configuration and patient)
    feeds the paired test of `prune: wilcoxon`. A configuration of `trained_further` is
    promoted whatever its rank or status and never tested; it still takes its rank, and the
    number promoted by rank stays kept(m, eta) of all m ranked, so it adds to the promoted
    rather than taking a place of the best. An empty `scores` gives an empty table."""
    budget = budget_of({"budget": budget})
    table = scores.reindex(columns=SCORE_COLUMNS).reset_index(drop=True)
    ranked = table[(table["status"] == "ok") & table["score"].notna()]
    ranked = ranked.sort_values(["score", "configuration"], ascending=[not higher_is_better, True])
    m, promoted = len(ranked), kept(len(ranked), int(budget["eta"]))
    table["rank"] = pd.Series(range(1, m + 1), index=ranked.index).reindex(table.index)
    table["rank"] = table["rank"].astype("Int64")
    table["promoted_by_rank"] = promoted
    table["p_value"] = table["p_holm"] = math.nan
    verdicts, below = {}, []
    for index, row in table.iterrows():
        position = f"rank {row['rank']} of {m}"
        if not pd.isna(row["rank"]) and row["rank"] <= promoted:
            verdicts[index] = ("promoted", f"{position}: within the best {promoted}")
        elif row["configuration"] in trained_further:
            verdicts[index] = ("promoted", KEPT_FURTHER)
        elif pd.isna(row["rank"]):
            verdicts[index] = ("pruned", _unranked(row["status"]))
        else:
            verdicts[index] = ("pruned", f"{position}: below the best {promoted}")
            below.append(index)
    if budget["prune"] == "wilcoxon" and below:
        best = ranked["configuration"].iloc[0]
        verdicts.update(_tested(table, below, best, per_patient, budget, higher_is_better))
    table["decision"] = [verdicts[i][0] for i in table.index]
    table["reason"] = [verdicts[i][1] for i in table.index]
    table = table.sort_values(["rank", "configuration"], na_position="last")
    return table[COLUMNS].reset_index(drop=True)


def _unranked(status: str) -> str:
    """Why a configuration without a rank stops."""
    return status if status in ("failed", "incomplete") else "no defined score"


def _tested(
    table: pd.DataFrame,
    below: list[int],
    best: str,
    per_patient: pd.DataFrame,
    budget: dict[str, Any],
    higher_is_better: bool,
) -> dict[int, tuple[str, str]]:
    """Decisions of the rows `below` the promoted ranks under `prune: wilcoxon`, each tested
    against `best`; writes their p_value and p_holm into `table`. Untestable rows are kept."""
    alpha = float(budget["alpha"])
    tests = {
        index: _paired(per_patient, best, table.at[index, "configuration"], higher_is_better)
        for index in below
    }
    adjusted = holm([p for _, p, _ in tests.values()])
    verdicts = {}
    for (index, (n, p, untested)), p_holm in zip(tests.items(), adjusted, strict=True):
        table.loc[index, ["p_value", "p_holm"]] = p, p_holm
        test = f"one-sided Wilcoxon, n={n} patients, Holm p={significant(p_holm, 2)}"
        if untested:
            verdicts[index] = ("promoted", f"worse than {best} but not significantly: {untested}")
        elif p_holm < alpha:
            verdicts[index] = ("pruned", f"significantly worse than {best} ({test} < {alpha:g})")
        else:
            reason = f"worse than {best} but not significantly ({test} ≥ {alpha:g})"
            verdicts[index] = ("promoted", reason)
    return verdicts


def _paired(
    per_patient: pd.DataFrame, best: str, other: str, higher_is_better: bool
) -> tuple[int, float, str]:
    """(n, p, untested) of the one-sided Wilcoxon signed-rank test that `other` is worse than
    `best` over the n patients both have a value for; p is NaN and `untested` says why when
    the test cannot be made (fewer than two patients, every difference zero)."""
    defined = per_patient.dropna(subset=["value"])
    values = {
        c: defined[defined["configuration"] == c].set_index("patient_id")["value"]
        for c in (best, other)
    }
    patients = values[best].index.intersection(values[other].index)
    better = values[best].loc[patients].to_numpy(float) - values[other].loc[patients].to_numpy(
        float
    )
    if not higher_is_better:
        better = -better
    n = len(patients)
    if n < 2:
        return n, math.nan, f"only {plural(n, 'paired patient')}, too few for the test"
    if not np.any(better):
        return n, math.nan, f"all {n} paired differences are zero"
    result = _quiet(stats.wilcoxon, better, alternative="greater")
    return n, float(result.pvalue), ""


def rung_scores(
    runs: list[Run],
    selections: Mapping[str, str | Path],
    val_tables: Mapping[str, str | Path],
    selection: dict[str, Any],
    scorer: Scorer | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scores, per_patient) of the runs entering a rung (every fold of each configuration),
    from their selection.json and validation tables at the rung: scores as
    `configuration_table` gives them; per_patient (configuration, patient_id, value) with one
    defined value per patient of each ok configuration, out of fold, its slices aggregated by
    `selection["aggregate"]` at slice level. Empty with a `scorer`: its score is not a
    per-patient aggregate."""
    scores = configuration_table(runs, selections, val_tables, selection, scorer)
    if scorer is not None:
        return scores, pd.DataFrame(columns=PATIENT_COLUMNS)
    grouped = configurations(runs)
    aggregate = AGGREGATES[selection["aggregate"]]
    frames = []
    for configuration in scores.loc[scores["status"] == "ok", "configuration"]:
        pooled = out_of_fold(grouped[configuration], val_tables, selection).dropna(subset=["value"])
        values = pooled.groupby("patient_id", sort=True)["value"]
        values = values.agg(lambda v: aggregate(v.to_numpy(float))).reset_index()
        frames.append(values.assign(configuration=configuration))
    if not frames:
        return scores, pd.DataFrame(columns=PATIENT_COLUMNS)
    return scores, pd.concat(frames, ignore_index=True)[PATIENT_COLUMNS]


def write_decision(
    runs: list[Run],
    selections: Mapping[str, str | Path],
    val_tables: Mapping[str, str | Path],
    selection: dict[str, Any],
    budget: dict[str, Any],
    rung: int,
    epochs: int,
    next_epochs: int,
    out: str | Path,
    scorer: Scorer | None = None,
    trained_further: Collection[str] = (),
) -> pd.DataFrame:
    """The decision of rung `rung` (1-based, at `epochs`; the promoted go on to `next_epochs`)
    as a CSV at `out`, printed: the columns of `decide` after rung, epochs, next_epochs."""
    scores, per_patient = rung_scores(runs, selections, val_tables, selection, scorer)
    higher_is_better = bool(selection["higher_is_better"])
    decision = decide(scores, per_patient, budget, higher_is_better, trained_further)
    decision.insert(0, "next_epochs", next_epochs)
    decision.insert(0, "epochs", epochs)
    decision.insert(0, "rung", rung)
    write_csv(decision, out)
    print(decision.to_string(index=False))
    return decision
