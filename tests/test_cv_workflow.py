"""The real Snakefile with leave-one-site-out cross-validation on the tiny cohort, to the thesis
report.

The tiny cohort has three sites: epi and jopp with labelled subjects, maas with none. One run
(two configurations × the two labelled sites as folds), seeded with the tiny cohort's
preprocessing (tests/conftest.py), is shared by the tests of this module: the cross-validation
machinery (folds, pooled out-of-fold scores, ensemble and best fold, ranking) and what
leave-one-site-out adds (each fold holds out one site; the per-site table and test; the site
without labels named). A dry run of a transfer sweep checks which fold each transfer run starts
from.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from runs import configure, finished, planned_jobs, seed, snakemake
from test_workflow import plan_with_sweep
from tiny import TINY_CONFIG

pytestmark = pytest.mark.workflow

SITES = ["epi", "jopp"]  # the labelled sites; maas has no labelled subject
FOLDS = len(SITES)
# two test patients (one per site), four to cross-validate (two per site); 30 cheap epochs at a
# high rate, so the folds learn (Dice about 0.8) and the ensemble and its best fold differ
CONFIG = {
    **TINY_CONFIG,
    "split": {"folds": "by_source", "fractions": {"train": 0.5, "val": 0.25, "test": 0.25}},
    "train": {**TINY_CONFIG["train"], "epochs": 30, "lr": 0.01, "checkpoint_every": 5},
}
SWEEP = {"grids": {"loss": {"loss": ["cross_entropy", "dice"]}}}
CONFIGURATIONS = ["default", "loss-cross-entropy"]


@pytest.fixture(scope="module")
def workdir(prepared_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """From the tiny cohort's preprocessing: the split and what follows it rerun."""
    root = seed(prepared_cohort, tmp_path_factory.mktemp("cv"))
    return finished(root, CONFIG, SWEEP)


def _subjects(workdir: Path, run: str) -> dict[str, list[str]]:
    return json.loads((workdir / "results/runs" / run / "subjects.json").read_text())


def test_each_configuration_trains_one_run_per_fold_on_disjoint_covering_folds(
    workdir: Path,
) -> None:
    runs = sorted(p.name for p in (workdir / "results/runs").iterdir())
    assert runs == [f"{c}_fold-{i}" for c in CONFIGURATIONS for i in range(FOLDS)]
    splits = pd.read_csv(workdir / "results/splits/splits.csv", dtype=str)
    development = set(splits.loc[splits["split"].isin(["train", "val"]), "subject_id"])
    test = set(splits.loc[splits["split"] == "test", "subject_id"])
    for configuration in CONFIGURATIONS:
        folds = [_subjects(workdir, f"{configuration}_fold-{i}") for i in range(FOLDS)]
        validated = [set(fold["val"]) for fold in folds]
        assert set().union(*validated) == development
        assert sum(map(len, validated)) == len(development)
        for i, fold in enumerate(folds):
            assert set(fold["train"]) == development - set(fold["val"])
            assert not (set(fold["train"]) | set(fold["val"])) & test
            run = workdir / "results/runs" / f"{configuration}_fold-{i}"
            scored = pd.read_csv(run / "val/per_patient.csv", dtype={"patient_id": str})
            assert set(scored["patient_id"]) == set(fold["val"])
            assert yaml.safe_load((run / "params.yaml").read_text())["fold"] == i
    checks = pd.read_csv(workdir / "results/tables/fold_checks.csv")
    assert checks["passed"].all() and len(checks) == 4


def test_a_configuration_scores_every_development_patient_once(workdir: Path) -> None:
    table = pd.read_csv(workdir / "results/summary/configurations.csv")
    assert table["configuration"].tolist() == CONFIGURATIONS
    assert (table["status"] == "ok").all() and (table["folds"] == FOLDS).all()
    splits = pd.read_csv(workdir / "results/splits/splits.csv", dtype=str)
    development = splits["split"].isin(["train", "val"]).sum()
    assert (table["patients"] == development).all()
    for row in table.itertuples():
        pooled = pd.concat(
            pd.read_csv(workdir / f"results/runs/{row.configuration}_fold-{i}/val/per_patient.csv")
            for i in range(FOLDS)
        )
        dice = pooled.loc[
            (pooled["class"] == "foreground") & (pooled["space"] == "processed"), "dice"
        ]
        assert row.score == pytest.approx(dice.mean())
        assert row.ci_low <= row.score <= row.ci_high


def test_the_final_model_is_its_fold_ensemble_and_its_best_fold_is_tested_too(
    workdir: Path,
) -> None:
    final = pd.read_csv(workdir / "results/summary/final.csv")
    splits = pd.read_csv(workdir / "results/splits/splits.csv", dtype=str)
    test = set(splits.loc[splits["split"] == "test", "subject_id"])
    table = pd.read_csv(workdir / "results/summary/configurations.csv")
    assert final["run_id"].tolist() == [table.loc[table["score"].idxmax(), "configuration"]]
    for model in final["run_id"]:
        folder = workdir / "results/final" / model
        models = json.loads((folder / "models.json").read_text())
        assert models["runs"] == [f"{model}_fold-{i}" for i in range(FOLDS)]
        assert models["reported"] == "ensemble" and models["best_fold"] in models["runs"]
        for tested in ("test", "test_best_fold"):
            per_patient = pd.read_csv(folder / tested / "per_patient.csv", dtype=str)
            assert set(per_patient["patient_id"]) == test, tested
        assert list((folder / "predictions").glob("*.nii.gz"))
    compared = pd.read_csv(workdir / "results/tables/ensemble_vs_fold.csv")
    assert compared["run_id"].tolist() == final["run_id"].tolist()
    assert (compared["patients"] == len(test)).all()


