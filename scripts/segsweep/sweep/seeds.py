"""The seed-noise floor under the sweep's ranking: how much a setting's score moves when only its
seed changes, and whether the best setting beats the others by more than that.

A setting is a configuration without its seed (`Run.setting`); each of its seeds (the sweep's
`repeats`, and the more seeds `confirm` adds to the top settings) is a configuration of its own,
scored out-of-fold as any other (`configuration_table`). A setting's seed-averaged score is the
mean over its seeds that trained ("ok"). Statistics are over patients, never slices: a
patient's value is the selection metric at patient level, or at slice level the selection's
aggregate of the patient's slices, and a setting's per-patient value is the mean over its seeds.

- `seed_spread`: each repeated setting's (≥ 2 seeds) mean, SD and range over its seeds;
- `seed_comparisons`: the best repeated setting against every other one, its difference set
  against the pooled seed SD and tested over the paired patients (two-sided Wilcoxon
  signed-rank, Holm's correction over the comparisons);
- `winner_stability`: per seed index, which repeated setting is first;
- `top_settings`, `seed_averaged_choice`: the ranking the confirm checkpoint and the final
  choice use.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from scipy import stats

from segsweep.io.records import write_csv
from segsweep.sweep.configurations import AGGREGATES, Scorer, configuration_table, out_of_fold
from segsweep.sweep.grammar import Run, configurations
from segsweep.sweep.stats import holm

SCORE_COLUMNS = ["setting", "configuration", "seed", "status", "score", "patients"]
PATIENT_COLUMNS = ["setting", "configuration", "seed", "patient_id", "value"]
SPREAD_COLUMNS = ["setting", "seeds", "mean", "sd", "min", "max", "range"]
TEST = "Wilcoxon signed-rank (two-sided)"
COMPARISON_COLUMNS = [
    "winner",
    "other",
    "winner_seeds",
    "other_seeds",
    "winner_mean",
    "other_mean",
    "difference",
    "winner_sd",
    "other_sd",
    "pooled_sd",
    "standardised",
    "test",
    "n",
    "statistic",
    "p",
    "p_holm",
    "distinguishable",
]
WINNER_COLUMNS = ["seed", "settings", "first", "score", "winner", "winner_first"]


def seed_scores(
    runs: list[Run],
    selections: Mapping[str, str | Path],
    val_tables: Mapping[str, str | Path],
    selection: dict[str, Any],
    scorer: Scorer | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scores, per_patient): per configuration (one seed of a setting) its setting, seed,
    status, validation score and patients (`configuration_table`); and per configuration that
    trained and patient its one value (at slice level the selection's aggregate of the
    patient's slices). With a `scorer` (a score that is no mean of per-patient values) there
    are no per-patient values: the second table is empty."""
    table = configuration_table(runs, selections, val_tables, selection, scorer)
    grouped = configurations(runs)
    first = {c: members[0] for c, members in grouped.items()}
    scores = pd.DataFrame(
        {
            "setting": [first[c].setting for c in table["configuration"]],
            "configuration": table["configuration"],
            "seed": [first[c].params.get("seed") for c in table["configuration"]],
            "status": table["status"],
            "score": table["score"].astype(float),
            "patients": table["patients"],
        },
        columns=SCORE_COLUMNS,
    )
    frames = []
    if scorer is None:
        for row in scores[scores["status"] == "ok"].itertuples(index=False):
            pooled = out_of_fold(grouped[row.configuration], val_tables, selection)
            values = _patient_values(pooled, selection["aggregate"])
            frames.append(
                values.assign(setting=row.setting, configuration=row.configuration, seed=row.seed)
            )
    per_patient = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return scores, per_patient.reindex(columns=PATIENT_COLUMNS)


def _patient_values(pooled: pd.DataFrame, aggregate: str) -> pd.DataFrame:
    """One value per patient of pooled validation rows (patient_id, value): the value itself
    at patient level, the `aggregate` of the patient's slices at slice level."""
    reduce = AGGREGATES[aggregate]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a patient of undefined values only
        values = pooled.groupby("patient_id", sort=True)["value"].agg(
            lambda v: reduce(v.to_numpy(float))
        )
    return values.rename("value").reset_index()


def _trained(scores: pd.DataFrame) -> pd.DataFrame:
    """The configurations that trained and have a defined score."""
    return scores[(scores["status"] == "ok") & scores["score"].notna()]


