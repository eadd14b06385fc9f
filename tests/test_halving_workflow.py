"""Successive halving and the seed-noise floor as steps of the real Snakefile.

One run from the tiny cohort's preprocessing (tests/conftest.py `seeded`), with two GPUs leased
on this CPU machine (`--resources gpu=2`): four configurations train to the first rung (2 of 4
epochs), the rung's decision (a checkpoint) promotes the best two, which go on from their rung's
state to the last epoch; the other two end at their rung, as results. The confirmation retrains
the top two settings with one more seed each, and the final model is chosen on the
seed-averaged score. Then: a survivor's checkpoints equal those of the same run trained
uninterrupted by hand; rerunning does nothing and leaves the decisions untouched; growing the
grid trains only the new configuration through the rungs it earns.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from runs import REPO, configure, planned_jobs, snakemake, succeeded
from tiny import TINY_CONFIG, TINY_SWEEP

from segsweep import layout as L

pytestmark = pytest.mark.workflow

CONFIG = {**TINY_CONFIG, "train": {**TINY_CONFIG["train"], "epochs": 4}}
BUDGET = {"method": "halving", "eta": 2, "min_epochs": 2}
SWEEP = {**TINY_SWEEP, "budget": BUDGET, "confirm": {"top": 2, "seeds": 1}}
CONFIGURATIONS = [
    "default",
    "labels-separate",
    "labels-separate_loss-cross-entropy",
    "loss-cross-entropy",
]
GPUS = {"SEGSWEEP_GPU_COUNT": "2"}


@pytest.fixture(scope="module")
def halving(prepared_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from runs import seed

    root = seed(prepared_cohort, tmp_path_factory.mktemp("halving"))
    configure(root, CONFIG, SWEEP)
    env = {**os.environ, **GPUS}
    succeeded(snakemake(root, "--resources", "gpu=2", env=env, timeout=1500))
    return root


def decision(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / L.path(L.RUNG_DECISION, epochs="2")).set_index("configuration")


def index(root: Path, run: str) -> dict:
    return json.loads((root / L.path(L.RUN_INDEX, run=run)).read_text())


def test_the_rung_promotes_the_best_half_and_the_rest_end_there(halving):
    table = decision(halving)
    assert sorted(table.index) == CONFIGURATIONS
    assert (table["rung"] == 1).all() and (table["next_epochs"] == 4).all()
    promoted = table.index[table["decision"] == "promoted"]
    assert len(promoted) == 2
    assert table.loc[promoted, "rank"].max() < table.drop(promoted)["rank"].min()
    for configuration, row in table.iterrows():
        log = pd.read_csv(halving / L.path(L.RUN_LOG, run=configuration))
        rung_index = json.loads(
            (halving / L.path(L.RUNG_INDEX, run=configuration, epochs="2")).read_text()
        )
        assert [c["epoch"] for c in rung_index["checkpoints"]] == [1, 2]
        if row["decision"] == "promoted":
            assert len(log) == 4 and "epochs_trained" not in index(halving, configuration)
        else:
            assert len(log) == 2 and index(halving, configuration)["epochs_trained"] == 2
            # a pruned configuration is a result: selected and validated at its rung
            assert (halving / L.path(L.SELECTION, run=configuration)).is_file()
            assert "below the best 2" in row["reason"]


def test_the_final_model_is_a_survivor_chosen_on_the_seed_averaged_score(halving):
    promoted = set(decision(halving).query("decision == 'promoted'").index)
    confirm = pd.read_csv(halving / L.CONFIRM)
    assert set(confirm["setting"]) == promoted
    final = pd.read_csv(halving / L.FINAL)
    assert set(final["run_id"]) <= promoted
    spread = pd.read_csv(halving / L.SEED_SPREAD).set_index("setting")
    assert set(spread.index) == promoted and (spread["seeds"] == 2).all()
    # the chosen setting has the best mean over its two seeds
    best = spread["mean"].idxmax()
    assert final["run_id"].iloc[0] == best
    for setting in promoted:
        seed_run = f"{setting}_seed-1" if setting != "default" else "seed-1"
        assert len(pd.read_csv(halving / L.path(L.RUN_LOG, run=seed_run))) == 4


def test_a_survivor_has_the_checkpoints_of_an_uninterrupted_run(halving, tmp_path):
    survivor = decision(halving).query("decision == 'promoted'").index[0]
    hp = yaml.safe_load((halving / L.path(L.RUN_PARAMS, run=survivor)).read_text())
    datasets = [halving / L.path(L.DATASET, split=s) for s in ("train", "val")]
    command = [sys.executable, "-m", "segsweep", "train", "--hp-json", json.dumps(hp)]
    command += ["--train", str(datasets[0]), "--val", str(datasets[1])]
    command += ["--splits", str(halving / L.SPLITS), "--out", str(tmp_path), "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts")}
    subprocess.run(command + ["--threads", "1"], check=True, env=env, capture_output=True)
    whole = json.loads((tmp_path / "checkpoints/index.json").read_text())
    assert index(halving, survivor) == whole
    for entry in whole["checkpoints"]:
        ours = torch.load(
            halving / L.RUN_DIR.format(run=survivor) / "checkpoints" / entry["file"],
            weights_only=True,
        )
        theirs = torch.load(tmp_path / "checkpoints" / entry["file"], weights_only=True)
        for key, tensor in theirs["model"].items():
            assert torch.equal(ours["model"][key], tensor), (entry["file"], key)


def test_the_thesis_shows_the_budget_and_the_seed_noise(halving):
    html = (halving / L.THESIS_HTML).read_text()
    assert "Training budget" in html and "Seed noise" in html
    assert "rung 1" in html


def test_rerunning_does_nothing_and_leaves_the_decisions(halving):
    decided = halving / L.path(L.RUNG_DECISION, epochs="2")
    before = decided.stat().st_mtime_ns
    dry = snakemake(halving, "-n", env={**os.environ, **GPUS})
    succeeded(dry)
    assert "Nothing to be done" in dry.stdout + dry.stderr, planned_jobs(dry)
    assert decided.stat().st_mtime_ns == before


def test_a_grown_grid_trains_only_the_new_configuration(halving):
    """Adding a loss trains the new configuration to the rung and on as far as it earns; no run
    that already went further is retrained, and what trained past the rung stays promoted."""
    before = {
        path: path.stat().st_mtime_ns
        for configuration in CONFIGURATIONS
        for path in (halving / L.RUN_DIR.format(run=configuration)).rglob("*.pt")
    }
    grids = {"loss_vs_labels": {"loss": ["cross_entropy", "dice", "ce_dice"], "labels": ["merged"]}}
    grown = {**SWEEP, "grids": {**TINY_SWEEP["grids"], "more": grids["loss_vs_labels"]}}
    configure(halving, CONFIG, grown)
    result = snakemake(halving, L.FINAL, "--resources", "gpu=2", env={**os.environ, **GPUS})
    succeeded(result)
    after = {path: path.stat().st_mtime_ns for path in before}
    assert after == before
    table = decision(halving)
    assert "loss-ce-dice" in table.index
    log = pd.read_csv(halving / L.path(L.RUN_LOG, run="loss-ce-dice"))
    promoted = table.loc["loss-ce-dice", "decision"] == "promoted"
    assert len(log) == (4 if promoted else 2)
    # every configuration the first decision promoted is still promoted (it trained further)
    assert (table.loc[table["reason"].str.startswith("kept")]["decision"] == "promoted").all()
    assert (table["decision"] == "promoted").sum() >= 2
