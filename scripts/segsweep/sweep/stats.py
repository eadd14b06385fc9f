"""Statistics the PET/CT thesis skipped, with scipy.stats.

- `kruskal_table`: per swept hyperparameter, a Kruskal–Wallis test of the runs' scores across its
  levels (independent groups: each run is one observation), with the median difference between
  the best and the worst level and its bootstrap 95 % confidence interval.
- `paired_tests`: for the final models, on paired per-patient scores (patients seen by every
  model): a Wilcoxon signed-rank test for two models; for more, a Friedman test and pairwise
  Wilcoxon tests with Holm's correction. Each pair carries the median of the per-patient
  differences and its bootstrap 95 % confidence interval.

Undefined results (too few observations, all values equal) are NaN, never an exception, so that
a small sweep still gets its report. Bootstrap resampling is seeded.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

BOOTSTRAP_RESAMPLES = 2000
SEED = 0
KRUSKAL_COLUMNS = [
    "hyperparameter",
    "levels",
    "n",
    "H",
    "p",
    "best",
    "worst",
    "median_difference",
    "ci_low",
    "ci_high",
]
PAIRED_COLUMNS = [
    "split",
    "test",
    "a",
    "b",
    "n",
    "statistic",
    "p",
    "p_holm",
    "median_difference",
    "ci_low",
    "ci_high",
]


def _quiet(function, *args, **kwargs):
    """Call a scipy test; NaN results instead of warnings or errors on degenerate samples."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return function(*args, **kwargs)
        except ValueError:
            return None


def bootstrap_median_difference(
    a: np.ndarray, b: np.ndarray | None = None, seed: int = SEED
) -> tuple[float, float, float]:
    """Median difference and its percentile-bootstrap 95 % CI.

    With `b`: median(a) − median(b) of two independent samples. Without: the median of the
    paired differences `a`. The CI is NaN when a sample has fewer than two values.
    """
    a = np.asarray(a, dtype=float)
    a = a[~np.isnan(a)]
    if b is None:
        samples, estimate = (a,), (float(np.median(a)) if a.size else math.nan)

        def statistic(x, axis):
            return np.median(x, axis=axis)
    else:
        b = np.asarray(b, dtype=float)
        b = b[~np.isnan(b)]
        samples = (a, b)
        estimate = float(np.median(a) - np.median(b)) if a.size and b.size else math.nan

        def statistic(x, y, axis):
            return np.median(x, axis=axis) - np.median(y, axis=axis)

    return estimate, *_percentile_ci(samples, statistic, seed)


STATISTICS = {"mean": np.mean, "median": np.median}