def _averaged(scores: pd.DataFrame, higher_is_better: bool) -> pd.DataFrame:
    """Per setting with a trained seed: setting, mean (over its trained seeds), seeds; best
    first, ties to the smaller id."""
    grouped = _trained(scores).groupby("setting")["score"].agg(["mean", "count"])
    table = grouped.rename(columns={"count": "seeds"}).reset_index()
    return table.sort_values(["mean", "setting"], ascending=[not higher_is_better, True])


def top_settings(
    scores: pd.DataFrame,
    k: int,
    higher_is_better: bool,
    reached: Mapping[str, int] | None = None,
) -> list[str]:
    """The k best settings by seed-averaged score (the mean over their trained seeds), best
    first, ties to the smaller id; settings without a trained seed are never among them. With
    `reached` (setting → the epochs it trained to, under successive halving) settings that
    trained further rank first: a score is compared only with scores of the same budget."""
    averaged = _averaged(scores, higher_is_better)
    if reached is not None:
        depth = averaged["setting"].map(lambda s: -reached.get(s, 0))
        averaged = averaged.assign(depth=depth).sort_values("depth", kind="stable")
    return averaged["setting"].head(k).tolist()


def seed_spread(scores: pd.DataFrame) -> pd.DataFrame:
    """Per setting with at least two trained seeds (sorted by id): the number of seeds, the
    mean, SD (ddof = 1), minimum, maximum and range of their scores; no rows when no setting
    is repeated."""
    trained = _trained(scores)
    grouped = trained.groupby("setting", sort=True)["score"]
    table = grouped.agg(seeds="count", mean="mean", sd="std", min="min", max="max")
    table = table[table["seeds"] >= 2].reset_index()
    table["range"] = table["max"] - table["min"]
    return table.reindex(columns=SPREAD_COLUMNS)


def _repeated(scores: pd.DataFrame, higher_is_better: bool) -> pd.DataFrame:
    """The settings with at least two trained seeds, best seed-averaged score first."""
    averaged = _averaged(scores, higher_is_better)
    return averaged[averaged["seeds"] >= 2]


