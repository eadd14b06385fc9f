"""`python -m segsweep status` (segsweep.sweep.status): the state, epoch, rung and best score of
every configuration of a sweep, from a results folder written by hand."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import pandas as pd
import pytest
import yaml

from segsweep import layout
from segsweep.sweep.grammar import Run, fold_run_id
from segsweep.sweep.status import main, sweep_status, table_text
from segsweep.train.loop import LOG_COLUMNS

RUNGS = [4, 12, 20]  # halving: min_epochs 4, eta 3, train.epochs 20


def make_run(configuration: str, lr: float, fold: int | None = None) -> Run:
    run_id = configuration if fold is None else fold_run_id(configuration, fold)
    params = {"lr": lr, "epochs": 20, **({} if fold is None else {"fold": fold})}
    return Run(run_id, params, {"lr": lr}, configuration, fold)


def write(results: Path, pattern: str, content: object, **wildcards: str) -> None:
    path = layout.under(results, pattern, **wildcards)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, pd.DataFrame):
        content.to_csv(path, index=False)
    else:
        path.write_text(json.dumps(content))


def log(epochs: int, start: float = 0.5) -> pd.DataFrame:
    """A training log of `epochs` epochs whose val_dice peaks at start + 0.04 at epoch 5."""
    rows = [
        {
            "epoch": e,
            "step": 3 * e,
            "lr": 0.1,
            "train_loss": 1 / e,
            "val_loss": 1 / e,
            "val_dice": start + 0.04 - abs(e - 5) / 100,
            "time_s": 1.0,
        }
        for e in range(1, epochs + 1)
    ]
    return pd.DataFrame(rows, columns=LOG_COLUMNS)


def done(results: Path, run: str, start: float, score: float) -> None:
    write(results, layout.RUN_LOG, log(20, start), run=run)
    write(results, layout.RUN_INDEX, {"checkpoints": [], "classes": []}, run=run)
    write(results, layout.SELECTION, {"selected": {"score": score}}, run=run)
    write(results, layout.RUN_PROVENANCE, {"status": "ok"}, run=run)


def at_rung(results: Path, run: str, epochs: int, start: float) -> None:
    write(results, layout.RUNG_INDEX, {"checkpoints": []}, run=run, epochs=str(epochs))
    write(results, layout.at_rung(layout.RUN_LOG), log(epochs, start), run=run, epochs=str(epochs))


def decision(results: Path, epochs: int, rows: list[tuple[str, str, str]]) -> None:
    table = pd.DataFrame(rows, columns=["configuration", "decision", "reason"])
    write(results, layout.RUNG_DECISION, table.assign(rung=1, epochs=epochs), epochs=str(epochs))


@pytest.fixture()
def sweep(tmp_path: Path) -> tuple[list[Run], Path]:
    """One configuration in each state, the last with three folds, under halving."""
    results = tmp_path / "results"
    runs = [
        make_run("lr-0.1", 0.1),  # waiting
        make_run("lr-0.2", 0.2),  # training
        make_run("lr-0.3", 0.3),  # pruned at rung 1
        make_run("lr-0.4", 0.4),  # done
        make_run("lr-0.5", 0.5),  # failed
        make_run("lr-0.7", 0.7),  # at rung 1, promoted
        *(make_run("lr-0.6", 0.6, fold) for fold in range(3)),  # two folds done, one training
    ]
    write(results, layout.RUN_LOG, log(7, 0.6), run="lr-0.2")
    at_rung(results, "lr-0.3", 4, 0.2)
    done(results, "lr-0.4", 0.7, 0.71)
    write(results, layout.RUN_LOG, log(0).iloc[:0], run="lr-0.5")
    failed = {"status": "failed", "error": "RuntimeError: out of memory", "checkpoints": []}
    write(results, layout.RUN_INDEX, failed, run="lr-0.5")
    at_rung(results, "lr-0.7", 4, 0.3)
    for fold, start in enumerate((0.5, 0.55)):
        at_rung(results, f"lr-0.6_fold-{fold}", 4, start)
        done(results, f"lr-0.6_fold-{fold}", start, 0.6)
    at_rung(results, "lr-0.6_fold-2", 4, 0.1)
    write(results, layout.RUN_LOG, log(7, 0.1), run="lr-0.6_fold-2")
    decision(
        results,
        4,
        [
            ("lr-0.6", "promoted", "rank 1 of 3: within the best 1"),
            ("lr-0.7", "promoted", "rank 2 of 3: within the best 1"),
            ("lr-0.3", "pruned", "rank 3 of 3: below the best 1"),
        ],
    )
    return runs, results


def test_every_state_of_a_configuration(sweep):
    table = sweep_status(*sweep, "val_dice", RUNGS).set_index("configuration")
    assert list(table.index) == [
        "lr-0.1",
        "lr-0.2",
        "lr-0.3",
        "lr-0.4",
        "lr-0.5",
        "lr-0.7",
        "lr-0.6",
    ]
    assert table["state"].to_dict() == {
        "lr-0.1": "waiting",
        "lr-0.2": "training",
        "lr-0.3": "pruned",
        "lr-0.4": "done",
        "lr-0.5": "failed",
        "lr-0.7": "at rung 1",
        "lr-0.6": "training",
    }
    assert table["epoch"].to_dict() == {
        "lr-0.1": "0/20",
        "lr-0.2": "7/20",
        "lr-0.3": "4/20",
        "lr-0.4": "20/20",
        "lr-0.5": "0/20",
        "lr-0.7": "4/20",
        "lr-0.6": "20/20",
    }
    assert table["rung"].to_dict() == {
        "lr-0.1": "0 of 3",
        "lr-0.2": "0 of 3",
        "lr-0.3": "1 of 3",
        "lr-0.4": "3 of 3",
        "lr-0.5": "0 of 3",
        "lr-0.7": "1 of 3",
        "lr-0.6": "1 of 3",
    }
    detail = table["detail"]
    assert detail["lr-0.3"] == "at rung 1 (4 epochs): rank 3 of 3: below the best 1"
    assert detail["lr-0.5"] == "RuntimeError: out of memory"
    assert detail["lr-0.7"] == "promoted to rung 2 (12 epochs)"
    assert detail["lr-0.6"] == "folds 0, 1: done; fold 2: epoch 7/20"
    assert detail["lr-0.1"] == detail["lr-0.2"] == detail["lr-0.4"] == ""
    assert table.loc["lr-0.4", "lr"] == 0.4


def test_the_best_score_is_the_best_logged_and_the_selected_one_the_runs_mean(sweep):
    table = sweep_status(*sweep, "val_dice", RUNGS).set_index("configuration")
    # every log peaks at its start + 0.04 (epoch 5): over its runs' rows, the rung's too
    expected = {"lr-0.2": 0.64, "lr-0.3": 0.23, "lr-0.4": 0.74, "lr-0.7": 0.33, "lr-0.6": 0.59}
    assert table["best"].dropna().to_dict() == pytest.approx(expected)
    assert table.loc[["lr-0.1", "lr-0.5"], "best"].isna().all()
    assert table["selected"].dropna().to_dict() == {"lr-0.4": 0.71}


def test_a_rung_awaiting_its_decision_and_a_failure_said_by_the_selection(sweep):
    runs, results = sweep
    (results / "budget" / "rung-4.csv").unlink()
    failed = {"status": "failed", "error": "ValueError: no checkpoints", "selected": None}
    write(results, layout.SELECTION, failed, run="lr-0.4")
    table = sweep_status(runs, results, "val_dice", RUNGS).set_index("configuration")
    assert table.loc["lr-0.7", ["state", "detail"]].tolist() == [
        "at rung 1",
        "awaiting the decision",
    ]
    assert table.loc["lr-0.3", "state"] == "at rung 1"
    assert table.loc["lr-0.4", ["state", "detail"]].tolist() == [
        "failed",
        "ValueError: no checkpoints",
    ]


def test_without_halving_there_is_no_rung(tmp_path):
    results = tmp_path / "results"
    runs = [make_run("lr-0.1", 0.1), make_run("lr-0.2", 0.2)]
    done(results, "lr-0.2", 0.5, 0.52)
    write(results, layout.RUN_PROVENANCE, {"status": "failed"}, run="lr-0.1")
    table = sweep_status(runs, results)
    assert table["state"].tolist() == ["failed", "done"]
    assert table["rung"].tolist() == ["", ""]


def test_the_text_table_is_aligned_and_counts_the_states(sweep):
    text = table_text(sweep_status(*sweep, "val_dice", RUNGS))
    lines = text.splitlines()
    header = lines[0].split()
    assert header == ["configuration", "lr", "state", "epoch", "rung", "best", "selected", "detail"]
    column = lines[0].index("state")
    assert [line[column:].split("  ")[0] for line in lines[1:8]] == [
        "waiting",
        "training",
        "pruned",
        "done",
        "failed",
        "at rung 1",
        "training",
    ]
    assert "0.7400" in lines[4] and "0.7100" in lines[4]
    assert (
        lines[-1]
        == "7 configurations: 1 failed, 1 pruned, 1 done, 1 at rung, 2 training, 1 waiting"
    )


def run_main(*argv: str) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        main(list(argv))
    return out.getvalue()


def test_the_command_reads_the_sweep_as_the_workflow_does(tmp_path):
    """The working directory's config/config.yaml, a --config file over it, the config's sweep
    file; CSV or text."""
    (tmp_path / "config").mkdir()
    base = {"sweep": "config/grid.yaml", "train": {"epochs": 20, "lr": 0.1}}
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "over.yaml").write_text(yaml.safe_dump({"train": {"epochs": 6}}))
    (tmp_path / "config" / "grid.yaml").write_text(
        yaml.safe_dump({"grids": {"g": {"lr": [0.1, 0.01]}}})
    )
    results = tmp_path / "results"
    write(results, layout.RUN_LOG, log(3, 0.4), run="lr-0.01")
    argv = ["--workdir", str(tmp_path), "--config", str(tmp_path / "over.yaml")]
    table = pd.read_csv(io.StringIO(run_main(*argv, "--csv")))
    assert table["configuration"].tolist() == ["default", "lr-0.01"]
    assert table["lr"].tolist() == [0.1, 0.01]
    assert table["state"].tolist() == ["waiting", "training"]
    assert table["epoch"].tolist() == ["0/6", "3/6"]
    assert pd.isna(table["best"][0]) and table["best"][1] == pytest.approx(0.42)
    lines = run_main(*argv).splitlines()
    assert lines[2].split()[:4] == ["lr-0.01", "0.01", "training", "3/6"]
    assert lines[0].index("state") == lines[1].index("waiting") == lines[2].index("training")
    assert lines[-1] == "2 configurations: 1 training, 1 waiting"


def test_a_classification_sweep_reads_its_auc_and_folds(tmp_path):
    config = {"task": "classification", "split": {"folds": 2}, "train": {"model": "resnet18"}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"grids": {"g": {"dropout": [0.0, 0.5]}}}))
    results = tmp_path / "results"
    auc = log(2).rename(columns={"val_dice": "val_auc"}).assign(val_auc=[0.6, 0.8])
    write(results, layout.RUN_LOG, auc, run="dropout-0.5_fold-1")
    argv = ["--workdir", str(tmp_path), "--config", str(tmp_path / "config.yaml")]
    table = pd.read_csv(io.StringIO(run_main(*argv, "--sweep", str(sweep), "--csv")))
    assert table["configuration"].tolist() == ["default", "dropout-0.5"]
    assert table["state"].tolist() == ["waiting", "training"]
    assert table["detail"].tolist()[1] == "fold 0: waiting; fold 1: epoch 2/20"
    assert table["best"].tolist()[1] == 0.8
