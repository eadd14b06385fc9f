"""Patient-level splits: deterministic, stratified, disjoint, independent of row order."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from segsweep.errors import ConfigError, InputError
from segsweep.preprocess.split import (
    audit_splits,
    labelled_sites,
    leakage_checks,
    main,
    split_subjects,
)

FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}


def _manifest(sizes: dict[str, int], unlabelled: int = 0) -> pd.DataFrame:
    """Labelled subjects per source, plus unlabelled ones in source 'maas'."""
    rows = [
        {"subject_id": f"{source}-{i:03d}", "source": source, "labelled": True}
        for source, n in sizes.items()
        for i in range(n)
    ]
    rows += [
        {"subject_id": f"maas-{i:03d}", "source": "maas", "labelled": False}
        for i in range(unlabelled)
    ]
    return pd.DataFrame(rows)


def _counts(splits: pd.DataFrame) -> dict[str, int]:
    return splits["split"].value_counts().to_dict()


def test_deterministic_and_seed_dependent():
    manifest = _manifest({"epi": 20, "jopp": 15})
    a = split_subjects(manifest, FRACTIONS, "source", seed=3)
    b = split_subjects(manifest, FRACTIONS, "source", seed=3)
    c = split_subjects(manifest, FRACTIONS, "source", seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not a["split"].equals(c["split"])
    assert _counts(a) == _counts(c)


def test_order_independent():
    manifest = _manifest({"epi": 11, "jopp": 7}, unlabelled=3)
    shuffled = manifest.sample(frac=1.0, random_state=1).reset_index(drop=True)
    pd.testing.assert_frame_equal(
        split_subjects(manifest, FRACTIONS, "source", 0),
        split_subjects(shuffled, FRACTIONS, "source", 0),
    )


def test_fractions_per_stratum_largest_remainder():
    splits = split_subjects(_manifest({"epi": 20, "jopp": 7}), FRACTIONS, "source", 0)
    table = pd.crosstab(splits["stratum"], splits["split"])
    assert table.loc["epi"].to_dict() == {"train": 12, "val": 4, "test": 4}
    # 7 * (0.6, 0.2, 0.2) = (4.2, 1.4, 1.4): floors (4, 1, 1), the one left goes to val or test
    assert table.loc["jopp", "train"] == 4
    assert sorted(table.loc["jopp", ["val", "test"]]) == [1, 2]
    assert (splits["stratum"] == splits["source"]).all()


def test_ties_are_spread_across_strata():
    """Equal remainders go to the split owed most, so val and test stay balanced overall."""
    splits = split_subjects(_manifest({"a": 7, "b": 7, "c": 7, "d": 7}), FRACTIONS, "source", 0)
    counts = _counts(splits)
    assert counts["train"] == 16 and {counts["val"], counts["test"]} == {6}


def test_unstratified():
    splits = split_subjects(_manifest({"epi": 6, "jopp": 4}), FRACTIONS, None, 0)
    assert set(splits["stratum"]) == {"all"}
    assert _counts(splits) == {"train": 6, "val": 2, "test": 2}
    assert set(splits["source"]) == {"epi", "jopp"}


def test_unlabelled_subjects_are_kept_apart():
    manifest = _manifest({"epi": 5, "jopp": 5}, unlabelled=4)
    splits = split_subjects(manifest, FRACTIONS, "source", 0)
    unlabelled = splits[splits["split"] == "unlabelled"]
    assert sorted(unlabelled["subject_id"]) == [f"maas-{i:03d}" for i in range(4)]
    assert set(unlabelled["stratum"]) == {"maas"}
    assert sum(_counts(splits).values()) == 14


def test_disjoint_and_complete():
    manifest = _manifest({"epi": 13, "jopp": 9}, unlabelled=2)
    splits = split_subjects(manifest, FRACTIONS, "source", 7)
    assert splits["subject_id"].is_unique
    assert sorted(splits["subject_id"]) == sorted(manifest["subject_id"])
    assert list(splits["subject_id"]) == sorted(manifest["subject_id"])


@pytest.mark.parametrize(
    "sizes",
    [{"a": 3}, {"a": 1, "b": 1, "c": 1}, {"a": 2, "b": 2}, {"a": 1, "b": 2, "c": 1, "d": 1}],
)
def test_tiny_cohorts_fill_every_split(sizes):
    for seed in range(5):
        counts = _counts(split_subjects(_manifest(sizes), FRACTIONS, "source", seed))
        assert all(counts.get(s, 0) >= 1 for s in ("train", "val", "test")), (sizes, counts)
        assert counts["train"] >= counts["val"]


def test_many_small_strata_keep_val_and_test():
    """Strata of one or two subjects each would all round to train without the fix-up."""
    sizes = {f"s{i}": 1 + i % 2 for i in range(6)}
    counts = _counts(split_subjects(_manifest(sizes), FRACTIONS, "source", 0))
    assert counts["val"] >= 1 and counts["test"] >= 1
    assert sum(counts.values()) == 9


@pytest.mark.parametrize("n", [0, 1, 2])
def test_fewer_than_three_labelled(n):
    splits = split_subjects(_manifest({"a": n}, unlabelled=1), FRACTIONS, "source", 0)
    counts = _counts(splits)
    assert counts.get("train", 0) == min(n, 1)
    assert counts["unlabelled"] == 1


def test_bad_config_and_duplicates():
    manifest = _manifest({"epi": 4})
    with pytest.raises(ConfigError, match="split.fractions"):
        split_subjects(manifest, {"train": 0.8, "val": 0.2}, "source", 0)
    with pytest.raises(ConfigError, match="split.fractions"):
        split_subjects(manifest, {"train": 0.7, "val": 0.2, "test": 0.2}, "source", 0)
    with pytest.raises(ConfigError, match="split.stratify"):
        split_subjects(manifest, FRACTIONS, "site", 0)
    with pytest.raises(InputError, match="epi-001"):
        split_subjects(pd.concat([manifest, manifest.iloc[[1]]]), FRACTIONS, "source", 0)


def test_audit_table_and_leak_detection():
    splits = split_subjects(_manifest({"epi": 10, "jopp": 5}, unlabelled=2), FRACTIONS, "source", 0)
    audit = audit_splits(splits)
    assert list(audit.columns) == ["split", "n_subjects", "epi", "jopp", "maas"]
    assert list(audit["split"]) == ["train", "val", "test", "unlabelled"]
    assert audit["n_subjects"].tolist() == [9, 3, 3, 2]
    assert audit.set_index("split").loc["train", "epi"] == 6
    leaked = pd.concat([splits, splits.iloc[[0]].assign(split="test")])
    with pytest.raises(InputError, match=splits["subject_id"].iloc[0]):
        audit_splits(leaked)


def test_main_uses_valid_rows_only(tmp_path):
    manifest = _manifest({"epi": 6, "jopp": 4}, unlabelled=1)
    manifest["valid"] = True
    manifest.loc[0, "valid"] = False
    manifest["problem"] = ""
    path = tmp_path / "data" / "manifest.csv"
    path.parent.mkdir()
    manifest.to_csv(path, index=False)
    out = tmp_path / "splits" / "splits.csv"
    config = {"fractions": FRACTIONS, "stratify": "source", "seed": 5}
    main(["--manifest", str(path), "--config-json", json.dumps(config), "--out", str(out)])

    splits = pd.read_csv(out)
    assert list(splits.columns) == ["subject_id", "split", "stratum", "source"]
    assert "epi-000" not in set(splits["subject_id"])
    assert len(splits) == 10
    expected = split_subjects(manifest[manifest["valid"]], FRACTIONS, "source", 5)
    assert splits["split"].tolist() == expected["split"].tolist()
    audit = pd.read_csv(out.parent / "splits_audit.csv")
    assert audit["n_subjects"].sum() == 10


def test_main_without_valid_column(tmp_path):
    path = tmp_path / "manifest.csv"
    _manifest({"epi": 5}).to_csv(path, index=False)
    out = tmp_path / "splits.csv"
    config = {"fractions": FRACTIONS, "stratify": None, "seed": 0}
    main(["--manifest", str(path), "--config-json", json.dumps(config), "--out", str(out)])
    assert np.array_equal(pd.read_csv(out)["split"].value_counts().sort_index(), [1, 3, 1])


def test_patients_with_several_scans_stay_in_one_split():
    manifest = _manifest({"epi": 12})
    manifest["patient_id"] = [f"p{i // 3}" for i in range(12)]  # 4 patients, 3 scans each
    splits = split_subjects(manifest, FRACTIONS, "source", 0, group="patient_id")
    per_patient = splits.groupby("patient_id")["split"].nunique()
    assert (per_patient == 1).all()
    assert sorted(splits.groupby("split")["patient_id"].nunique().tolist()) == [1, 1, 2]
    assert leakage_checks(splits, manifest, "patient_id")["passed"].all()


def test_folds_cover_train_and_val_evenly_and_leave_test_out():
    splits = split_subjects(_manifest({"epi": 14, "jopp": 6}, 2), FRACTIONS, "source", 0, folds=4)
    pool = splits[splits["split"].isin(["train", "val"])]
    assert pool["fold"].notna().all()
    assert sorted(pool["fold"].value_counts().tolist()) == [4, 4, 4, 4]
    assert splits.loc[~splits["split"].isin(["train", "val"]), "fold"].isna().all()
    with pytest.raises(ConfigError, match="split.folds"):
        split_subjects(_manifest({"epi": 5}), FRACTIONS, "source", 0, folds=1)


def test_leakage_checks_name_patients_and_identical_images():
    manifest = _manifest({"epi": 6})
    manifest["content_hash"] = ["h0", "h1", "h2", "h3", "h4", "h0"]  # epi-005 repeats epi-000
    splits = split_subjects(manifest, FRACTIONS, "source", 0)
    splits.loc[splits["subject_id"] == "epi-000", "split"] = "train"
    splits.loc[splits["subject_id"] == "epi-005", "split"] = "test"
    splits["patient_id"] = ["a", "a", "b", "c", "d", "e"]
    splits.loc[splits["subject_id"] == "epi-001", "split"] = "val"
    checks = leakage_checks(splits, manifest, "patient_id").set_index("check")
    assert checks.loc["subject in one split", "passed"]
    assert not checks.loc["patient in one split", "passed"]
    assert checks.loc["patient in one split", "detail"] == (
        "patient_id in several splits: a (train, val)"
    )
    assert checks.loc["image content unique across splits", "detail"] == (
        "identical images: epi-000 (train) = epi-005 (test)"
    )


def test_main_fails_on_identical_images_after_writing_the_checks(tmp_path):
    manifest = _manifest({"epi": 5})
    manifest["content_hash"] = ["same"] * 5
    path = tmp_path / "manifest.csv"
    manifest.to_csv(path, index=False)
    out = tmp_path / "splits.csv"
    config = {"fractions": FRACTIONS, "stratify": "source", "seed": 0}
    with pytest.raises(InputError, match="split audit failed: identical images: epi-"):
        main(["--manifest", str(path), "--config-json", json.dumps(config), "--out", str(out)])
    checks = pd.read_csv(tmp_path / "splits_checks.csv")
    assert checks["check"].tolist() == [
        "subject in one split",
        "image content unique across splits",
    ]
    assert checks["passed"].tolist() == [True, False]


def test_leave_one_site_out_folds_hold_out_one_site_each():
    manifest = _manifest({"epi": 7, "jopp": 5, "xray": 4}, 2)
    sites = ["epi", "jopp", "xray"]
    splits = split_subjects(manifest, FRACTIONS, "source", 0, folds=3, fold_sites=sites)
    pool = splits[splits["split"].isin(["train", "val"])]
    assert len(pool) and (pool["fold"] == pool["source"].map(sites.index)).all()
    assert splits.loc[splits["split"] == "test", "fold"].isna().all()
    assert set(splits.loc[splits["split"] == "test", "source"]) == set(sites)  # stratified
    # a site whose one labelled patient lands in test has no fold to hold out: named
    with pytest.raises(ConfigError, match="site jopp has no labelled development patient"):
        split_subjects(
            _manifest({"epi": 6, "jopp": 1}),
            {"train": 0.1, "val": 0.1, "test": 0.8},
            "source",
            0,
            folds=2,
            fold_sites=["epi", "jopp"],
        )


def test_labelled_sites_leave_out_sites_without_labels_and_need_two():
    subjects = {
        "a": {"source": "epi", "labelled": True},
        "b": {"source": "jopp", "labelled": True},
        "c": {"source": "maas", "labelled": False},
    }
    assert labelled_sites(subjects) == ["epi", "jopp"]
    with pytest.raises(ConfigError, match="two or more sites"):
        labelled_sites({"a": subjects["a"], "c": subjects["c"]})
    with pytest.raises(InputError, match="d"):
        labelled_sites({**subjects, "d": {"source": "", "labelled": True}})


def test_outer_folds_partition_the_labelled_patients_and_the_rest_is_development():
    manifest = _manifest({"epi": 7, "jopp": 5}, 2)
    nested = {"train": 0.75, "val": 0.25, "test": 0.0}
    tested = []
    for o in range(3):
        splits = split_subjects(manifest, nested, "source", 4, folds=2, outer=(o, 3))
        test = set(splits.loc[splits["split"] == "test", "subject_id"])
        development = splits[splits["split"].isin(["train", "val"])]
        assert not test & set(development["subject_id"])
        assert development["fold"].notna().all() and set(development["fold"]) == {0, 1}
        assert (splits["split"] == "unlabelled").sum() == 2
        tested.append(test)
    assert sorted(len(t) for t in tested) == [4, 4, 4]
    assert set().union(*tested) == set(manifest.loc[manifest["labelled"], "subject_id"])
    with pytest.raises(ConfigError, match="split.fractions.test"):
        split_subjects(manifest, FRACTIONS, "source", 4, outer=(0, 3))
    with pytest.raises(ConfigError, match="split.fractions.test"):
        split_subjects(manifest, nested, "source", 4)
    with pytest.raises(ConfigError, match="split.outer_fold"):
        split_subjects(manifest, nested, "source", 4, outer=(3, 3))
