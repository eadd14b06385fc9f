"""Final models are chosen on validation scores only, overall and per group."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from segsweep.sweep.final import choose_final, selection_scores
from segsweep.sweep.grammar import expand_sweep

SCORES = pd.DataFrame(
    {
        "run_id": ["a", "b", "c", "d", "e"],
        "channels": ["ct", "ct", "pet", "pet", "petct"],
        "score": [0.50, 0.55, 0.60, math.nan, 0.58],
    }
)


def test_best_overall() -> None:
    final = choose_final(SCORES, n_best=2, group_by=[], higher_is_better=True)
    assert final["run_id"].tolist() == ["c", "e"]
    assert final["group"].tolist() == ["overall", "overall"]


def test_best_per_group_skips_undefined_scores() -> None:
    final = choose_final(SCORES, n_best=1, group_by=["channels"], higher_is_better=True)
    rows = dict(zip(final["run_id"], final["group"], strict=True))
    assert rows == {"c": "overall; channels=pet", "b": "channels=ct", "e": "channels=petct"}


def test_lower_is_better_and_ties_go_to_the_smaller_id() -> None:
    scores = pd.DataFrame({"run_id": ["y", "x", "z"], "score": [0.2, 0.2, 0.3]})
    assert choose_final(scores, 1, [], higher_is_better=False)["run_id"].tolist() == ["x"]


def test_unknown_group_and_no_scores_are_errors() -> None:
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        choose_final(SCORES, 1, ["modality"], True)
    with pytest.raises(ValueError, match="no run has a defined"):
        choose_final(SCORES.assign(score=math.nan), 1, [], True)


def selection_files(results: Path, runs) -> dict[str, Path]:
    return {run.run_id: results / "runs" / run.run_id / "selection.json" for run in runs}


def test_selection_scores_reads_each_runs_selection(tmp_path: Path) -> None:
    runs = expand_sweep({"grids": {"g": {"loss": ["dice", "ce"]}}}, {"loss": "dice", "seed": 0})
    for run, score in zip(runs, [0.7, 0.8], strict=True):
        folder = tmp_path / "runs" / run.run_id
        folder.mkdir(parents=True)
        (folder / "selection.json").write_text(json.dumps({"selected": {"score": score}}))
    table = selection_scores(runs, selection_files(tmp_path, runs))
    assert table.set_index("run_id")["score"].to_dict() == {"default": 0.7, "loss-ce": 0.8}


def test_failed_runs_are_never_chosen(tmp_path: Path) -> None:
    runs = expand_sweep({"grids": {"g": {"loss": ["dice", "ce"]}}}, {"loss": "dice", "seed": 0})
    selections = {
        "default": {"status": "failed", "error": "RuntimeError: boom", "selected": None},
        "loss-ce": {"selected": {"score": 0.4}},
    }
    for run_id, selection in selections.items():
        folder = tmp_path / "runs" / run_id
        folder.mkdir(parents=True)
        (folder / "selection.json").write_text(json.dumps(selection))
    table = selection_scores(runs, selection_files(tmp_path, runs))
    assert table["run_id"].tolist() == ["loss-ce"]
    assert choose_final(table, 2, [], True)["run_id"].tolist() == ["loss-ce"]
    (tmp_path / "runs" / "loss-ce" / "selection.json").write_text(json.dumps(selections["default"]))
    with pytest.raises(ValueError, match="every training failed"):
        choose_final(selection_scores(runs, selection_files(tmp_path, runs)), 1, ["loss"], True)


def test_best_per_input_modality_groups_list_valued_inputs(tmp_path: Path) -> None:
    grid = {"inputs": [["ct", "pet"], ["ct"], ["pet"]], "seed": [0, 1]}
    runs = expand_sweep({"grids": {"g": grid}}, {"inputs": None, "seed": 0})
    for k, run in enumerate(runs):
        folder = tmp_path / "runs" / run.run_id
        folder.mkdir(parents=True)
        (folder / "selection.json").write_text(json.dumps({"selected": {"score": k / 10}}))
    final = choose_final(
        selection_scores(runs, selection_files(tmp_path, runs)), 1, ["inputs"], True
    )
    groups = dict(zip(final["group"], final["run_id"], strict=True))
    assert set(groups) == {"overall; inputs=pet", "inputs=ct", "inputs=ct+pet"}
    assert groups["inputs=ct"] == "inputs-ct_seed-1"
