"""Patient-level train/val/test split, stratified and seeded, so no patient leaks across splits.

Each stratum (e.g. `source`) is split by the configured fractions with largest-remainder rounding;
when there are at least three labelled subjects, every split with a positive fraction receives at
least one. Subjects are sorted by id before anything else, so the result depends only on the set of
subjects, the fractions, the stratify column and the seed. Unlabelled subjects form the
`unlabelled` set.

Two designs change what the folds are. Leave-one-site-out (`split.folds: by_source`): fold i of
cross-validation holds out every development patient of the i-th site (the sorted values of the
manifest's `source` column that have labelled subjects, `labelled_sites`). Nested
cross-validation (`split.outer_folds: m`, with `fractions.test: 0`): the labelled patients are
dealt into m outer folds (stratified, seeded, as the inner folds are); the workflow of outer fold
o (`split.outer_fold`) tests on outer fold o and splits, plans and trains on the rest only.
"""

from __future__ import annotations

import argparse
import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from segsweep import layout
from segsweep.data.datasets import DATASET_FOLD
from segsweep.errors import ConfigError, InputError
from segsweep.io.records import flags, write_csv

SPLITS = ("train", "val", "test")
UNLABELLED = "unlabelled"
SINGLE_STRATUM = "all"


def _check_fractions(fractions: dict[str, float], nested: bool = False) -> dict[str, float]:
    """Fractions for exactly train/val/test summing to one: all positive, except that nested
    cross-validation (`nested`) needs test at 0 (its outer folds hold the test patients)."""
    if set(fractions) != set(SPLITS):
        raise ConfigError("split.fractions", fractions, f"one fraction for each of {SPLITS}")
    values = {s: float(fractions[s]) for s in SPLITS}
    if min(values["train"], values["val"]) <= 0 or not np.isclose(sum(values.values()), 1.0):
        raise ConfigError("split.fractions", fractions, "positive fractions summing to 1")
    if nested and values["test"] != 0:
        raise ConfigError(
            "split.fractions.test",
            values["test"],
            "0 with split.outer_folds (nested cross-"
            "validation tests each patient in its outer fold)",
        )
    if not nested and values["test"] <= 0:
        raise ConfigError(
            "split.fractions.test", values["test"], "> 0 (0 only with split.outer_folds)"
        )
    return values


def _largest_remainder(
    n: int, fractions: dict[str, float], deficit: dict[str, float]
) -> dict[str, int]:
    """Round n * fractions to integers summing to n; equal remainders go to the most-owed split."""
    quotas = {s: n * f for s, f in fractions.items()}
    counts = {s: int(np.floor(q)) for s, q in quotas.items()}
    order = sorted(
        SPLITS, key=lambda s: (-round(quotas[s] - counts[s], 9), -deficit[s], SPLITS.index(s))
    )
    for s in order[: n - sum(counts.values())]:
        counts[s] += 1
    return counts


def _allocate(sizes: dict[str, int], fractions: dict[str, float]) -> dict[str, dict[str, int]]:
    """Subjects per (stratum, split): largest remainder per stratum, then no split left empty."""
    counts: dict[str, dict[str, int]] = {}
    owed = dict.fromkeys(SPLITS, 0.0)
    for stratum in sorted(sizes):
        n = sizes[stratum]
        owed = {s: owed[s] + n * fractions[s] for s in SPLITS}
        counts[stratum] = _largest_remainder(n, fractions, owed)
        owed = {s: owed[s] - counts[stratum][s] for s in SPLITS}
    if sum(sizes.values()) >= len(SPLITS):
        _fill_empty_splits(counts, sizes, fractions)
    return counts


def _fill_empty_splits(
    counts: dict[str, dict[str, int]], sizes: dict[str, int], fractions: dict[str, float]
) -> None:
    """Move one subject into each empty split, from where it is most over its quota."""
    while True:
        totals = {s: sum(c[s] for c in counts.values()) for s in SPLITS}
        empty = [s for s in SPLITS if totals[s] == 0 and fractions[s] > 0]
        if not empty:
            return
        target = empty[0]
        candidates = [
            (
                (c[donor] - sizes[st] * fractions[donor])
                + (sizes[st] * fractions[target] - c[target]),
                -sorted(counts).index(st),
                -SPLITS.index(donor),
                st,
                donor,
            )
            for st, c in counts.items()
            for donor in SPLITS
            if c[donor] > 0 and totals[donor] >= 2
        ]
        *_, stratum, donor = max(candidates)
        counts[stratum][donor] -= 1
        counts[stratum][target] += 1


