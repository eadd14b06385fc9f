"""Results by site: per-patient scores grouped by the manifest's `source` column (splits.csv
keeps it), with each site's n, mean, median and percentile-bootstrap interval over its patients,
and a Kruskal-Wallis test of whether the sites differ.

A site is a value of `source`; a site whose subjects are all unlabelled has no score and is
named by `unlabelled_sites`, with that reason. Scores are per patient (the per_patient tables'
rows of one class and space), never per slice. An empty site table has the columns only; the
test is NaN with fewer than two sites holding patients, or when every score is equal.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy import stats

from segsweep.sweep.stats import bootstrap_ci

SITE_COLUMNS = ["site", "patients", "mean", "median", "ci_low", "ci_high"]
LABELLED_SPLITS = ("train", "val", "test")


def site_of(splits: pd.DataFrame) -> dict[str, str]:
    """Subject id → its site, for the subjects with a non-empty source ({} without a source
    column)."""
    if "source" not in splits:
        return {}
    known = splits.dropna(subset=["source"])
    known = known[known["source"].astype(str) != ""]
    return dict(zip(known["subject_id"].astype(str), known["source"].astype(str), strict=True))


def labelled_sites(splits: pd.DataFrame) -> list[str]:
    """The sorted sites with at least one labelled (train, val or test) subject."""
    sites = site_of(splits)
    labelled = splits[splits["split"].isin(LABELLED_SPLITS)]["subject_id"].astype(str)
    return sorted({sites[s] for s in labelled if s in sites})


def unlabelled_sites(splits: pd.DataFrame) -> list[str]:
    """The sorted sites whose every subject is unlabelled: no score can be computed there."""
    return sorted(set(site_of(splits).values()) - set(labelled_sites(splits)))


def foreground_scores(
    tables: Iterable[pd.DataFrame], metric: str = "dice", name: str = "foreground"
) -> pd.DataFrame:
    """patient_id and score of the per_patient tables' rows of class `name` in processed space
    (the space every final model and fold shares)."""
    frames = [
        t.loc[(t["class"] == name) & (t["space"] == "processed"), ["patient_id", metric]]
        for t in tables
    ]
    scores = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if scores.empty:
        return pd.DataFrame(columns=["patient_id", "score"])
    scores = scores.rename(columns={metric: "score"})
    return scores.assign(patient_id=scores["patient_id"].astype(str))


def site_table(scores: pd.DataFrame, sites: dict[str, str]) -> pd.DataFrame:
    """One row per site with scored patients (SITE_COLUMNS); patients without a site are left
    out."""
    scored = scores.assign(site=scores["patient_id"].map(sites)).dropna(subset=["site", "score"])
    rows = []
    for site, group in scored.groupby("site", sort=True):
        values = group["score"].astype(float).to_numpy()
        low, high = bootstrap_ci(values, "mean")
        rows.append([site, len(values), values.mean(), float(np.median(values)), low, high])
    return pd.DataFrame(rows, columns=SITE_COLUMNS)


def site_test(scores: pd.DataFrame, sites: dict[str, str]) -> dict[str, float | int | str]:
    """Kruskal-Wallis H and p over the sites' per-patient scores, the number of sites and the
    patients per site as text ("epi 4, jopp 3")."""
    scored = scores.assign(site=scores["patient_id"].map(sites)).dropna(subset=["site", "score"])
    groups = {s: g["score"].astype(float).to_numpy() for s, g in scored.groupby("site")}
    counts = ", ".join(f"{s} {len(v)}" for s, v in sorted(groups.items()))
    h = p = float("nan")
    values = np.concatenate(list(groups.values())) if groups else np.array([])
    if len(groups) >= 2 and np.ptp(values) > 0:
        h, p = (float(x) for x in stats.kruskal(*groups.values()))
    return {"sites": len(groups), "patients": counts, "h": h, "p": p}
