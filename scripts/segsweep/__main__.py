"""Command line: `python -m segsweep <stage> [args]` runs one stage of the workflow on its own.

Each stage is the `main` of one module of the package, or `module:function` where what the
stage does differs by task (`segsweep.tasks.stages` hands it the task's); this table says which.
"""

from __future__ import annotations

import importlib
import sys

STAGES = {
    "cohort": ("segsweep.data.cohort", "generate the synthetic knee MRI cohort"),
    "validate": ("segsweep.data.validate", "every problem of a dataset, headers and voxels"),
    "ingest": ("segsweep.data.ingest", "read, validate and reorient one subject"),
    "n4": ("segsweep.preprocess.n4", "N4 bias field correction of one image"),
    "crop": ("segsweep.preprocess.crop", "crop centre, the window planned from the data, the crop"),
    "split": ("segsweep.preprocess.split", "patient-level train/val/test split"),
    "pack": ("segsweep.preprocess.pack", "normalise and pack one split into HDF5"),
    "train": ("segsweep.tasks.stages:train", "train one run of the sweep"),
    "select": ("segsweep.evaluate.select", "score every checkpoint of a run on validation"),
    "evaluate": ("segsweep.evaluate.tables", "per-slice and per-patient metrics of a checkpoint"),
    "final": ("segsweep.tasks.stages:final", "choose the final models on validation"),
    "export": ("segsweep.evaluate.unlabelled", "predict unlabelled subjects in original geometry"),
    "analysis": ("segsweep.tasks.stages:analysis", "runs table and hyperparameter tables"),
    "export-nnunet": (
        "segsweep.baseline.export_nnunet",
        "the prepared cohort and our split as an nnU-Net v2 raw dataset",
    ),
    "external": (
        "segsweep.baseline.external",
        "an external method's test predictions scored in native space",
    ),
    "figures": ("segsweep.tasks.stages:figures", "jitter plots, boxplots and other figures"),
    "report": ("segsweep.tasks.stages:report", "thesis HTML and PDF"),
    "sweep": ("segsweep.sweep.grammar", "list the runs of a sweep file"),
    "budget": ("segsweep.sweep.budget_summary", "what successive halving spent and saved"),
    "radiographs": (
        "segsweep.data.radiographs",
        "generate the synthetic radiograph cohort (classification)",
    ),
    "studies": (
        "segsweep.data.studies",
        "read and check a classification manifest or MURA folder, one row per study",
    ),
    "images": (
        "segsweep.preprocess.images",
        "pack one split's radiographs into HDF5; the example images figure",
    ),
    "classify": (
        "segsweep.evaluate.classify",
        "select a classifier's checkpoint on validation; test a final classifier, per study",
    ),
    "package": ("segsweep.deploy.package", "a final model as a self-contained model package"),
    "predict": ("segsweep.deploy.predict", "segment new scans with a model package, with QC"),
    "status": ("segsweep.sweep.status", "one table of a sweep while it trains, per configuration"),
    "weights": (
        "segsweep.model.weights",
        "download torchvision's ImageNet weights into torch's cache (train.pretrained)",
    ),
    "nested": ("segsweep.sweep.nested", "nested cross-validation: held-out rows, pooled estimate"),
    "nested-report": ("segsweep.report.nested", "the thesis of a nested cross-validation"),
}


def main(argv: list[str] | None = None) -> None:
    """Dispatch to the stage's `main`, importing only that stage's module."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help"} or args[0] not in STAGES:
        width = max(map(len, STAGES))
        lines = [f"  {name:<{width}}  {what}" for name, (_, what) in STAGES.items()]
        print("usage: python -m segsweep <stage> [args]\n\nstages:\n" + "\n".join(lines))
        sys.exit(0 if args and args[0] in {"-h", "--help"} else 2)
    module, _, function = STAGES[args[0]][0].partition(":")
    getattr(importlib.import_module(module), function or "main")(args[1:])


if __name__ == "__main__":
    main()
