"""Segmentation of 3D images (the default task): U-Nets, scored per patient or per slice."""

from __future__ import annotations

from segsweep import layout
from segsweep.tasks.task import Task, lazy

TASK = Task(
    name="segmentation",
    models=("unet2d", "unet3d"),
    scored_tables={"patient": layout.VAL_PER_PATIENT, "slice": layout.VAL_PER_SLICE},
    metrics=("dice", "iou", "sensitivity", "specificity", "precision", "accuracy", "f2", "nsd"),
    not_at_level={"slice": {"nsd": "the NSD is a patient's 3D boundary metric: use level patient"}},
    stop_metrics=("val_dice", "val_loss"),
    curve=("val_dice", "Dice"),
    log_columns=lazy("segsweep.train.loop", "LOG_COLUMNS"),
    label_mode=lambda hp: hp.get("labels"),
    # the shared per-patient (or per-slice) aggregate of segsweep.sweep.configurations
    scorer=lambda config, classes, n_boot, seed: None,
    trainer=lazy("segsweep.train.loop", "train_run"),
    commands={
        "analysis": "segsweep.sweep.analysis",
        "figures": "segsweep.report.figures",
        "report": "segsweep.report.thesis",
    },
    report_inputs=lazy("segsweep.report.inputs", "ReportInputs.under"),
    read_data=lazy("segsweep.data.validate", "workflow_subjects"),
    select_outputs={"per_slice": layout.VAL_PER_SLICE, "per_patient": layout.VAL_PER_PATIENT},
    select_command=(
        "python -m segsweep select --index {input.index} --val {input.val}"
        " --subjects-json {input.subjects} --config-json {params.cfg:q}"
        " --nsd-tolerance-mm {params.nsd_tolerance}"
        " --out {output.selection} --threads {threads} > {log} 2>&1"
        " && python -m segsweep evaluate --index {input.index} --run-id {wildcards.run}"
        " --selection {output.selection} --data {input.val}"
        " --subjects-json {input.subjects} --split val"
        " --per-slice {output.per_slice} --per-patient {output.per_patient}"
        " --nsd-tolerance-mm {params.nsd_tolerance} --threads {threads} >> {log} 2>&1"
    ),
    train_values={"pretrained": ("none",)},  # a U-Net has no ImageNet weights
)
