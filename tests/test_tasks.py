"""The seam between the tasks (segsweep.tasks): what each task refuses, with one message naming
the key and the task, both as a function and when the workflow plans (`snakemake -n` stops);
the defaults a task decides; and that the table scoring a configuration is the task's."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
from runs import configure, snakemake
from tiny import TINY_CLASSIFICATION, TINY_CLASSIFICATION_SWEEP, TINY_CONFIG, TINY_SWEEP

from segsweep import layout
from segsweep.config_schema import complete, section
from segsweep.errors import ConfigError
from segsweep.sweep.grammar import sweep_runs
from segsweep.tasks import check, task_of, task_of_run
from segsweep.tasks.classification import MODELS

SEGMENTATION = {
    "task": "segmentation",
    "train": {"model": "unet2d", "early_stopping_metric": "val_dice"},
    "selection": {"metric": "dice", "level": "patient", "class": "foreground"},
    "final": {"external": {}},
    "report": {"patients": ["best", "median", "worst"]},
}
CLASSIFICATION = {
    "task": "classification",
    "train": {"model": "resnet18", "early_stopping_metric": "val_auc", "data": "auto"},
    "selection": {"metric": "auc", "level": "study", "class": "foreground"},
    "final": {"external": {}},
    "report": {"patients": ["best", "median", "worst"]},
}

# (task's config, dotted key, refused value, what the message must hold)
REFUSALS = [
    (SEGMENTATION, "train.model", "resnet18", "unet2d | unet3d under task: segmentation"),
    (CLASSIFICATION, "train.model", "unet2d", "under task: classification"),
    (SEGMENTATION, "selection.metric", "auc", "under task: segmentation"),
    (CLASSIFICATION, "selection.metric", "dice", "under task: classification"),
    (SEGMENTATION, "selection.level", "study", "patient | slice under task: segmentation"),
    (CLASSIFICATION, "selection.level", "patient", "study | image under task: classification"),
    (CLASSIFICATION, "final.external", {"nnunet": "x"}, "under task: classification"),
    (CLASSIFICATION, "train.data", "streamed", "auto | resident under task: classification"),
    (CLASSIFICATION, "selection.class", "tibia", "under task: classification"),
    (CLASSIFICATION, "report.patients", ["p1"], "under task: classification"),
    (SEGMENTATION, "train.early_stopping_metric", "val_auc", "under task: segmentation"),
    (CLASSIFICATION, "train.early_stopping_metric", "val_dice", "under task: classification"),
]


def _with(config: dict, dotted: str, value) -> dict:
    config = copy.deepcopy(config)
    *sections, key = dotted.split(".")
    target = config
    for name in sections:
        target = target.setdefault(name, {})
    target[key] = value
    return config


@pytest.mark.parametrize(("config", "key", "value", "message"), REFUSALS)
def test_a_task_refuses_what_it_cannot_run(config, key, value, message):
    check(config)  # the task's own config plans
    with pytest.raises(ConfigError, match=f"config key '{key}'") as refused:
        check(_with(config, key, value))
    assert message in str(refused.value)


def test_the_nsd_is_a_patient_level_selection_metric():
    """The NSD needs a patient's volume: selected on at level patient, refused at level slice
    (the per-slice table has no NSD) and under classification."""
    config = _with(SEGMENTATION, "selection.metric", "nsd")
    check(config)
    with pytest.raises(ConfigError, match="config key 'selection.metric'") as refused:
        check(_with(config, "selection.level", "slice"))
    assert "at selection.level: slice under task: segmentation" in str(refused.value)
    assert "nsd" not in str(refused.value).split("allowed:")[1].split(" at ")[0]
    with pytest.raises(ConfigError, match="'selection.metric'.*under task: classification"):
        check(_with(CLASSIFICATION, "selection.metric", "nsd"))
    assert "nsd" in section("selection")["properties"]["metric"]["enum"]


def test_a_run_of_the_sweep_is_refused_too():
    config = {**SEGMENTATION, "train": complete(SEGMENTATION["train"], "train")}
    sweep = {"grids": {"g": {"model": ["unet2d", "densenet121"]}}}
    runs = sweep_runs(config, sweep)
    with pytest.raises(ConfigError, match=r"'sweep: run .*: model'.*under task: segmentation"):
        check(config, runs)


def test_the_early_stopping_default_is_the_task_s():
    assert section("train")["properties"]["early_stopping_metric"]["default"] is None
    for name, metric in (("segmentation", "val_dice"), ("classification", "val_auc")):
        config = {"task": name, "train": {"early_stopping_metric": None}}
        assert task_of(config).with_defaults(config)["train"]["early_stopping_metric"] == metric
        kept = {"task": name, "train": {"early_stopping_metric": "val_loss"}}
        assert task_of(kept).with_defaults(kept)["train"]["early_stopping_metric"] == "val_loss"


def test_the_seam_agrees_with_the_stages_it_names():
    """The names the seam holds so that planning needs no torch are the stages' own."""
    from segsweep.model.classifiers import CLASSIFIERS
    from segsweep.train.classify import ClassifierTrainer
    from segsweep.train.loop import Trainer

    assert MODELS == CLASSIFIERS
    models = set(section("train")["properties"]["model"]["enum"])
    assert models == {*task_of("segmentation").models, *MODELS}
    assert Trainer.STOP_METRIC == task_of("segmentation").early_stopping
    assert ClassifierTrainer.STOP_METRIC == task_of("classification").early_stopping
    assert task_of_run({"model": "vgg16"}).name == "classification"
    assert task_of_run({}).name == "segmentation"
    with pytest.raises(ConfigError, match="'task'"):
        task_of("detection")


