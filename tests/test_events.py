"""TensorBoard event files of a run (segsweep.train.events): every numeric log column as a scalar
per epoch, the hyperparameters for the HParams plugin, and one point per epoch after a resume."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata
from test_train import HP, write_toy_h5

from segsweep.config_schema import complete
from segsweep.train.events import hparam_value, tag
from segsweep.train.loop import RunFiles, Trainer, train_run

torch.set_num_threads(1)
NAMES = ("with", "without")


@pytest.fixture()
def data(tmp_path):
    """Tiny train and val splits (as tests/test_train.py's)."""
    return (
        write_toy_h5(tmp_path / "train.h5", ("a", "b", "c"), seed=1),
        write_toy_h5(tmp_path / "val.h5", ("d", "e"), seed=2),
    )


def events(folder) -> EventAccumulator:
    """Every event of a run's tensorboard folder, as TensorBoard reads them (purging what a
    resumed writer says to)."""
    accumulator = EventAccumulator(str(folder / "tensorboard"), size_guidance={"scalars": 0})
    accumulator.Reload()
    return accumulator


def assert_scalars_are_the_log(folder) -> None:
    """One point per epoch of every numeric column but the epoch, equal to the log's value."""
    log = pd.read_csv(folder / "train_log.csv")
    read = events(folder)
    columns = [c for c in log.columns if c != "epoch"]
    assert sorted(read.Tags()["scalars"]) == sorted(tag(c) for c in columns)
    for column in columns:
        points = read.Scalars(tag(column))
        assert [p.step for p in points] == log["epoch"].tolist(), column
        for point, value in zip(points, log[column], strict=True):
            assert point.value == pytest.approx(value, rel=1e-6, nan_ok=True), column


def test_tags_keep_the_log_columns_recognisable():
    assert [tag(c) for c in ("train_loss", "val_dice", "val_auc", "lr", "time_s", "step")] == [
        "train/loss",
        "val/dice",
        "val/auc",
        "lr",
        "time_s",
        "step",
    ]
    assert [hparam_value(v) for v in (None, True, 3, 0.5, "adam", ["a", 1])] == [
        "none",
        True,
        3.0,
        0.5,
        "adam",
        '["a", 1]',
    ]


def test_a_run_writes_its_curves_and_hyperparameters(data, tmp_path):
    hp = {**HP, "epochs": 3, "augment": True}
    train_run(hp, *data, tmp_path / "r", device="cpu")
    assert_scalars_are_the_log(tmp_path / "r")
    content = events(tmp_path / "r").PluginTagToContent(metadata.PLUGIN_NAME)
    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    assert [m.name.tag for m in experiment.metric_infos] == ["val/loss", "val/dice"]
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    values = {name: getattr(v, v.WhichOneof("kind")) for name, v in start.hparams.items()}
    assert values["lr"] == HP["lr"] and values["epochs"] == 3 and values["run_id"] == "r"
    assert values["augment"] is True and values["init_from"] == "none"
    assert values["dual_losses"] == json.dumps(complete(HP, "train")["dual_losses"])
    assert {i.name for i in experiment.hparam_infos} == set(values)
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    assert end.status == 1  # STATUS_SUCCESS


class Killed(Exception):
    """The job dies after writing an epoch's events, before saving its state."""


def test_a_resumed_run_has_one_point_per_epoch(data, tmp_path, monkeypatch):
    hp = {**HP, "epochs": 4}
    save_state = Trainer.save_state

    def dies_after_epoch_2(trainer: Trainer) -> None:
        if trainer.progress.epoch == 3 and trainer.progress.position == 0:
            raise Killed
        save_state(trainer)

    monkeypatch.setattr(Trainer, "save_state", dies_after_epoch_2)
    with pytest.raises(Killed):
        train_run(hp, *data, tmp_path / "r", device="cpu")
    monkeypatch.undo()
    # the first job wrote epoch 2's points; its state is that of epoch 1, so epoch 2 is trained
    # again and its points are written anew
    assert [p.step for p in events(tmp_path / "r").Scalars("val/dice")] == [1, 2]
    train_run(hp, *data, tmp_path / "r", device="cpu")
    assert_scalars_are_the_log(tmp_path / "r")
    assert len(list((tmp_path / "r" / "tensorboard").iterdir())) == 2
    train_run(hp, *data, tmp_path / "reference", device="cpu")
    resumed = pd.read_csv(tmp_path / "r" / "train_log.csv").drop(columns="time_s")
    reference = pd.read_csv(tmp_path / "reference" / "train_log.csv").drop(columns="time_s")
    pd.testing.assert_frame_equal(resumed, reference)


def test_a_run_starting_afresh_drops_earlier_events(data, tmp_path):
    train_run({**HP, "epochs": 3}, *data, tmp_path, device="cpu")
    train_run({**HP, "epochs": 2, "lr": 0.02}, *data, tmp_path, device="cpu")
    assert_scalars_are_the_log(tmp_path)
    assert len(list((tmp_path / "tensorboard").iterdir())) == 1


def test_writing_events_changes_nothing_of_the_training(data, tmp_path):
    """Same log (but for wall time) and weights with and without event files."""
    hp = {**HP, "epochs": 2, "dropout": 0.3, "augment": True}
    train_run(hp, *data, tmp_path / "with", device="cpu")
    without = dataclasses.replace(RunFiles.in_folder(tmp_path / "without"), events=None)
    train_run(hp, *data, without, device="cpu")
    assert not (tmp_path / "without" / "tensorboard").exists()
    logs = [pd.read_csv(tmp_path / n / "train_log.csv").drop(columns="time_s") for n in NAMES]
    pd.testing.assert_frame_equal(*logs)
    one, two = (torch.load(tmp_path / n / "checkpoints/epoch-0002.pt") for n in NAMES)
    assert all(torch.equal(one["model"][k], two["model"][k]) for k in one["model"])
