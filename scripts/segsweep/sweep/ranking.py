"""How sure the ranking of the best configurations is, on their per-patient validation scores
(out-of-fold with cross-validation: every development patient scored once per configuration).

- `rank_stability`: bootstrap the patients (the same resample for every configuration), re-rank
  the top configurations by the selection's aggregate, and count how often each ranks first and
  how its rank spreads (challengeR's bootstrap ranking, with its blob plot in the figures);
- `configuration_tests`: the top configurations compared pairwise on their paired per-patient
  scores (Wilcoxon signed-rank with Holm's correction, Friedman for more than two), with the
  median of the per-patient differences and its bootstrap interval (`segsweep.sweep.stats`).

Scores are per patient (the primary level) whatever the selection level; patients with an
undefined score for a configuration are left out of its statistic but stay in the resample.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segsweep.sweep.configurations import out_of_fold
from segsweep.sweep.grammar import Run, configurations
from segsweep.sweep.stats import BOOTSTRAP_RESAMPLES, bootstrap_ranks, paired_tests

TOP = 5  # configurations ranked and compared
RANK_COLUMNS = ["configuration", "score", "first", "median_rank", "rank_low", "rank_high"]
RANK_COLUMNS += ["patients", "resamples"]


def top_configurations(table: pd.DataFrame, higher_is_better: bool, n: int = TOP) -> list[str]:
    """The ids of the n best complete configurations by score (ties to the smaller id)."""
    ranked = table[(table["status"] == "ok") & table["score"].notna()]
    ranked = ranked.sort_values(["score", "configuration"], ascending=[not higher_is_better, True])
    return ranked["configuration"].head(n).tolist()


def patient_scores(
    runs: list[Run],
    chosen: list[str],
    per_patient: Mapping[str, str | Path],
    selection: dict[str, Any],
) -> pd.DataFrame:
    """Patients (rows, sorted) × configurations `chosen` (columns, in that order): each
    configuration's per-patient validation score of the selection metric and class."""
    grouped = configurations(runs)
    patient_level = {**selection, "level": "patient"}
    columns = {}
    for configuration in chosen:
        pooled = out_of_fold(grouped[configuration], per_patient, patient_level)
        columns[configuration] = pooled.set_index("patient_id")["value"]
    return pd.DataFrame(columns).sort_index()


def rank_stability(
    scores: pd.DataFrame, statistic: str, higher_is_better: bool
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, frequencies) of the bootstrap ranking of the columns of `scores`: per
    configuration its score, the share of resamples it ranks first, its median rank and 95 %
    rank interval; per configuration and rank the share of resamples with that rank."""
    if scores.shape[1] == 0 or scores.shape[0] == 0:
        return pd.DataFrame(columns=RANK_COLUMNS), pd.DataFrame(
            columns=["configuration", "rank", "share"]
        )
    ranks = bootstrap_ranks(scores.to_numpy(float), statistic, higher_is_better)
    reduce = {"mean": np.nanmean, "median": np.nanmedian}[statistic]
    summary, frequencies = [], []
    for column, configuration in enumerate(scores.columns):
        found = ranks[:, column]
        summary.append(
            [
                configuration,
                float(reduce(scores[configuration].to_numpy(float))),
                float(np.mean(found == 1)),
                float(np.median(found)),
                float(np.percentile(found, 2.5)),
                float(np.percentile(found, 97.5)),
                int(scores[configuration].notna().sum()),
                BOOTSTRAP_RESAMPLES,
            ]
        )
        for rank in range(1, scores.shape[1] + 1):
            frequencies.append([configuration, rank, float(np.mean(found == rank))])
    return (
        pd.DataFrame(summary, columns=RANK_COLUMNS),
        pd.DataFrame(frequencies, columns=["configuration", "rank", "share"]),
    )


def configuration_tests(scores: pd.DataFrame) -> pd.DataFrame:
    """Paired tests of the columns of `scores` on the patients every one of them scores."""
    long = (
        scores.rename_axis("patient_id")
        .reset_index()
        .melt(id_vars="patient_id", var_name="run_id", value_name="value")
    )
    return paired_tests(long, "validation")
