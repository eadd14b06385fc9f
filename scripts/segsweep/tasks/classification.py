"""Study-level classification of 2D radiographs: torchvision's classifiers, scored per study or
per image from their pooled predictions.

Its stages stay in the stage folders beside segmentation's (`data/radiographs.py`,
`data/studies.py`, `preprocess/images.py`, `train/classify.py`, `evaluate/classify.py`,
`evaluate/predictions.py`, `sweep/classification_analysis.py`,
`report/classification_figures.py`, `report/chapters/classification.py`); this module hands
them to the workflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from segsweep import layout
from segsweep.tasks.task import Task, lazy

# `segsweep.model.classifiers.CLASSIFIERS`, named here so planning does not import torch
MODELS = ("resnet18", "resnet34", "resnet50", "densenet121", "vgg16")


def _studies_read(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """No per-subject jobs: the images are read and checked in one job (the studies stage);
    planning needs only the classes (data.labels, else normal 0, abnormal 1: the synthetic
    radiographs' and MURA's)."""
    labels = data["labels"] or {"normal": 0, "abnormal": 1}
    return {}, {"layout": data["source"], "labels": labels, "channels": None}


def _scorer(config: dict[str, Any], classes: Sequence[str], n_boot: int, seed: int) -> Any:
    """The selection metric of a configuration's pooled predictions (with folds every study
    once, by the fold model that never trained on it), with a patient-bootstrap interval of
    `n_boot` resamples."""
    from segsweep.evaluate.predictions import pooled_scorer

    return pooled_scorer(classes, config["selection"]["metric"], n_boot, seed)


TASK = Task(
    name="classification",
    models=MODELS,
    scored_tables={"study": layout.VAL_PER_STUDY, "image": layout.VAL_PER_IMAGE},
    metrics=("auc", "accuracy", "sensitivity", "specificity", "precision", "f1", "kappa"),
    stop_metrics=("val_auc", "val_loss"),
    curve=("val_auc", "AUC"),
    log_columns=lazy("segsweep.train.classify", "LOG_COLUMNS"),
    label_mode=lambda hp: "classification",
    scorer=_scorer,
    trainer=lazy("segsweep.train.classify", "train_classifier"),
    commands={
        "analysis": "segsweep.sweep.classification_analysis",
        "figures": "segsweep.report.classification_figures",
        "report": "segsweep.report.thesis",
    },
    report_inputs=lazy("segsweep.report.chapters.classification", "report_inputs"),
    read_data=lambda: _studies_read,
    select_outputs={"per_image": layout.VAL_PER_IMAGE, "per_study": layout.VAL_PER_STUDY},
    select_command=(
        "python -m segsweep classify select --index {input.index} --val {input.val}"
        " --subjects-json {input.subjects} --config-json {params.cfg:q}"
        " --classification-json {params.classification:q} --out {output.selection}"
        " --per-image {output.per_image} --per-study {output.per_study}"
        " --threads {threads} > {log} 2>&1"
    ),
    foreign={
        "final.external": "external methods' masks are scored in native space, a segmentation step",
        "selection.class": "a study has no per-class score",
        "report.patients": "the gallery shows classification.gallery studies",
    },
    train_values={"data": ("auto", "resident")},  # image sets are read whole
)
