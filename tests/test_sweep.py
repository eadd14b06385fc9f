"""The sweep grammar: run ids depend on hyperparameter values only."""

from __future__ import annotations

import pytest

from segsweep.errors import ConfigError
from segsweep.sweep.grammar import expand_sweep, run_id, swept_names

DEFAULTS = {"loss": "dice", "labels": "merged", "lr": 0.001, "batch_size": 8, "seed": 0}


def ids(sweep: dict) -> list[str]:
    return [run.run_id for run in expand_sweep(sweep, DEFAULTS)]


def test_ids_name_the_values_that_differ_from_the_base() -> None:
    sweep = {"grids": {"a": {"loss": ["cross_entropy", "dice"], "labels": ["merged", "separate"]}}}
    assert ids(sweep) == [
        "default",
        "labels-separate",
        "labels-separate_loss-cross-entropy",
        "loss-cross-entropy",
    ]


def test_ids_do_not_depend_on_grid_names_order_or_value_order() -> None:
    one = {"grids": {"a": {"loss": ["dice", "cross_entropy"]}, "b": {"lr": [0.001, 0.0001]}}}
    two = {"grids": {"z": {"lr": [0.0001, 0.001]}, "y": {"loss": ["cross_entropy", "dice"]}}}
    assert ids(one) == ids(two) == ["default", "loss-cross-entropy", "lr-0.0001"]


def test_adding_a_value_only_adds_runs() -> None:
    before = set(ids({"grids": {"g": {"loss": ["dice", "cross_entropy"], "lr": [0.001]}}}))
    after = set(ids({"grids": {"g": {"loss": ["dice", "cross_entropy"], "lr": [0.001, 1e-5]}}}))
    assert before < after
    assert after - before == {"lr-1e-05", "loss-cross-entropy_lr-1e-05"}


def test_identical_combinations_from_two_grids_are_one_run() -> None:
    sweep = {"grids": {"a": {"loss": ["cross_entropy"]}, "b": {"loss": ["cross_entropy", "dice"]}}}
    runs = expand_sweep(sweep, DEFAULTS)
    assert [r.run_id for r in runs] == ["default", "loss-cross-entropy"]
    assert runs[1].params == {**DEFAULTS, "loss": "cross_entropy"}


def test_fixed_overrides_every_run_and_repeats_add_seeds() -> None:
    sweep = {"fixed": {"batch_size": 4}, "grids": {"g": {"loss": ["dice"]}}, "repeats": 3}
    runs = expand_sweep(sweep, DEFAULTS)
    assert [r.run_id for r in runs] == ["default", "seed-1", "seed-2"]
    assert all(r.params["batch_size"] == 4 for r in runs)
    assert [r.params["seed"] for r in runs] == [0, 1, 2]
    assert swept_names(sweep) == ["loss", "seed"]
    assert runs[2].values == {"loss": "dice", "seed": 2}


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="loss_fn.*known hyperparameters: batch_size, labels"):
        expand_sweep({"grids": {"g": {"loss_fn": ["dice"]}}}, DEFAULTS)
    with pytest.raises(ConfigError, match="sweep.fixed"):
        expand_sweep({"fixed": {"epoch": 3}}, DEFAULTS)
    with pytest.raises(ConfigError, match="top-level keys"):
        expand_sweep({"grid": {}}, DEFAULTS)


def test_invalid_values_are_rejected_by_the_validator() -> None:
    def validate(params: dict) -> None:
        if params["loss"] not in {"dice", "cross_entropy"}:
            raise ConfigError("loss", params["loss"], "cross_entropy, dice")

    with pytest.raises(ConfigError, match="'focal'.*cross_entropy, dice"):
        expand_sweep({"grids": {"g": {"loss": ["dice", "focal"]}}}, DEFAULTS, validate)


def test_long_ids_stay_short_and_unique() -> None:
    base = {f"name_{i}": 0 for i in range(30)}
    params = {k: 1 for k in base}
    rid = run_id(params, base)
    assert len(rid) <= 120
    assert rid != run_id({**params, "name_29": 2}, base)