def test_the_report_shows_folds_fold_spread_and_ranking(workdir: Path) -> None:
    html = (workdir / "results/report/thesis.html").read_text()
    for caption in [
        "The folds of cross-validation",
        "Audit of the folds",
        "on each of its folds",
        "Bootstrap ranking of the 2 best configurations",
        "Ranks of the best configurations in the bootstrap resamples",
        "fold ensemble and of its best fold alone",
    ]:
        assert caption in html, caption
    assert "leave-one-site-out" in html
    ranking = pd.read_csv(workdir / "results/tables/ranking.csv")
    assert set(ranking["configuration"]) == set(CONFIGURATIONS)
    assert (workdir / "results/figures/ranking.png").stat().st_size > 1000
    assert (workdir / "results/report/thesis.pdf").read_bytes().startswith(b"%PDF")


def test_second_dry_run_has_nothing_to_do(workdir: Path) -> None:
    result = snakemake(workdir, "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Nothing to be done" in result.stdout + result.stderr


def test_final_model_best_fold_reports_the_best_folds_test_scores(
    workdir: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "best_fold"
    shutil.copytree(workdir, copy, symlinks=True)
    (copy / "config.yaml").write_text(yaml.safe_dump({**CONFIG, "final": {"model": "best_fold"}}))
    result = snakemake(copy)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    final = pd.read_csv(copy / "results/summary/final.csv")
    model = final["run_id"].iloc[0]
    models = json.loads((copy / f"results/final/{model}/models.json").read_text())
    assert models["reported"] == "best_fold"
    best = pd.read_csv(copy / f"results/final/{model}/test_best_fold/per_patient.csv")
    assert set(best["space"]) == {"processed", "native"}  # scored like the ensemble
    reported = pd.read_csv(copy / "results/tables/final_per_patient.csv")
    test = reported[(reported["split"] == "test") & (reported["run_id"] == model)]
    means = {}
    for tested in ("test_best_fold", "test"):
        slices = pd.read_csv(copy / f"results/final/{model}/{tested}/per_slice.csv")
        foreground = slices[slices["class"] == "foreground"]
        means[tested] = foreground.groupby("patient_id")["dice"].mean()
    assert not np.allclose(means["test"], means["test_best_fold"])  # the two models differ
    shown = test.set_index("patient_id")["mean"].sort_index()
    np.testing.assert_allclose(shown, means["test_best_fold"].sort_index())
    html = (copy / "results/report/thesis.html").read_text()
    assert "the results below are those of the best fold" in html


def test_adding_a_value_trains_only_the_new_configurations_folds(workdir: Path) -> None:
    sweep = {"grids": {"loss": {"loss": ["cross_entropy", "dice", "ce_dice"]}}}
    result = plan_with_sweep(workdir, sweep, SWEEP)
    jobs = planned_jobs(result)
    assert jobs["train"] == FOLDS and jobs["select"] == FOLDS, jobs
    for i in range(FOLDS):
        assert f"loss-ce-dice_fold-{i}" in result.stdout


def test_a_transfer_run_starts_from_its_own_fold_of_the_source(tmp_path: Path) -> None:
    sweep = {
        "grids": {
            "source": {"init_from": [None]},
            "transfer": {"init_from": ["default"], "freeze_blocks": [1]},
        }
    }
    configure(tmp_path, CONFIG, sweep)
    result = snakemake(tmp_path, "--dry-run", "--printshellcmds")
    assert result.returncode == 0, result.stderr[-3000:]
    starts = {}
    for line in result.stdout.splitlines():
        run = re.search(r'"run_id": "([^"]+)"', line)
        source = re.search(r"--init-selection (\S+)", line)
        if run and source:
            starts[run.group(1)] = source.group(1)
    transfer = "freeze_blocks-1_init_from-default"
    assert starts == {
        f"{transfer}_fold-{i}": f"results/runs/default_fold-{i}/selection.json"
        for i in range(FOLDS)
    }


def test_each_fold_holds_out_one_site_and_the_thesis_reports_every_site(workdir: Path) -> None:
    splits = pd.read_csv(workdir / "results/splits/splits.csv", dtype=str)
    site = dict(zip(splits["subject_id"], splits["source"], strict=True))
    for configuration in CONFIGURATIONS:
        for i, held_out in enumerate(SITES):
            fold = _subjects(workdir, f"{configuration}_fold-{i}")
            assert {site[s] for s in fold["val"]} == {held_out}
            assert held_out not in {site[s] for s in fold["train"]}
    html = (workdir / "results/report/thesis.html").read_text()
    for phrase in [
        "Results by site",
        "by the fold model trained without that site",
        "Kruskal–Wallis test of whether the sites differ",
        "Left out: maas, whose subjects are all unlabelled",
        "leave-one-site-out cross-validation over 2 sites",
        "On test, the weakest site of",
        "by site; each tick gives",
    ]:
        assert phrase in html, phrase
    assert "epi 2, jopp 2" in html  # validation: each site's two development patients
    assert (workdir / "results/figures/boxplot_sites.png").stat().st_size > 1000
