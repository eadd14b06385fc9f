"""Training through the rungs of successive halving (segsweep.train.rungs): a run trained rung by
rung, each job starting from the state the rung below left, ends with the checkpoints, log and
weights of an uninterrupted run (CPU); a pruned run ends at its rung; a failed rung says so."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from test_train import _assert_same_weights, _weights, write_toy_h5

from segsweep import layout
from segsweep.errors import InputError
from segsweep.tasks import stages
from segsweep.train.loop import LOG_COLUMNS, RunFiles, train_run
from segsweep.train.rungs import Rung, record_failure

torch.set_num_threads(1)


@pytest.fixture()
def data(tmp_path):
    return (
        write_toy_h5(tmp_path / "train.h5", ("a", "b", "c"), seed=1),
        write_toy_h5(tmp_path / "val.h5", ("d", "e"), seed=2),
    )


# a schedule over all epochs (cosine restarts), augmentation and dropout: anything a rung could
# get wrong (the learning rate, an RNG) changes the weights
HP = {
    "model": "unet2d",
    "depth": 2,
    "base_channels": 4,
    "labels": "merged",
    "loss": "dice",
    "lr": 0.01,
    "batch_size": 4,
    "epochs": 6,
    "checkpoint_every": 2,
    "dropout": 0.3,
    "augment": True,
    "lr_policy": "cosine",
    "lr_t0": 3,
    "seed": 3,
}


def rung_files(folder, epochs: int) -> RunFiles:
    """A run's files at a rung, laid out as the workflow lays them out."""
    rung = {"run": "r", "epochs": str(epochs)}

    def at(pattern):
        return layout.under(
            folder, layout.path(layout.at_rung(pattern), **rung), layout.RUN_DIR, run="r"
        )

    return RunFiles(
        at(layout.RUN_PARAMS),
        at(layout.RUN_LOG),
        layout.under(folder, layout.path(layout.RUNG_INDEX, **rung), layout.RUN_DIR, run="r"),
        at(layout.RUN_PROVENANCE),
        layout.under(folder, layout.path(layout.RUN_STATE, run="r"), layout.RUN_DIR, run="r"),
        at(layout.RUN_SUBJECTS),
    )


def snapshot(folder, epochs: int):
    return layout.under(
        folder, layout.path(layout.RUNG_STATE, run="r", epochs=str(epochs)), layout.RUN_DIR, run="r"
    )


def through_rungs(data, folder, rungs: list[int], stop_at: int | None = None) -> None:
    """Train rung by rung as the workflow does: a job per rung below the last, from the state
    of the one below, then the run's own job (to the end, or ending at `stop_at`)."""
    start = None
    for epochs in rungs[:-1]:
        rung = Rung(epochs, start, snapshot(folder, epochs))
        train_run(HP, *data, rung_files(folder, epochs), device="cpu", rung=rung)
        start = snapshot(folder, epochs)
    train_run(HP, *data, RunFiles.in_folder(folder), device="cpu", rung=Rung(stop_at, start))


def test_a_run_promoted_through_every_rung_ends_as_an_uninterrupted_run(data, tmp_path):
    reference, halved = tmp_path / "reference", tmp_path / "halved"
    train_run(HP, *data, reference, device="cpu")
    through_rungs(data, halved, [2, 4, 6])
    index = json.loads((reference / "checkpoints/index.json").read_text())
    assert json.loads((halved / "checkpoints/index.json").read_text()) == index
    assert [c["file"] for c in index["checkpoints"]] == [f"epoch-000{e}.pt" for e in (2, 4, 6)]
    for entry in index["checkpoints"]:
        _assert_same_weights(
            _weights(reference / "checkpoints" / entry["file"]),
            _weights(halved / "checkpoints" / entry["file"]),
        )
    columns = [c for c in LOG_COLUMNS if c != "time_s"]
    pd.testing.assert_frame_equal(
        pd.read_csv(reference / "train_log.csv")[columns],
        pd.read_csv(halved / "train_log.csv")[columns],
    )
    # each rung's index lists the checkpoints so far; the run's state is gone at its end
    rung_index = json.loads((halved / "checkpoints/rung-4.json").read_text())
    assert [c["epoch"] for c in rung_index["checkpoints"]] == [2, 4]
    assert rung_index["epochs_trained"] == 4
    assert len(pd.read_csv(halved / "rungs/4/train_log.csv")) == 4
    assert not (halved / "state").exists()


def test_a_rung_off_the_checkpoint_grid_checkpoints_its_last_epoch(data, tmp_path):
    through_rungs(data, tmp_path, [3, 6])
    rung_index = json.loads((tmp_path / "checkpoints/rung-3.json").read_text())
    assert [c["file"] for c in rung_index["checkpoints"]] == ["epoch-0002.pt", "epoch-0003.pt"]


def test_a_pruned_run_ends_at_its_rung_without_training(data, tmp_path, capsys):
    through_rungs(data, tmp_path, [2, 6], stop_at=2)
    index = json.loads((tmp_path / "checkpoints/index.json").read_text())
    assert index["epochs_trained"] == 2
    assert [c["epoch"] for c in index["checkpoints"]] == [2]
    assert len(pd.read_csv(tmp_path / "train_log.csv")) == 2
    assert "epoch 3/6" not in capsys.readouterr().out
    assert not (tmp_path / "state").exists()


def test_a_state_past_the_rung_is_not_resumed(data, tmp_path, capsys):
    """A run trained further before (e.g. without halving) restarts rather than overshoot."""
    train_run(HP, *data, tmp_path, device="cpu", rung=Rung(4, None, snapshot(tmp_path, 4)))
    capsys.readouterr()
    train_run(
        HP, *data, rung_files(tmp_path, 2), device="cpu", rung=Rung(2, None, snapshot(tmp_path, 2))
    )
    assert "trained past epoch 2" in capsys.readouterr().out
    assert len(pd.read_csv(tmp_path / "rungs/2/train_log.csv")) == 2


def test_the_job_after_a_failed_rung_fails_with_its_reason(data, tmp_path):
    record_failure(snapshot(tmp_path, 2), RuntimeError("CUDA out of memory"))
    with pytest.raises(InputError, match="the rung below failed: RuntimeError: CUDA out of"):
        train_run(HP, *data, tmp_path, device="cpu", rung=Rung(None, snapshot(tmp_path, 2)))


def test_the_train_command_stops_at_a_rung_and_records_a_failure_as_its_snapshot(data, tmp_path):
    base = ["--train", str(data[0]), "--val", str(data[1]), "--threads", "1"]
    rung = ["--stop-at", "2", "--rung-state", str(snapshot(tmp_path, 2))]
    files = rung_files(tmp_path, 2)
    outputs = [
        f"--{name}={getattr(files, name)}"
        for name in ("params", "log", "index", "provenance", "state", "subjects")
    ]
    stages.train(["--hp-json", json.dumps(HP), *base, *rung, *outputs, "--device", "cpu"])
    assert json.loads(files.index.read_text())["epochs_trained"] == 2
    assert snapshot(tmp_path, 2).is_file()
    bad = json.dumps({**HP, "optimizer": "rmsprop"})
    stages.train(["--hp-json", bad, *base, *rung, *outputs, "--device", "cpu"])
    assert json.loads(files.index.read_text())["status"] == "failed"
    record = torch.load(snapshot(tmp_path, 2), weights_only=True)
    assert record["status"] == "failed" and "rmsprop" in record["error"]
