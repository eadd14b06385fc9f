"""k-fold cross-validation: fold runs, the subjects of each fold, pooled out-of-fold scores, the
audit of the folds, the fold ensemble and the bootstrap ranking of configurations."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import softmax
from test_split import FRACTIONS, _manifest
from test_train import write_toy_h5

from segsweep.errors import ConfigError, InputError
from segsweep.io.splits import read_subjects
from segsweep.model.checkpoints import Ensemble
from segsweep.preprocess.split import run_subjects, split_subjects
from segsweep.sweep.configurations import configuration_table, fold_audit, fold_table
from segsweep.sweep.grammar import configurations, expand_sweep
from segsweep.sweep.ranking import configuration_tests, patient_scores, rank_stability
from segsweep.sweep.stats import bootstrap_ci, bootstrap_ranks

SWEEP = {"grids": {"g": {"loss": ["dice", "cross_entropy"]}}}
DEFAULTS = {"loss": "dice", "lr": 0.001, "seed": 0}
SELECTION = {"metric": "dice", "aggregate": "mean", "level": "patient", "class": "foreground"}


def test_each_configuration_is_k_fold_runs_in_fold_order() -> None:
    runs = expand_sweep(SWEEP, DEFAULTS, folds=3)
    assert [r.run_id for r in runs] == [
        "default_fold-0",
        "default_fold-1",
        "default_fold-2",
        "loss-cross-entropy_fold-0",
        "loss-cross-entropy_fold-1",
        "loss-cross-entropy_fold-2",
    ]
    grouped = configurations(runs)
    assert list(grouped) == ["default", "loss-cross-entropy"]
    assert [r.fold for r in grouped["loss-cross-entropy"]] == [0, 1, 2]
    assert [r.params for r in grouped["default"]] == [{**DEFAULTS, "fold": i} for i in range(3)]
    single = expand_sweep(SWEEP, DEFAULTS)
    assert [(r.run_id, r.configuration, r.fold) for r in single] == [
        ("default", "default", None),
        ("loss-cross-entropy", "loss-cross-entropy", None),
    ]


def test_fold_subjects_are_disjoint_cover_the_development_set_and_never_the_test_set() -> None:
    splits = split_subjects(_manifest({"epi": 11, "jopp": 7}, 2), FRACTIONS, "source", 0, folds=4)
    development = set(splits.loc[splits["split"].isin(["train", "val"]), "subject_id"])
    test = set(splits.loc[splits["split"] == "test", "subject_id"])
    folds = [run_subjects(splits, fold) for fold in range(4)]
    validated = [set(f["val"]) for f in folds]
    assert set().union(*validated) == development
    assert sum(len(v) for v in validated) == len(development)  # disjoint
    for used in folds:
        assert set(used["train"]) == development - set(used["val"])
        assert not (set(used["train"]) | set(used["val"])) & test
    single = run_subjects(splits, None)
    assert set(single["val"]) == set(splits.loc[splits["split"] == "val", "subject_id"])
    with pytest.raises(ConfigError, match="split.folds"):
        run_subjects(splits.drop(columns="fold"), 0)


def test_a_fold_is_read_from_both_split_files_in_file_order(tmp_path: Path) -> None:
    train = write_toy_h5(tmp_path / "train.h5", ("a", "b", "c"), n_slices=3, seed=1)
    val = write_toy_h5(tmp_path / "val.h5", ("d", "e"), n_slices=3, seed=2)
    fold = read_subjects([train, val], ["e", "b"])
    assert fold.patient_id.tolist() == ["b"] * 3 + ["e"] * 3
    assert fold.images.shape[0] == fold.masks.shape[0] == 6
    with pytest.raises(
        InputError, match="subject x: .*train.h5, .*val.h5: subject not in the split files"
    ):
        read_subjects([train, val], ["b", "x"])


class Fixed(torch.nn.Module):
    """A model returning the same logits whatever its input (to check how members combine)."""

    def __init__(self, logits: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("logits", torch.as_tensor(logits, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], *self.logits.shape[1:])


def test_the_fold_ensemble_is_the_mean_of_its_members_softmax_probabilities() -> None:
    rng = np.random.default_rng(0)
    logits = [rng.normal(0, 3, (1, 4, 5, 6)) for _ in range(3)]
    ensemble = Ensemble([Fixed(x) for x in logits])
    out = ensemble(torch.zeros(2, 1, 5, 6))
    expected = np.mean([softmax(x, axis=1) for x in logits], axis=0)[0]
    assert out.shape == (2, 4, 5, 6)
    np.testing.assert_allclose(out[1].exp().numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(out.exp().sum(dim=1).numpy(), 1.0, rtol=1e-5)
    # one confident member does not outvote two that agree: the mean, not the max
    votes = np.zeros((1, 2, 1, 1))
    two = [votes + np.array([0, 1.0]).reshape(1, 2, 1, 1)] * 2
    confident = votes + np.array([9.0, 0]).reshape(1, 2, 1, 1)
    mixed = Ensemble([Fixed(x) for x in (*two, confident)])(torch.zeros(1, 1, 1, 1))
    assert mixed.argmax(dim=1).item() == 0  # (0.27 + 0.27 + 1.0) / 3 > 0.5 for background
    agreeing = Ensemble([Fixed(x) for x in two])(torch.zeros(1, 1, 1, 1))
    assert agreeing.argmax(dim=1).item() == 1


def _write_runs(root: Path, scores: dict[str, dict[str, float]], failed: tuple[str, ...] = ()):
    """Fold runs' selection.json and val/per_patient.csv: `scores` is run id → patient →
    foreground Dice. A failed run has status "failed" and no rows."""
    selections, tables = {}, {}
    for run, by_patient in scores.items():
        folder = root / run
        folder.mkdir(parents=True)
        if run in failed:
            selection = {"status": "failed", "error": "boom", "selected": None}
            by_patient = {}
        else:
            mean = float(np.mean(list(by_patient.values())))
            selection = {"status": "ok", "selected": {"score": mean}}
        (folder / "selection.json").write_text(json.dumps(selection))
        rows = [
            {"patient_id": p, "class": "foreground", "space": "processed", "dice": v}
            for p, v in by_patient.items()
        ]
        table = pd.DataFrame(rows, columns=["patient_id", "class", "space", "dice"])
        table.to_csv(folder / "per_patient.csv", index=False)
        selections[run], tables[run] = folder / "selection.json", folder / "per_patient.csv"
    return selections, tables


SCORES = {  # folds of unequal size: the pooled mean is not the mean of the fold means
    "default_fold-0": {"p1": 0.9, "p2": 0.7, "p3": 0.8},
    "default_fold-1": {"p4": 0.5},
    "default_fold-2": {"p5": 0.6, "p6": 0.4},
    "loss-cross-entropy_fold-0": {"p1": 0.8, "p2": 0.6, "p3": 0.7},
    "loss-cross-entropy_fold-1": {"p4": 0.4},
    "loss-cross-entropy_fold-2": {"p5": 0.5, "p6": 0.3},
}


def test_a_configuration_scores_its_pooled_out_of_fold_patients(tmp_path: Path) -> None:
    runs = expand_sweep(SWEEP, DEFAULTS, folds=3)
    selections, tables = _write_runs(tmp_path, SCORES)
    table = configuration_table(runs, selections, tables, SELECTION).set_index("configuration")
    pooled = [0.9, 0.7, 0.8, 0.5, 0.6, 0.4]
    assert table.loc["default", "score"] == pytest.approx(np.mean(pooled))  # 0.65
    assert table.loc["default", "fold_mean"] == pytest.approx(np.mean([0.8, 0.5, 0.5]))
    assert table.loc["default", "fold_std"] == pytest.approx(np.std([0.8, 0.5, 0.5], ddof=1))
    assert table.loc["default", "patients"] == 6 and table.loc["default", "folds"] == 3
    low, high = bootstrap_ci(np.array(pooled))
    assert (table.loc["default", "ci_low"], table.loc["default", "ci_high"]) == (low, high)
    assert low < 0.65 < high
    assert table.loc["loss-cross-entropy", "score"] == pytest.approx(0.55)
    folds = fold_table(runs, selections)
    assert folds.loc[folds["run_id"] == "default_fold-1", "score"].item() == 0.5


def test_a_configuration_with_a_failed_fold_has_no_score(tmp_path: Path) -> None:
    runs = expand_sweep(SWEEP, DEFAULTS, folds=3)
    selections, tables = _write_runs(tmp_path, SCORES, failed=("default_fold-1",))
    table = configuration_table(runs, selections, tables, SELECTION).set_index("configuration")
    assert table.loc["default", "status"] == "incomplete"
    assert math.isnan(table.loc["default", "score"])
    assert table.loc["default", "error"] == "boom"
    assert table.loc["loss-cross-entropy", "status"] == "ok"


def _splits(folds: dict[str, int], test: list[str]) -> pd.DataFrame:
    rows = [{"subject_id": s, "split": "train", "fold": f} for s, f in folds.items()]
    rows += [{"subject_id": s, "split": "test", "fold": None} for s in test]
    return pd.DataFrame(rows).astype(str)


def test_the_fold_audit_catches_overlapping_folds_and_test_subjects(tmp_path: Path) -> None:
    runs = expand_sweep({"grids": {"g": {"loss": ["dice"]}}}, DEFAULTS, folds=2)
    splits = _splits({"a": 0, "b": 0, "c": 1, "d": 1}, ["t"])

    def audit(used: dict[str, dict[str, list[str]]]) -> dict[str, bool]:
        files = {}
        for run, subjects in used.items():
            files[run] = tmp_path / f"{run}-{len(list(tmp_path.iterdir()))}.json"
            files[run].write_text(json.dumps(subjects))
        table, checks = fold_audit(runs, files, splits)
        return dict(zip(checks["check"], checks["passed"], strict=True)), table

    sound, table = audit(
        {
            "default_fold-0": {"train": ["c", "d"], "val": ["a", "b"]},
            "default_fold-1": {"train": ["a", "b"], "val": ["c", "d"]},
        }
    )
    assert all(sound.values()) and len(sound) == 4
    assert table["val_subjects"].tolist() == ["a b", "c d"]
    leaky, _ = audit(
        {
            "default_fold-0": {"train": ["c", "t"], "val": ["a", "b", "d"]},
            "default_fold-1": {"train": ["a", "b"], "val": ["c", "d"]},
        }
    )
    assert not leaky["validation folds disjoint"]
    assert not leaky["test subjects in no run"]
    assert leaky["validation folds cover the development set"]


def test_the_bootstrap_ranking_is_seeded_and_ranks_a_dominant_configuration_first(
    tmp_path: Path,
) -> None:
    runs = expand_sweep(SWEEP, DEFAULTS, folds=3)
    _, tables = _write_runs(tmp_path, SCORES)
    scores = patient_scores(runs, ["loss-cross-entropy", "default"], tables, SELECTION)
    assert scores.index.tolist() == ["p1", "p2", "p3", "p4", "p5", "p6"]
    # default beats cross-entropy by 0.1 on every patient: first in every resample
    summary, frequencies = rank_stability(scores, "mean", higher_is_better=True)
    best = summary.set_index("configuration").loc["default"]
    assert best["first"] == 1.0 and best["median_rank"] == 1
    share = frequencies.set_index(["configuration", "rank"])["share"]
    assert share["loss-cross-entropy", 2] == 1.0
    # compared in rank order: the difference is the better configuration's lead
    (test,) = configuration_tests(scores[["default", "loss-cross-entropy"]]).itertuples()
    assert (test.a, test.b, test.n) == ("default", "loss-cross-entropy", 6)
    assert test.median_difference == pytest.approx(0.1)
    # close configurations swap places in some resamples, the same ones every time
    rng = np.random.default_rng(3)
    close = rng.normal(0.7, 0.1, (12, 3))
    first = bootstrap_ranks(close)
    assert np.array_equal(first, bootstrap_ranks(close))
    assert not np.array_equal(first, bootstrap_ranks(close, seed=1))
    assert set(np.unique(first[:, 0])) > {1}
    assert ((first >= 1) & (first <= 3)).all()
    lower = bootstrap_ranks(-close, higher_is_better=False)
    assert np.array_equal(first, lower)
