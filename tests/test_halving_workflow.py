"""Successive halving and the seed-noise floor as steps of the real Snakefile.

One run from the tiny cohort's preprocessing (tests/conftest.py `seeded`), with two GPUs leased
on this CPU machine (`--resources gpu=2`): four configurations train to the first rung (1 of 4
epochs); each rung's decision (a checkpoint) promotes the best half, which goes on from its
rung's state (rung 2 at 2 epochs, then the last at 4); the others end at their rung, as
results. The confirmation retrains the top two settings (the survivor, then the runner-up the
last rung pruned) with two more seeds each, and the final model is chosen on the seed-averaged
score. Then: the survivor's checkpoints equal those of the same run trained uninterrupted by
hand; rerunning does nothing and leaves the decisions untouched; growing the grid trains only
the new configuration through the rungs it earns.
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
BUDGET = {"method": "halving", "eta": 2, "min_epochs": 1}  # rungs at 1, 2 and 4 epochs
SWEEP = {**TINY_SWEEP, "budget": BUDGET, "confirm": {"top": 2, "seeds": 2}}
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


def decision(root: Path, epochs: int) -> pd.DataFrame:
    table = pd.read_csv(root / L.path(L.RUNG_DECISION, epochs=str(epochs)))
    return table.set_index("configuration")


def index(root: Path, run: str) -> dict:
    return json.loads((root / L.path(L.RUN_INDEX, run=run)).read_text())


def promoted(root: Path, epochs: int) -> list[str]:
    return sorted(decision(root, epochs).query("decision == 'promoted'").index)


def test_each_rung_promotes_the_best_half_and_the_rest_end_there(halving):
    first, second = decision(halving, 1), decision(halving, 2)
    assert sorted(first.index) == CONFIGURATIONS
    assert (first["rung"] == 1).all() and (first["next_epochs"] == 2).all()
    assert sorted(second.index) == promoted(halving, 1)
    assert (second["rung"] == 2).all() and (second["next_epochs"] == 4).all()
    assert len(promoted(halving, 1)) == 2 and len(promoted(halving, 2)) == 1
    for table in (first, second):
        ranked = table.query("decision == 'promoted'")["rank"]
        assert ranked.max() < table.query("decision == 'pruned'")["rank"].min()
        assert table.query("decision == 'pruned'")["reason"].str.contains("below the best").all()
    ends = {c: 1 for c in CONFIGURATIONS} | {c: 2 for c in second.index}
    ends |= {c: 4 for c in promoted(halving, 2)}
    for configuration, epochs in ends.items():
        log = pd.read_csv(halving / L.path(L.RUN_LOG, run=configuration))
        assert len(log) == epochs, configuration
        recorded = index(halving, configuration).get("epochs_trained", 4)
        assert recorded == epochs
        for rung in (1, 2):
            rung_index = halving / L.path(L.RUNG_INDEX, run=configuration, epochs=str(rung))
            assert rung_index.is_file() == (rung <= epochs)
        # a pruned configuration is a result: selected and validated where it ended
        assert (halving / L.path(L.SELECTION, run=configuration)).is_file()
    (survivor,) = promoted(halving, 2)
    at_second = halving / L.path(L.RUNG_INDEX, run=survivor, epochs="2")
    assert [c["epoch"] for c in json.loads(at_second.read_text())["checkpoints"]] == [1, 2]


def test_the_final_model_is_a_survivor_chosen_on_its_seed_averaged_score(halving):
    survivor, runner_up = (
        promoted(halving, 2)[0],
        *(set(promoted(halving, 1)) - set(promoted(halving, 2))),
    )
    confirm = pd.read_csv(halving / L.CONFIRM)
    assert confirm["setting"].tolist() == [survivor, runner_up]  # the survivor first
    spread = pd.read_csv(halving / L.SEED_SPREAD).set_index("setting")
    # the runner-up's own seed ended at rung 2: it is compared on its two full-length seeds
    assert spread["seeds"].to_dict() == {survivor: 3, runner_up: 2}
    # the runner-up's model would have trained 2 epochs: it is compared, the survivor chosen
    final = pd.read_csv(halving / L.FINAL)
    assert final["run_id"].tolist() == [survivor]
    assert final["score"].iloc[0] == pytest.approx(spread.loc[survivor, "mean"])
    for setting in (survivor, runner_up):
        for extra in (1, 2):
            run = f"seed-{extra}" if setting == "default" else f"{setting}_seed-{extra}"
            assert len(pd.read_csv(halving / L.path(L.RUN_LOG, run=run))) == 4
    winners = pd.read_csv(halving / L.SEED_WINNERS)
    assert winners["seed"].tolist() == [1, 2]  # the seeds both settings trained with


def test_a_survivor_has_the_checkpoints_of_an_uninterrupted_run(halving, tmp_path):
    (survivor,) = promoted(halving, 2)
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
    assert "all 4 configurations at rung 1, 1 epochs" in html or "at rung 1" in html


def test_rerunning_does_nothing_and_leaves_the_decisions(halving):
    decided = halving / L.path(L.RUNG_DECISION, epochs="1")
    before = decided.stat().st_mtime_ns
    dry = snakemake(halving, "-n", env={**os.environ, **GPUS})
    succeeded(dry)
    assert "Nothing to be done" in dry.stdout + dry.stderr, planned_jobs(dry)
    assert decided.stat().st_mtime_ns == before


def test_a_grown_grid_trains_only_the_new_configuration(halving):
    """Adding a loss trains the new configuration to the rung and on as far as it earns; no run
    that already went further is retrained, and what trained past the rung stays promoted."""
    promoted_before = promoted(halving, 1)
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
    first = decision(halving, 1)
    assert sorted(first.index) == sorted([*CONFIGURATIONS, "loss-ce-dice"])
    # what trained past the first rung before stays promoted, whatever the new ranking
    assert set(first.query("decision == 'promoted'").index) >= set(promoted_before)
    log = pd.read_csv(halving / L.path(L.RUN_LOG, run="loss-ce-dice"))
    assert len(log) == index(halving, "loss-ce-dice").get("epochs_trained", 4)
