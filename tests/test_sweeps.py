"""The example sweeps of config/sweeps/ expand against the schema, and the tiny sweep touching
every training dimension (2D and 3D U-Net) trains on CPU (transfer runs after the run they start
from)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
import torch
import yaml
from test_train import write_toy_h5

from segsweep.sweep.grammar import expand_sweep, load_sweep
from segsweep.train.loop import train_run

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
TRAIN_SCHEMA = SCHEMA["properties"]["train"]


def train_defaults() -> dict:
    """The `train` section as the workflow sees it: config.yaml over the schema's defaults."""
    defaults = {k: v["default"] for k, v in TRAIN_SCHEMA["properties"].items()}
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())["train"]
    return {**defaults, **config}


def expand(path: Path):
    return expand_sweep(
        load_sweep(path), train_defaults(), lambda p: jsonschema.validate(p, TRAIN_SCHEMA)
    )


@pytest.mark.parametrize("path", sorted((ROOT / "config/sweeps").glob("*.yaml")), ids=str)
def test_example_sweeps_are_valid(path):
    runs = expand(path)
    assert len(runs) > 1
    ids = {r.run_id for r in runs}
    for run in runs:  # a transfer run starts from a run of the same sweep
        assert run.params["init_from"] in ids | {None}


def test_invalid_sweep_values_list_what_is_allowed():
    sweep = {"grids": {"g": {"loss": ["focal"]}}}
    with pytest.raises(jsonschema.ValidationError, match="'focal' is not one of.*fbeta2"):
        expand_sweep(sweep, train_defaults(), lambda p: jsonschema.validate(p, TRAIN_SCHEMA))


def test_the_sweep_touching_every_dimension_trains(tmp_path):
    torch.set_num_threads(1)
    data = (
        write_toy_h5(tmp_path / "train.h5", ("a", "b", "c"), seed=1, volumes=True),
        write_toy_h5(tmp_path / "val.h5", ("d", "e"), seed=2, volumes=True),
    )
    runs = expand(ROOT / "config/sweeps/every_dimension.yaml")
    assert {r.params["model"] for r in runs} == {"unet2d", "unet3d"}
    runs.sort(key=lambda r: r.params["init_from"] is not None)  # sources first
    for run in runs:
        out = tmp_path / run.run_id
        init = None
        if run.params["init_from"]:
            source = tmp_path / run.params["init_from"] / "checkpoints"
            init = (
                source / json.loads((source / "index.json").read_text())["checkpoints"][-1]["file"]
            )
        train_run(run.params, *data, out, device="cpu", init_checkpoint=init)
        log = pd.read_csv(out / "train_log.csv")
        assert log["train_loss"].notna().all(), run.run_id
        assert (out / "checkpoints/index.json").is_file()