def bootstrap_ci(values: np.ndarray, statistic: str = "mean", seed: int = SEED) -> tuple:
    """Percentile-bootstrap 95 % confidence interval (low, high) of the mean or median of
    `values` (one per patient; NaN left out); NaN with fewer than two values."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    return _percentile_ci((values,), lambda x, axis: STATISTICS[statistic](x, axis=axis), seed)


def _percentile_ci(
    samples: tuple[np.ndarray, ...], statistic: Callable[..., Any], seed: int
) -> tuple[float, float]:
    """Percentile-bootstrap 95 % interval (low, high) of `statistic` over `samples`; NaN when a
    sample has fewer than two values or the bootstrap cannot resample them."""
    if any(sample.size < 2 for sample in samples):
        return math.nan, math.nan
    result = _quiet(
        stats.bootstrap,
        samples,
        statistic,
        n_resamples=BOOTSTRAP_RESAMPLES,
        confidence_level=0.95,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    if result is None:
        return math.nan, math.nan
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def bootstrap_ranks(
    scores: np.ndarray,
    statistic: str = "mean",
    higher_is_better: bool = True,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = SEED,
) -> np.ndarray:
    """Ranks int [resamples, configurations] of configurations (columns of `scores`, patients ×
    configurations, every configuration scored on the same patients) in bootstrap resamples of
    the patients: each resample draws the patients with replacement, scores every
    configuration by `statistic` of its column (NaN left out) and ranks them, 1 = best, ties
    sharing the better rank. Seeded: the same scores give the same ranks."""
    scores = np.asarray(scores, dtype=float)
    n_patients, n_configurations = scores.shape
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_patients, size=(resamples, n_patients))
    reduce = {"mean": np.nanmean, "median": np.nanmedian}[statistic]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample of undefined values only
        values = reduce(scores[draws], axis=1)  # [resamples, configurations]
    signed = np.where(np.isnan(values), -np.inf, values if higher_is_better else -values)
    better = (signed[:, None, :] > signed[:, :, None]).sum(axis=2)  # configurations beating each
    return better + 1


def kruskal_table(
    runs_df: pd.DataFrame, names: list[str], higher_is_better: bool = True, score: str = "score"
) -> pd.DataFrame:
    """One row per hyperparameter: Kruskal–Wallis H and p over its levels, best − worst level
    median difference (levels ranked by median score) with a bootstrap 95 % CI."""
    rows = []
    for name in names:
        groups = {
            level: group[score].dropna().to_numpy(dtype=float)
            for level, group in runs_df.groupby(name, sort=True)
        }
        groups = {level: values for level, values in groups.items() if values.size}
        h = p = math.nan
        if len(groups) >= 2:
            result = _quiet(stats.kruskal, *groups.values())
            if result is not None:
                h, p = float(result.statistic), float(result.pvalue)
        best = worst = None
        difference = low = high = math.nan
        if len(groups) >= 2:
            ranked = sorted(groups, key=lambda lv: np.median(groups[lv]), reverse=higher_is_better)
            best, worst = ranked[0], ranked[-1]
            difference, low, high = bootstrap_median_difference(groups[best], groups[worst])
        rows.append(
            [
                name,
                len(groups),
                int(sum(v.size for v in groups.values())),
                h,
                p,
                best,
                worst,
                difference,
                low,
                high,
            ]
        )
    return pd.DataFrame(rows, columns=KRUSKAL_COLUMNS)


def holm(p_values: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (NaN stays NaN and does not count)."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    defined = np.flatnonzero(~np.isnan(p))
    order = defined[np.argsort(p[defined], kind="stable")]
    m, running = len(order), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


def paired_tests(scores: pd.DataFrame, split: str) -> pd.DataFrame:
    """Tests of the final models on one split. `scores`: columns patient_id, run_id, value.

    Only patients with a defined value for every model are used (the tests are paired). Pairs
    (a, b) follow the order in which the models first appear in `scores` (best first, for
    ranked models), so a median difference a − b is that of the better-ranked model.
    """
    wide = scores.pivot_table(index="patient_id", columns="run_id", values="value").dropna()
    models = [m for m in dict.fromkeys(scores["run_id"]) if m in wide.columns]
    wide = wide[models]
    rows = []
    if len(models) < 2:
        return pd.DataFrame(rows, columns=PAIRED_COLUMNS)
    n = len(wide)
    if len(models) > 2:
        result = _quiet(stats.friedmanchisquare, *(wide[m].to_numpy() for m in models))
        statistic, p = (result.statistic, result.pvalue) if result else (math.nan, math.nan)
        rows.append(
            [split, "Friedman", "all", "", n, statistic, p, p, math.nan, math.nan, math.nan]
        )
    pairs = []
    for a, b in itertools.combinations(models, 2):
        differences = (wide[a] - wide[b]).to_numpy()
        result = _quiet(stats.wilcoxon, wide[a], wide[b]) if n >= 1 else None
        statistic, p = (result.statistic, result.pvalue) if result else (math.nan, math.nan)
        estimate, low, high = bootstrap_median_difference(differences)
        pairs.append([split, "Wilcoxon", a, b, n, statistic, p, estimate, low, high])
    adjusted = holm([row[6] for row in pairs]) if len(pairs) > 1 else [row[6] for row in pairs]
    for row, p_holm in zip(pairs, adjusted, strict=True):
        rows.append([*row[:7], p_holm, *row[7:]])
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS).astype(
        {c: float for c in ["statistic", "p", "p_holm"]}
    )
