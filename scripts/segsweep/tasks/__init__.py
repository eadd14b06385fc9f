"""The one place that reads the config's `task` and hands every stage what differs between
segmentation (the default) and classification: `task_of(config)` is a `Task`
(`segsweep.tasks.task`). Stages import only what they are handed; the Snakefile and the
commands that dispatch (`python -m segsweep`, `segsweep.tasks.stages`) ask here.

When the workflow plans, `Task.with_defaults` fills the task's defaults before the config is
validated, and `check(config, runs)` refuses what the task cannot run (a stage run by hand may
call it too).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from segsweep.errors import ConfigError
from segsweep.sweep.grammar import Run
from segsweep.tasks import classification, segmentation
from segsweep.tasks.task import Task, schema_default

TASKS = {task.name: task for task in (segmentation.TASK, classification.TASK)}


def task_of(config_or_name: Mapping[str, Any] | str) -> Task:
    """The task of a config (its `task`, segmentation when unset) or of a task's name."""
    if isinstance(config_or_name, str):
        name = config_or_name
    else:
        name = config_or_name.get("task") or "segmentation"
    if name not in TASKS:
        raise ConfigError("task", name, " | ".join(TASKS))
    return TASKS[name]


def task_of_run(hp: Mapping[str, Any]) -> Task:
    """The task that trains a run's `model` (the schema's default when unset): `Task.check`
    made it the config's task when the workflow planned."""
    model = hp.get("model") or schema_default("train.model")
    for task in TASKS.values():
        if model in task.models:
            return task
    allowed = " | ".join(m for task in TASKS.values() for m in task.models)
    raise ConfigError("train.model", model, allowed)


def check(config: Mapping[str, Any], runs: Iterable[Run] = ()) -> Task:
    """The config's task, once it has refused what the task cannot run (`Task.check`)."""
    task = task_of(config)
    task.check(config, runs)
    return task
