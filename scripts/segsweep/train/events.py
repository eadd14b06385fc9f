"""TensorBoard event files of one run, written as it trains (`layout.RUN_EVENTS`), so that
`tensorboard --logdir results/runs` shows a sweep's curves and hyperparameters while it runs.

Scalars. Every numeric column of an epoch's training log row but `epoch`, at global step =
epoch, flushed at once. A column `<split>_<name>` of the train or val split is tagged
"<split>/<name>" (`train_loss` → "train/loss", `val_dice` → "val/dice"); the others keep their
name ("lr", "step", "time_s").

Hyperparameters (TensorBoard's HParams plugin), in the same folder: the experiment and the
session start when the writer opens, the session end when the run ends. The session's values are
the run's hyperparameters: str, int, float and bool as they are, None as "none", lists and
mappings as JSON text; its metrics are the tags of the log's validation columns.

Resume. A run that starts afresh removes the folder's earlier events; a resumed one opens its
writer with `purge_step` at the epoch it resumes at, so TensorBoard drops what a killed job wrote
past the saved state and every epoch keeps one point. Writing draws from no random generator.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata
from tensorboard.plugins.hparams.plugin_data_pb2 import (
    HParamsPluginData,
    SessionEndInfo,
    SessionStartInfo,
)
from torch.utils.tensorboard import SummaryWriter

SPLITS = ("train", "val")
VALIDATION = "val"


def tag(column: str) -> str:
    """The scalar tag of a training log column (see the module docstring)."""
    split, _, name = column.partition("_")
    return f"{split}/{name}" if split in SPLITS and name else column


def hparam_value(value: Any) -> str | float | bool:
    """A hyperparameter as the HParams plugin holds it (see the module docstring)."""
    if value is None:
        return "none"
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return float(value)
    return json.dumps(value, sort_keys=True)


def _summary(tag_name: str, data: HParamsPluginData) -> Summary:
    """One summary of the HParams plugin, as TensorBoard's own summaries hold it."""
    value = Summary.Value(
        tag=tag_name, metadata=metadata.create_summary_metadata(data), tensor=metadata.NULL_TENSOR
    )
    return Summary(value=[value])


def session_start(hp: Mapping[str, Any], metrics: Iterable[str]) -> list[Summary]:
    """The experiment (the hyperparameters' names and types, the metrics' tags) and the session
    start (the run's values) of the HParams plugin."""
    types = {
        bool: api_pb2.DATA_TYPE_BOOL,
        str: api_pb2.DATA_TYPE_STRING,
        float: api_pb2.DATA_TYPE_FLOAT64,
    }
    start, infos = SessionStartInfo(), []
    for name, raw in sorted(hp.items()):
        value = hparam_value(raw)
        if isinstance(value, bool):
            start.hparams[name].bool_value = value
        elif isinstance(value, str):
            start.hparams[name].string_value = value
        else:
            start.hparams[name].number_value = value
        infos.append(api_pb2.HParamInfo(name=name, type=types[type(value)]))
    experiment = api_pb2.Experiment(
        hparam_infos=infos,
        metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=m)) for m in metrics],
    )
    return [
        _summary(metadata.EXPERIMENT_TAG, HParamsPluginData(experiment=experiment)),
        _summary(metadata.SESSION_START_INFO_TAG, HParamsPluginData(session_start_info=start)),
    ]


def session_end() -> Summary:
    """The session end of the HParams plugin: the run ended."""
    end = SessionEndInfo(status=api_pb2.STATUS_SUCCESS)
    return _summary(metadata.SESSION_END_INFO_TAG, HParamsPluginData(session_end_info=end))


class RunEvents:
    """The event files of one run in `folder`: its hyperparameters `hp`, the validation columns
    of its log `columns` as metrics; `resumed_at` is the epoch a resumed run trains next (None:
    the run starts afresh)."""

    def __init__(
        self,
        folder: Path,
        hp: Mapping[str, Any],
        columns: Iterable[str],
        resumed_at: int | None,
    ) -> None:
        if resumed_at is None:
            shutil.rmtree(folder, ignore_errors=True)
        self.writer = SummaryWriter(str(folder), purge_step=resumed_at)
        metrics = [tag(c) for c in columns if c.partition("_")[0] == VALIDATION]
        for summary in session_start(hp, metrics):
            self.writer.file_writer.add_summary(summary)
        self.writer.flush()

    def epoch(self, row: Mapping[str, Any]) -> None:
        """The numeric values of one training log row, at its epoch."""
        for column, value in row.items():
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if column != "epoch" and number:
                self.writer.add_scalar(tag(column), value, int(row["epoch"]))
        self.writer.flush()

    def close(self, ended: bool) -> None:
        """Close the files; `ended`: the run ends here (the session end is written)."""
        if ended:
            self.writer.file_writer.add_summary(session_end())
        self.writer.close()