def seed_comparisons(
    scores: pd.DataFrame,
    per_patient: pd.DataFrame,
    higher_is_better: bool,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """The best repeated setting (≥ 2 trained seeds, by seed-averaged score) against each other
    repeated one, in rank order (the runner-up first): the difference of their seed-averaged
    scores (winner − other), each one's seed SD and the pooled seed SD, the difference in
    pooled SDs, and a two-sided Wilcoxon signed-rank test over the n patients both score of
    the per-patient values averaged over each setting's seeds, Holm-corrected over the
    comparisons. Distinguishable: Holm's p < `alpha` and |difference| > pooled seed SD. No rows
    with fewer than two repeated settings; an undefined test (no per-patient values, all
    differences zero) leaves p NaN and the pair not distinguishable."""
    repeated = _repeated(scores, higher_is_better)
    if len(repeated) < 2:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    spread = seed_spread(scores).set_index("setting")
    trained = set(_trained(scores)["configuration"])
    values = per_patient[per_patient["configuration"].isin(trained)]
    wide = values.pivot_table(index="patient_id", columns="setting", values="value", aggfunc="mean")
    winner, *others = repeated["setting"].tolist()
    rows = []
    for other in others:
        a, b = spread.loc[winner], spread.loc[other]
        pooled = math.sqrt(
            ((a["seeds"] - 1) * a["sd"] ** 2 + (b["seeds"] - 1) * b["sd"] ** 2)
            / (a["seeds"] + b["seeds"] - 2)
        )
        difference = float(a["mean"] - b["mean"])
        n, statistic, p = _paired_test(wide, winner, other)
        rows.append(
            [winner, other, int(a["seeds"]), int(b["seeds"]), a["mean"], b["mean"], difference]
            + [a["sd"], b["sd"], pooled, difference / pooled if pooled > 0 else math.nan]
            + [TEST, n, statistic, p]
        )
    table = pd.DataFrame(rows, columns=COMPARISON_COLUMNS[:-2])
    table["p_holm"] = holm(table["p"].tolist())
    table["distinguishable"] = (table["p_holm"] < alpha) & (
        table["difference"].abs() > table["pooled_sd"]
    )
    return table


def _paired_test(wide: pd.DataFrame, a: str, b: str) -> tuple[int, float, float]:
    """(n, statistic, p) of the two-sided Wilcoxon signed-rank test of columns a and b of
    `wide` on the patients both score; NaN statistic and p when undefined."""
    if a not in wide or b not in wide:
        return 0, math.nan, math.nan
    paired = wide[[a, b]].dropna()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = stats.wilcoxon(paired[a], paired[b], alternative="two-sided")
        except ValueError:
            return len(paired), math.nan, math.nan
    return len(paired), float(result.statistic), float(result.pvalue)


def winner_stability(scores: pd.DataFrame, higher_is_better: bool) -> pd.DataFrame:
    """Per seed: the repeated settings (≥ 2 trained seeds) that trained with it, the one of
    them first at that seed (ties to the smaller id) and its score, the seed-averaged winner
    and whether it is first. Settings are paired by the seed itself (a setting confirmed after
    the sweep may lack the sweep's own seeds). Only seeds at which at least two settings
    compete; no rows without two repeated settings. The share of seeds at which the winner is
    first: `winner_share`."""
    repeated = _repeated(scores, higher_is_better)
    if len(repeated) < 2:
        return pd.DataFrame(columns=WINNER_COLUMNS)
    winner = repeated["setting"].iloc[0]
    candidates = _trained(scores[scores["setting"].isin(repeated["setting"])])
    rows = []
    for seed, competing in candidates.groupby("seed", sort=True):
        if len(competing) < 2:
            continue
        ranked = competing.sort_values(["score", "setting"], ascending=[not higher_is_better, True])
        first = ranked.iloc[0]
        rows.append(
            [int(seed), len(competing), first["setting"], first["score"], winner]
            + [first["setting"] == winner]
        )
    return pd.DataFrame(rows, columns=WINNER_COLUMNS)


def winner_share(stability: pd.DataFrame) -> float:
    """The share of seed indices at which the seed-averaged winner is first (NaN without
    any)."""
    return float(stability["winner_first"].astype(bool).mean()) if len(stability) else math.nan


def seed_averaged_choice(
    scores: pd.DataFrame,
    n_best: int,
    higher_is_better: bool,
    candidates: Collection[str] | None = None,
) -> pd.DataFrame:
    """The final models chosen on the seed-averaged score, as `final.choose_final` writes them
    (run_id, group "overall", score): the n best settings, each by its configuration at its
    first seed that trained (the setting's own id, unless that seed failed), with the setting's
    seed-averaged score. `candidates` (configuration ids; None: all) limits the choice to
    settings with a candidate among their trained seeds, and a setting's model to those (under
    successive halving the configurations that reached the last rung: a setting confirmed
    after its own seed was pruned is compared, not chosen). Raises ValueError when no setting
    has a trained candidate."""
    trained = _trained(scores).sort_values("seed")
    if candidates is not None:
        eligible = trained[trained["configuration"].isin(list(candidates))]
    else:
        eligible = trained
    first = eligible.groupby("setting")["configuration"].first()
    averaged = _averaged(scores, higher_is_better)
    averaged = averaged[averaged["setting"].isin(first.index)].head(n_best)
    if averaged.empty:
        raise ValueError("no setting has a trained seed; cannot choose final models")
    return pd.DataFrame(
        {
            "run_id": [first[s] for s in averaged["setting"]],
            "group": "overall",
            "score": averaged["mean"].to_numpy(float),
        }
    )


def write_seed_tables(
    runs: list[Run],
    selections: Mapping[str, str | Path],
    val_tables: Mapping[str, str | Path],
    selection: dict[str, Any],
    out_spread: str | Path,
    out_comparisons: str | Path,
    out_winners: str | Path,
    scorer: Scorer | None = None,
    alpha: float = 0.05,
) -> None:
    """The seed spread, the comparisons and the winner per seed (layout.SEED_SPREAD,
    SEED_COMPARISONS, SEED_WINNERS) of the sweep's and the confirmation's `runs`, from their
    selection.json and validation tables (by run id); `selection` is the config section."""
    higher = bool(selection["higher_is_better"])
    scores, per_patient = seed_scores(runs, selections, val_tables, selection, scorer)
    write_csv(seed_spread(scores), out_spread)
    write_csv(seed_comparisons(scores, per_patient, higher, alpha), out_comparisons)
    write_csv(winner_stability(scores, higher), out_winners)
