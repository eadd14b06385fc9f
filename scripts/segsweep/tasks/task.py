"""What a task is: everything the stages are handed that differs between segmentation and
classification. A `Task` holds names and patterns only, so the Snakefile plans without importing
torch; what needs a stage (its trainer, its analysis) is a function that imports it when called.

A task refuses, when the workflow plans, what it cannot run (`Task.check`): each problem is one
`ConfigError` naming the key and the task.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

from segsweep.config_schema import section
from segsweep.errors import ConfigError
from segsweep.sweep.grammar import Run

# a configuration's runs' validation tables → (score, ci_low, ci_high, patients); None: the
# shared per-patient (or per-slice) aggregate of `segsweep.sweep.configurations`
ScorerFactory = Callable[[dict[str, Any], int], Any]


@dataclass(frozen=True)
class Task:
    """One task: its models, its validation tables and what scores a configuration, its
    selection metrics, early stopping, training curve, the keys only the other task reads, and
    the functions of its stages."""

    name: str
    models: tuple[str, ...]  # train.model values it trains
    # selection.level → the layout pattern of a run's validation table at that level: the one
    # table that scores a configuration, for the final models and the analysis alike
    scored_tables: Mapping[str, str]
    metrics: tuple[str, ...]  # selection.metric values its tables hold
    stop_metrics: tuple[str, ...]  # early_stopping_metric values; the first is the default
    curve: tuple[str, str]  # the training log's column the curves show, and its name
    log_columns: Callable[[], tuple[str, ...]]  # a training log's header
    label_mode: Callable[[dict[str, Any]], Any]  # a failed run's index: its label mode
    scorer: ScorerFactory  # (config, resamples) → a configuration scorer, or None
    trainer: Callable[[], Callable[..., Any]]  # the training function of one run
    # the stages run by hand whose files differ by task (`python -m segsweep analysis`,
    # `figures`, `report`): stage → the module whose `main(argv, task)` runs it
    commands: Mapping[str, str]
    # the report's files of a results folder: (results, config, sweep, QC subjects, benchmarks
    # folder or None) → `segsweep.report.inputs.ReportInputs`
    report_inputs: Callable[[], Callable[..., Any]]
    # the data as the workflow plans it, from the `data` config section: (subject id → its raw
    # files, for the per-subject jobs; none when the task reads its data in one job) and the
    # data as read (its "layout", "labels", "channels" and a datalist's "folds")
    read_data: Callable[[], Callable[[dict[str, Any]], tuple[dict[str, Any], dict[str, Any]]]]
    # the selection job of one run (workflow/rules/select.smk): its validation tables beside
    # selection.json (output name → layout pattern) and its shell command, in Snakemake's
    # placeholders
    select_outputs: Mapping[str, str]
    select_command: str
    # keys only the other task reads: dotted key → why (set to other than the schema's
    # default, they are refused)
    foreign: Mapping[str, str] = field(default_factory=dict)
    # a run's hyperparameters whose values the task narrows: name → the values it runs
    train_values: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    # selection.level → the selection metrics its table lacks: metric → why (refused there)
    not_at_level: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @property
    def early_stopping(self) -> str:
        """The early stopping metric when the config leaves it unset."""
        return self.stop_metrics[0]

    def scored(self, selection: Mapping[str, Any]) -> str:
        """The layout pattern of the validation table that scores a configuration."""
        return self.scored_tables[selection["level"]]

    def choice_scorer(self, config: Mapping[str, Any]) -> Any:
        """The scorer of the choice of the final models (final.csv): the task's, without an
        interval (the analysis draws it); classes in the order of their label values."""
        labels = config["data"]["labels"]
        return self.scorer(config, sorted(labels, key=labels.get), 0, 0)

    def with_defaults(self, config: dict[str, Any]) -> dict[str, Any]:
        """`config` with the task's defaults where it leaves a key unset (the schema's default
        is null where the task decides): the early stopping metric."""
        train = config.setdefault("train", {})
        if train.get("early_stopping_metric") is None:
            train["early_stopping_metric"] = self.early_stopping
        return config

    def check(self, config: Mapping[str, Any], runs: Iterable[Run] = ()) -> None:
        """Refuse what the task cannot run, in the config or in a run of the sweep: a model of
        the other task, a selection metric or level it has no table for (or a metric the
        level's table lacks), an early stopping metric its log lacks, a key only the other task
        reads."""
        train, selection = config.get("train") or {}, config.get("selection") or {}
        level, metric = selection.get("level"), selection.get("metric")
        self._one_of("selection.level", level, tuple(self.scored_tables))
        self._one_of("selection.metric", metric, self.metrics)
        lacking = self.not_at_level.get(level, {})
        if metric in lacking:
            allowed = [m for m in self.metrics if m not in lacking]
            raise ConfigError(
                "selection.metric",
                metric,
                f"{' | '.join(allowed)} at selection.level: {level} under task: {self.name} "
                f"({lacking[metric]})",
            )
        self._train(train, "train.")
        for run in runs:
            self._train(run.params, f"sweep: run {run.run_id}: ")
        for key, why in self.foreign.items():
            value, default = _get(config, key), schema_default(key)
            if value is not None and value != default:
                allowed = f"{_show(default)} under task: {self.name} ({why})"
                raise ConfigError(key, value, allowed)

    def _train(self, params: Mapping[str, Any], prefix: str) -> None:
        self._one_of(f"{prefix}model", params.get("model"), self.models)
        metric = params.get("early_stopping_metric")
        if metric is not None:
            self._one_of(f"{prefix}early_stopping_metric", metric, self.stop_metrics)
        for key, allowed in self.train_values.items():
            self._one_of(f"{prefix}{key}", params.get(key), allowed)

    def _one_of(self, key: str, value: Any, allowed: tuple[Any, ...]) -> None:
        if value is not None and value not in allowed:
            named = " | ".join(map(str, allowed))
            raise ConfigError(key, value, f"{named} under task: {self.name}")


def lazy(module: str, name: str) -> Callable[[], Any]:
    """A function that imports `module` when called and returns its `name` (dotted for an
    attribute of a class: "ReportInputs.under"), so a Task names a stage's parts without
    importing the stage (torch) when the workflow plans."""

    def load() -> Any:
        return reduce(getattr, name.split("."), importlib.import_module(module))

    return load


def _get(config: Mapping[str, Any], dotted: str) -> Any:
    """The value of a dotted key (`final.external`), None where a section is missing."""
    value: Any = config
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def schema_default(dotted: str) -> Any:
    """The schema's default of a dotted key."""
    *sections, key = dotted.split(".")
    return section(*sections)["properties"][key].get("default")


def _show(value: Any) -> str:
    """A default as the config writes it: {} for no mapping, else as Python writes it."""
    return "{}" if value == {} else repr(value)