def _stratum_rng(seed: int, stratum: str) -> np.random.Generator:
    """A generator per stratum, so adding a stratum does not reshuffle the others."""
    return np.random.default_rng([seed, zlib.crc32(stratum.encode())])


def labelled_sites(subjects: dict[str, dict]) -> list[str]:
    """The sites of leave-one-site-out, in fold order: the sorted `source` values of the
    labelled subjects (subject id → its record with "source" and "labelled"); ConfigError when a
    labelled subject has no source or fewer than two sites have labelled subjects."""
    unnamed = sorted(s for s, r in subjects.items() if r["labelled"] and not r.get("source"))
    if unnamed:
        raise InputError(unnamed[0], None, "split.folds: by_source needs its source (site)")
    sites = sorted({str(r["source"]) for r in subjects.values() if r["labelled"]})
    if len(sites) < 2:
        raise ConfigError("split.folds", "by_source", f"two or more sites with labels, not {sites}")
    return sites


def split_subjects(
    manifest: pd.DataFrame,
    fractions: dict[str, float],
    stratify: str | None,
    seed: int,
    group: str | None = None,
    folds: int = 0,
    fold_sites: list[str] | None = None,
    outer: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """Assign every subject of `manifest` to train/val/test (labelled) or unlabelled.

    With `group` (a column such as patient_id, used when present) all subjects of one patient
    land in the same split: the split is drawn over patients, each in its first subject's
    stratum. `folds` >= 2 adds a `fold` column (0..k-1) for the train and val subjects, drawn
    per stratum, for k-fold cross-validation over train+val; test stays apart. A dataset that
    brings its own folds (a MONAI datalist's `fold`: the manifest's `dataset_fold` column)
    keeps them: they must number 0..k-1. With `fold_sites` fold i holds out the site
    `fold_sites[i]` (leave-one-site-out); with `outer` = (o, m) the test split is outer fold o of
    m (nested cross-validation; the test fraction is then 0).
    Returns columns subject_id, split, stratum (and source, the group column and fold when
    present), sorted by subject_id.
    """
    fractions = _check_fractions(fractions, nested=outer is not None)
    if stratify is not None and stratify not in manifest.columns:
        raise ConfigError("split.stratify", stratify, f"null or a column of {list(manifest)}")
    if folds == 1 or folds < 0:
        raise ConfigError("split.folds", folds, "0 (no folds) or an integer >= 2")
    duplicated = manifest["subject_id"].astype(str).duplicated()
    if duplicated.any():
        raise InputError(str(manifest["subject_id"][duplicated].iloc[0]), None, "duplicate id")
    table = manifest.assign(subject_id=manifest["subject_id"].astype(str))
    table = table.sort_values("subject_id", kind="stable").reset_index(drop=True)
    if stratify is None:
        table["stratum"] = SINGLE_STRATUM
    else:
        table["stratum"] = table[stratify].astype("string").fillna("unknown").astype(str)
    grouped = group is not None and group in table.columns
    table["unit"] = table[group].astype(str) if grouped else table["subject_id"]
    labelled = flags(table["labelled"])
    table["split"] = UNLABELLED

    units = table[labelled].drop_duplicates("unit")
    held_out: set[str] = set()
    if outer is not None:
        held_out = _outer_fold(units, outer, seed)
        units = units[~units["unit"].isin(held_out)]
    groups = {st: ids.tolist() for st, ids in units.groupby("stratum")["unit"]}
    counts = _allocate({st: len(ids) for st, ids in groups.items()}, fractions)
    split_of: dict[str, str] = {}
    for stratum, ids in groups.items():
        shuffled = _stratum_rng(seed, stratum).permutation(np.array(ids, dtype=object))
        bounds = np.cumsum([counts[stratum][s] for s in SPLITS])[:-1]
        for split, part in zip(SPLITS, np.split(shuffled, bounds), strict=True):
            split_of.update(dict.fromkeys(part, split))
    split_of.update(dict.fromkeys(held_out, "test"))
    table.loc[labelled, "split"] = table.loc[labelled, "unit"].map(split_of)
    columns = ["subject_id", "split", "stratum"] + (["source"] if "source" in table else [])
    columns += [group] if grouped and group != "source" else []
    if folds:
        development = units[units["unit"].map(split_of).isin(["train", "val"])]
        if fold_sites:
            fold_of = _site_folds(development, fold_sites)
        else:
            fold_of = _given_folds(development, folds) or _folds(development, folds, seed)
        table["fold"] = table["unit"].map(fold_of).where(table["split"].isin(["train", "val"]))
        table["fold"] = table["fold"].astype("Int64")
        columns.append("fold")
    return table[columns]


def _folds(units: pd.DataFrame, k: int, seed: int) -> dict[str, int]:
    """Fold per unit: shuffled within each stratum, dealt round-robin, continuing across strata
    so the folds stay within one unit of each other in size."""
    fold_of: dict[str, int] = {}
    position = 0
    for stratum, ids in sorted(units.groupby("stratum")["unit"]):
        for unit in _stratum_rng(seed + 1, stratum).permutation(np.array(ids.tolist(), object)):
            fold_of[unit] = position % k
            position += 1
    return fold_of


def _outer_fold(units: pd.DataFrame, outer: tuple[int, int], seed: int) -> set[str]:
    """The units of outer fold o of m (`outer`), dealt as the inner folds are but with their own
    seed, so each outer fold's workflow holds out the same patients whichever fold it runs."""
    fold, m = outer
    if m < 2 or not 0 <= fold < m:
        raise ConfigError("split.outer_fold", fold, f"0..{m - 1} of split.outer_folds = {m} >= 2")
    if len(units) < m:
        raise ConfigError("split.outer_folds", m, f"at most the {len(units)} labelled patients")
    dealt = _folds(units, m, seed + 2)
    return {unit for unit, f in dealt.items() if f == fold}


def _site_folds(units: pd.DataFrame, sites: list[str]) -> dict[str, int]:
    """Fold per unit by its site (leave-one-site-out: fold i is `sites[i]`); ConfigError when
    the manifest has no source column or a site has no development patient."""
    if "source" not in units:
        raise ConfigError("split.folds", "by_source", "a manifest with a source column")
    site = units.set_index("unit")["source"].astype(str)
    empty = [s for s in sites if s not in set(site)]
    if empty:
        raise ConfigError(
            "split.folds",
            "by_source",
            f"site {empty[0]} has no labelled development patient (all are in test): lower "
            "split.fractions.test or leave the site out",
        )
    return {unit: sites.index(s) for unit, s in site.items() if s in sites}


def _given_folds(units: pd.DataFrame, k: int) -> dict[str, int] | None:
    """Fold per unit as the dataset gives them (None when it gives none); ConfigError unless
    every development unit has one and they are exactly 0..k-1."""
    if DATASET_FOLD not in units or units[DATASET_FOLD].isna().all():
        return None
    given = pd.to_numeric(units[DATASET_FOLD], errors="coerce")
    missing = units.loc[given.isna(), "unit"].tolist()
    if missing:
        raise InputError(
            missing[0], None, "the dataset gives other subjects a fold but not this one"
        )
    found = sorted(set(given.astype(int)))
    if found != list(range(k)):
        raise ConfigError("split.folds", k, f"the dataset's own folds, {found}: k = {len(found)}")
    return dict(zip(units["unit"], given.astype(int), strict=True))


def audit_splits(splits: pd.DataFrame) -> pd.DataFrame:
    """Subjects per split and per stratum; raises InputError if a subject is in two splits."""
    seen = splits.groupby("subject_id")["split"].agg(list)
    for subject, in_splits in seen.items():
        if len(in_splits) > 1:
            raise InputError(str(subject), None, f"listed in more than one split: {in_splits}")
    order = [s for s in (*SPLITS, UNLABELLED) if s in set(splits["split"])]
    per_stratum = pd.crosstab(splits["split"], splits["stratum"]).reindex(order)
    audit = per_stratum.assign(n_subjects=per_stratum.sum(axis=1))
    audit = audit[["n_subjects", *per_stratum.columns]].rename_axis(None, axis=1)
    return audit.reset_index().rename(columns={"index": "split"})


def leakage_checks(
    splits: pd.DataFrame, manifest: pd.DataFrame, group: str | None = None
) -> pd.DataFrame:
    """The split audit as a table (check, passed, detail) for the report.

    Checks that no subject and no patient (`group` column) is in two of train/val/test, and that
    no two subjects in different splits have identical image content (the same scan under two
    ids would leak test images into training). Unlabelled subjects are not used for training
    and are left out.
    """
    used = splits[splits["split"].isin(SPLITS)]
    rows = []
    per_subject = used.groupby("subject_id")["split"].nunique()
    bad = per_subject[per_subject > 1].index.tolist()
    rows.append(_check_row("subject in one split", bad, "subjects in several splits"))
    if group is not None and group in used.columns:
        per_patient = used.groupby(group)["split"].agg(lambda s: sorted(set(s)))
        bad = [f"{p} ({', '.join(s)})" for p, s in per_patient.items() if len(s) > 1]
        rows.append(_check_row("patient in one split", bad, f"{group} in several splits"))
    if "content_hash" in manifest.columns:
        hashes = manifest.set_index(manifest["subject_id"].astype(str))["content_hash"]
        with_hash = used.assign(content_hash=used["subject_id"].map(hashes)).dropna(
            subset=["content_hash"]
        )
        with_hash = with_hash[with_hash["content_hash"] != ""]
        bad = [
            " = ".join(f"{r.subject_id} ({r.split})" for r in same.itertuples())
            for _, same in with_hash.groupby("content_hash")
            if same["split"].nunique() > 1
        ]
        rows.append(_check_row("image content unique across splits", bad, "identical images"))
    return pd.DataFrame(rows, columns=["check", "passed", "detail"])


def _check_row(check: str, offenders: list[str], what: str) -> dict:
    detail = f"{what}: {'; '.join(map(str, offenders))}" if offenders else "ok"
    return {"check": check, "passed": not offenders, "detail": detail}


def run_subjects(splits: pd.DataFrame, fold: int | None) -> dict[str, list[str]]:
    """The subjects that train and validate a run (sorted subject ids of splits.csv): without a
    fold, the train and val splits; for fold i of cross-validation, the labelled non-test
    subjects of the other folds and of fold i. The test split is never among them."""
    splits = splits.assign(subject_id=splits["subject_id"].astype(str))
    if fold is None:
        chosen = {name: splits["split"] == name for name in ("train", "val")}
    else:
        if "fold" not in splits:
            raise ConfigError("split.folds", 0, "k >= 2 for a fold run: splits.csv has no folds")
        development = splits["split"].isin(["train", "val"])
        in_fold = pd.to_numeric(splits["fold"], errors="coerce") == fold
        chosen = {"train": development & ~in_fold, "val": development & in_fold}
    found = {name: sorted(splits.loc[rows, "subject_id"]) for name, rows in chosen.items()}
    for name, subjects in found.items():
        if not subjects:
            where = "its split" if fold is None else f"fold {fold}"
            raise InputError(None, "splits.csv", f"no {name} subjects for {where}")
    return found


def _read_manifest(path: Path) -> pd.DataFrame:
    """The valid rows of the ingest manifest (all rows when there is no `valid` column)."""
    manifest = pd.read_csv(path, dtype={"subject_id": str})
    for column in ("subject_id", "labelled"):
        if column not in manifest:
            raise InputError(None, str(path), f"manifest has no '{column}' column")
    if "valid" in manifest:
        manifest = manifest[flags(manifest["valid"])]
    return manifest


def main(argv: list[str] | None = None) -> None:
    """Write splits.csv, splits_audit.csv and splits_checks.csv from the ingest manifest; fails,
    after writing the checks, when the audit finds a leak."""
    parser = argparse.ArgumentParser(prog="segsweep split", description=__doc__)
    parser.add_argument("--manifest", type=Path, required=True, help="results/data/manifest.csv")
    parser.add_argument("--config-json", required=True, help="split section: fractions, ...")
    parser.add_argument("--out", type=Path, required=True, help="splits.csv")
    parser.add_argument("--out-audit", type=Path, help="splits_audit.csv (default: beside --out)")
    parser.add_argument("--out-checks", type=Path, help="splits_checks.csv (default: beside --out)")
    args = parser.parse_args(argv)
    beside = {"base": layout.SPLITS_DIR}
    out_audit = args.out_audit or layout.under(args.out.parent, layout.SPLITS_AUDIT, **beside)
    out_checks = args.out_checks or layout.under(args.out.parent, layout.SPLITS_CHECKS, **beside)

    config = json.loads(args.config_json)
    manifest = _read_manifest(args.manifest)
    group = config.get("group", "patient_id")
    splits = split_subjects(
        manifest,
        fractions=config["fractions"],
        stratify=config.get("stratify", "source"),
        seed=int(config.get("seed", 0)),
        group=group,
        folds=int(config.get("folds", 0)),
        fold_sites=config.get("fold_sites"),
        outer=(
            (int(config["outer_fold"]), int(config["outer_folds"]))
            if config.get("outer_fold") is not None
            else None
        ),
    )
    audit = audit_splits(splits)
    checks = leakage_checks(splits, manifest, group)
    write_csv(splits, args.out)
    write_csv(audit, out_audit)
    write_csv(checks, out_checks)
    print(audit.to_string(index=False))
    print(checks.to_string(index=False))
    failed = checks[~checks["passed"]]
    if not failed.empty:
        raise InputError(None, str(args.out), "split audit failed: " + "; ".join(failed["detail"]))


if __name__ == "__main__":
    main()
