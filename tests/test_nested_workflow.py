"""Nested cross-validation on the real Snakefile: 2 outer folds × 2 inner folds of a tiny sweep of
two configurations, to the nested thesis.

One run is shared by the tests of this module. The outer folds share the generated images;
everything after them runs once per outer fold, in its own folder.
The isolation of each outer fold is checked from the files its steps read and wrote: no patient
it holds out is among any run's subjects, validation tables, the crop plan's or the
normalisation's patients.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from runs import configure, finished, planned_jobs, snakemake, succeeded
from tiny import TINY_CONFIG

from segsweep import layout

pytestmark = pytest.mark.workflow

OUTER, INNER = 2, 2
CONFIG = {
    **TINY_CONFIG,
    "split": {
        "outer_folds": OUTER,
        "folds": INNER,
        "fractions": {"train": 0.75, "val": 0.25, "test": 0.0},
    },
}
SWEEP = {"grids": {"loss": {"loss": ["cross_entropy", "dice"]}}}
CONFIGURATIONS = {"default", "loss-cross-entropy"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return finished(tmp_path_factory.mktemp("nested"), CONFIG, SWEEP)


def _outer(workdir: Path, pattern: str, fold: int, **wildcards: str) -> Path:
    return workdir / layout.path(layout.outer(pattern, str(fold)), **wildcards)


def _held_out(workdir: Path, fold: int) -> set[str]:
    splits = pd.read_csv(_outer(workdir, layout.SPLITS, fold), dtype=str)
    return set(splits.loc[splits["split"] == "test", "subject_id"])


def test_each_outer_fold_holds_its_patients_out_of_every_step(workdir: Path) -> None:
    labelled = set()
    held = []
    for fold in range(OUTER):
        splits = pd.read_csv(_outer(workdir, layout.SPLITS, fold), dtype=str)
        labelled = set(splits.loc[splits["split"] != "unlabelled", "subject_id"])
        out = _held_out(workdir, fold)
        assert out and not out & set(
            splits.loc[splits["split"].isin(["train", "val"]), "subject_id"]
        )
        held.append(out)
        plan = json.loads(_outer(workdir, layout.CROP_PLAN, fold).read_text())
        assert plan["half_extent_mm"] and not out & set(plan["half_extent_mm"])
        norm = json.loads(_outer(workdir, layout.NORMALISATION, fold).read_text())
        assert norm["subjects"] and not out & set(norm["subjects"])
        runs = sorted(_outer(workdir, layout.RUN_DIR, fold, run="x").parent.iterdir())
        assert {r.name.split("_fold-")[0] for r in runs} == CONFIGURATIONS
        assert len(runs) == len(CONFIGURATIONS) * INNER
        for run in runs:
            subjects = json.loads((run / "subjects.json").read_text())
            assert subjects["train"] and subjects["val"]
            assert not out & (set(subjects["train"]) | set(subjects["val"])), run
            scored = pd.read_csv(run / "val/per_patient.csv", dtype={"patient_id": str})
            assert not out & set(scored["patient_id"]), run
    assert not held[0] & held[1] and held[0] | held[1] == labelled


def test_every_patient_is_predicted_once_by_the_model_its_outer_fold_chose(
    workdir: Path,
) -> None:
    pooled = pd.read_csv(workdir / layout.NESTED_PER_PATIENT, dtype={"patient_id": str})
    rows = pooled[(pooled["class"] == "foreground") & (pooled["space"] == "processed")]
    assert rows["patient_id"].is_unique
    for fold in range(OUTER):
        out = rows[rows["outer_fold"] == fold]
        assert set(out["patient_id"]) == _held_out(workdir, fold)
        final = pd.read_csv(_outer(workdir, layout.FINAL, fold), dtype=str)
        chosen = final["run_id"].iloc[0]
        assert set(out["configuration"]) == {chosen}
        tested = pd.read_csv(
            _outer(workdir, layout.TEST_PER_PATIENT, fold, run=chosen), dtype={"patient_id": str}
        )
        tested = tested[(tested["class"] == "foreground") & (tested["space"] == "processed")]
        merged = out.merge(tested, on="patient_id", suffixes=("", "_test"))
        assert len(merged) == len(out)
        assert (merged["dice"] == merged["dice_test"]).all()
    summary = pd.read_csv(workdir / layout.NESTED_SUMMARY, dtype={"outer_fold": str})
    pooled_row = summary[summary["outer_fold"] == "all"].iloc[0]
    assert pooled_row["patients"] == len(rows)
    assert pooled_row["score"] == pytest.approx(rows["dice"].mean())
    assert pooled_row["ci_low"] <= pooled_row["score"] <= pooled_row["ci_high"]
    choices = pd.read_csv(workdir / layout.NESTED_CHOICES)
    assert choices["chosen"].sum() == OUTER
    assert set(choices["configuration"]) <= CONFIGURATIONS


def test_the_nested_thesis_says_what_the_estimate_estimates(workdir: Path) -> None:
    html = (workdir / layout.THESIS_HTML).read_text()
    for phrase in [
        "Nested cross-validation",
        "estimates how well this procedure",
        "How often each configuration was chosen",
        "which no step had seen",
        layout.outer(layout.THESIS_HTML, "1"),
    ]:
        assert phrase in html, phrase
    assert (workdir / layout.THESIS_PDF).read_bytes().startswith(b"%PDF")
    for fold in range(OUTER):
        inner = _outer(workdir, layout.THESIS_HTML, fold).read_text()
        assert "2-fold cross-validation" in inner
        assert _outer(workdir, layout.PACKAGE_INDEX, fold).is_file()


def test_a_second_run_has_nothing_to_do(workdir: Path) -> None:
    result = snakemake(workdir, "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Nothing to be done" in result.stdout + result.stderr


def test_under_halving_each_outer_folds_sweep_prunes_as_an_ordinary_sweep(tmp_path: Path) -> None:
    """Dry run: every outer fold trains each configuration's inner folds to the first rung only,
    and each decides its own rungs (a checkpoint per outer fold)."""
    sweep = {**SWEEP, "budget": {"method": "halving", "eta": 2, "min_epochs": 1}}
    config = {**CONFIG, "train": {**TINY_CONFIG["train"], "epochs": 2}}
    configure(tmp_path, config, sweep)
    result = snakemake(tmp_path, "--dry-run")
    succeeded(result)
    jobs = planned_jobs(result)
    for fold in range(OUTER):
        assert jobs[f"outer{fold}_train_rung"] == len(CONFIGURATIONS) * INNER, jobs
        assert jobs[f"outer{fold}_rung_decision"] == 1, jobs
