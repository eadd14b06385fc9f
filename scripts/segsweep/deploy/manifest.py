"""The manifest of a segmentation model package: everything inference needs but the weights,
written once from the workflow's files (`segmentation_manifest`).

Keys: `format` and `segsweep_version`; `task`; `configuration` (the final model's id), `runs`
(its fold runs) and `config_hash` (of the config and sweep that trained them); `classes` (the
classes the networks predict, output index i + 1), `labels` (the data's class → label value)
and `label_values` (output index → label value written); `channels` (the input channels in
order); `normalisation` (the training statistics, `segsweep.preprocess.normalise`); `n4`
(preprocess.n4); `crop` (centre method resolved, `centre_mm` for a fixed centre, the window in
mm, size, slices, and the crop plan when the window was planned); `target_grid` (what the
networks see); `networks` (one per fold: run id, hyperparameters, channels in and out, input
map, 3D depth, epoch, weight member, ONNX); `ensemble`; `metrics` (conventions of the thesis's
tables); `qc` (the intensity reference and the calibration of `segsweep.deploy.qc`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import segsweep
from segsweep.deploy.archive import FORMAT, weights_member
from segsweep.labels import label_values
from segsweep.preprocess.crop import window_of

ENSEMBLE = (
    "the mean of the fold networks' softmax probabilities; the class is the argmax of its log "
    "(one network: the argmax of its logits)"
)
METRICS = {
    "dice": "2 TP / (2 TP + FP + FN)",
    "iou": "TP / (TP + FP + FN)",
    "sensitivity": "TP / (TP + FN)",
    "precision": "TP / (TP + FP)",
    "empty": "a metric whose denominator is 0 is NaN (reference and prediction both empty: "
    "Dice NaN; only false positives or only a missed structure: Dice 0)",
    "volumes": "voxel count × voxel volume, in mL, in the scan's own geometry",
    "per_patient": "from the confusion counts summed over the patient's voxels (3D)",
}
# checkpoint metadata a network needs to be rebuilt (`segsweep.model.checkpoints.model_from`)
NETWORK_KEYS = (
    "hp",
    "in_channels",
    "out_channels",
    "classes",
    "label_mode",
    "inputs",
    "volume_slices",
    "epoch",
)


def segmentation_manifest(
    configuration: str,
    checkpoints: Mapping[str, dict[str, Any]],
    settings: Mapping[str, Any],
    stats: dict[str, Any],
    plan: dict[str, Any] | None,
    config_hash: str | None,
) -> dict[str, Any]:
    """The manifest of a final model (without its ONNX entries and QC calibration, which
    packaging adds): `checkpoints` maps each fold run to its selected checkpoint's metadata, in
    fold order; `settings` holds the data's `labels` and `channels` and the preprocess `n4` and
    `crop` sections (the crop centre resolved)."""
    metas = list(checkpoints.values())
    classes = list(metas[0]["classes"])
    if any(list(meta["classes"]) != classes for meta in metas):
        raise ValueError(f"{configuration}: its fold networks predict different classes")
    crop = settings["crop"]
    window = window_of(crop, plan)
    labels = dict(settings["labels"])
    return {
        "format": FORMAT,
        "segsweep_version": segsweep.__version__,
        "task": "segmentation",
        "configuration": configuration,
        "runs": list(checkpoints),
        "config_hash": config_hash,
        "classes": classes,
        "labels": labels,
        "label_values": label_values(classes, labels).tolist(),
        "channels": list(settings.get("channels") or ["image"]),
        "normalisation": stats,
        "n4": dict(settings["n4"]),
        "crop": {
            "centre": crop["centre"],
            "centre_mm": crop.get("centre_mm"),
            "window_mm": window,
            "size": int(crop["size"]),
            "slices": int(crop["slices"]),
            "window": "planned" if plan is not None else "config",
            "plan": plan,
        },
        "target_grid": {
            "orientation": "LIP",
            "size": [int(crop["size"]), int(crop["size"]), int(crop["slices"])],
            "pixel_mm": window / int(crop["size"]),
            "slices": "every step-th slice of the canonical scan, padded, never interpolated",
        },
        "networks": [
            {
                "run_id": run,
                **{key: meta.get(key) for key in NETWORK_KEYS},
                "weights": weights_member(fold),
            }
            for fold, (run, meta) in enumerate(checkpoints.items())
        ],
        "ensemble": {"rule": "mean" if len(metas) > 1 else "single", "text": ENSEMBLE},
        "metrics": METRICS,
    }