def test_the_scored_table_follows_the_level():
    scored = task_of("classification").scored
    assert scored({"level": "study"}) == layout.VAL_PER_STUDY
    assert scored({"level": "image"}) == layout.VAL_PER_IMAGE
    assert task_of("segmentation").scored({"level": "slice"}) == layout.VAL_PER_SLICE


# One dry run per kind of refusal: planning stops with the message.
PLANNED = [
    ("segmentation", "train.model", "resnet18"),
    ("classification", "train.model", "unet2d"),
    ("segmentation", "selection.metric", "auc"),
    ("classification", "selection.level", "patient"),
    ("classification", "final.external", {"nnunet": "predictions"}),
    ("classification", "train.data", "streamed"),
    ("classification", "train.early_stopping_metric", "val_dice"),
]


@pytest.mark.parametrize(("task", "key", "value"), PLANNED)
def test_planning_stops_with_the_refusal(tmp_path, task, key, value):
    tiny, sweep = (
        (TINY_CONFIG, TINY_SWEEP)
        if task == "segmentation"
        else (TINY_CLASSIFICATION, TINY_CLASSIFICATION_SWEEP)
    )
    configure(tmp_path, _with(tiny, key, value), sweep)
    result = snakemake(tmp_path, "-n", timeout=300)
    assert result.returncode != 0
    assert f"config key '{key}'" in result.stdout + result.stderr
    assert f"under task: {task}" in result.stdout + result.stderr


def test_planning_stops_on_a_run_of_the_sweep(tmp_path):
    configure(tmp_path, TINY_CONFIG, {"grids": {"g": {"model": ["unet2d", "resnet18"]}}})
    result = snakemake(tmp_path, "-n", timeout=300)
    assert result.returncode != 0
    assert "sweep: run" in result.stdout + result.stderr
    assert "under task: segmentation" in result.stdout + result.stderr


def test_final_and_configurations_rank_from_the_same_table(tmp_path):
    """With folds and `selection.level: image`, the choice of the final models (final.csv)
    and the analysis (configurations.csv) score each configuration on the same pooled per-image
    rows: the table the task names, handed to both."""
    import pandas as pd
    from test_classification_analysis import CONFIG, SWEEP, write_fake_results

    from segsweep.sweep.classification_analysis import write_classification_tables
    from segsweep.sweep.final import selection_scores, write_final

    config = {
        **CONFIG,
        "split": {"seed": 0, "folds": 2},
        "selection": {**CONFIG["selection"], "level": "image"},
        "data": {"labels": {"normal": 0, "abnormal": 1}},
        "final": {"n_best": 1, "group_by": []},
    }
    task = check(config)
    given, outputs = write_fake_results(tmp_path, config)
    assert task.scored(config["selection"]) == layout.VAL_PER_IMAGE
    image = Path(layout.VAL_PER_IMAGE).name
    scored = {run: path.parent / image for run, path in given.val_per_study.items()}
    given = dataclasses.replace(given, scored=scored)
    write_classification_tables(config, SWEEP, given, outputs)
    runs = sweep_runs(config, SWEEP)
    scorer = task.choice_scorer(config)
    chosen = selection_scores(runs, given.selections, scored, config["selection"], scorer)
    table = pd.read_csv(outputs["configurations"]).query("status == 'ok'")
    assert dict(zip(chosen["run_id"], chosen["score"], strict=True)) == pytest.approx(
        dict(zip(table["configuration"], table["score"], strict=True))
    )
    final = write_final(config, runs, given.selections, scored, tmp_path / "final.csv", scorer)
    best = table.sort_values(["score", "configuration"], ascending=[False, True])
    assert final["run_id"].iloc[0] == best["configuration"].iloc[0]
    # the per-study table scores them otherwise: which table is the seam's choice matters
    studies = selection_scores(
        runs, given.selections, given.val_per_study, config["selection"], scorer
    )
    assert studies["score"].tolist() != pytest.approx(chosen["score"].tolist())
