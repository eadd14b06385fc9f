"""Segmentation of 3D images (the default task): U-Nets, scored per patient or per slice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from segsweep import layout
from segsweep.tasks.task import Task


def _log_columns() -> tuple[str, ...]:
    from segsweep.train.loop import LOG_COLUMNS

    return LOG_COLUMNS


def _trainer() -> Callable[..., Any]:
    from segsweep.train.loop import train_run

    return train_run


def _read_data() -> Callable[..., Any]:
    from segsweep.data.validate import workflow_subjects

    return workflow_subjects


def _report_inputs() -> Callable[..., Any]:
    from segsweep.report.inputs import ReportInputs

    return ReportInputs.under


TASK = Task(
    name="segmentation",
    models=("unet2d", "unet3d"),
    scored_tables={"patient": layout.VAL_PER_PATIENT, "slice": layout.VAL_PER_SLICE},
    metrics=("dice", "iou", "sensitivity", "specificity", "precision", "accuracy", "f2"),
    stop_metrics=("val_dice", "val_loss"),
    curve=("val_dice", "Dice"),
    log_columns=_log_columns,
    label_mode=lambda hp: hp.get("labels"),
    # the shared per-patient (or per-slice) aggregate of segsweep.sweep.configurations
    scorer=lambda config, classes, n_boot, seed: None,
    trainer=_trainer,
    commands={
        "analysis": "segsweep.sweep.analysis",
        "figures": "segsweep.report.figures",
        "report": "segsweep.report.thesis",
    },
    report_inputs=_report_inputs,
    read_data=_read_data,
    select_outputs={"per_slice": layout.VAL_PER_SLICE, "per_patient": layout.VAL_PER_PATIENT},
    select_command=(
        "python -m segsweep select --index {input.index} --val {input.val}"
        " --subjects-json {input.subjects} --config-json {params.cfg:q}"
        " --out {output.selection} --threads {threads} > {log} 2>&1"
        " && python -m segsweep evaluate --index {input.index} --run-id {wildcards.run}"
        " --selection {output.selection} --data {input.val}"
        " --subjects-json {input.subjects} --split val"
        " --per-slice {output.per_slice} --per-patient {output.per_patient}"
        " --threads {threads} >> {log} 2>&1"
    ),
)
