"""Rule figures (classification): the sweep's figures as for segmentation (jitter, training
curves with the task's validation metric, checkpoint scores, cost) and the final models' ROC
curves, confusion matrices, study probabilities and reliability diagrams, as `python -m segsweep
figures` draws them."""

from segsweep.logs import logged
from segsweep.report.classification_figures import ClassificationFigureInputs, draw_figures
from segsweep.sweep.grammar import swept_names

with logged(snakemake.log[0]):
    runs, models, given, out = (
        snakemake.params.runs,
        snakemake.params.finals,
        snakemake.input,
        snakemake.output,
    )
    sweep = snakemake.params.sweep
    inputs = ClassificationFigureInputs(
        runs=given.runs,
        configurations=given.configurations,
        final=given.final,
        selections=dict(zip(runs, given.selections, strict=True)),
        train_logs=dict(zip(runs, given.logs, strict=True)),
        tables={
            "roc": given.roc,
            "confusion": given.confusion,
            "classification_metrics": given.metrics,
            "calibration": given.calibration,
            "reliability": given.reliability,
        },
        test_per_study=dict(zip(models, given.test_per_study, strict=True)),
    )
    outputs = {
        **{f"jitter_{name}": png for name, png in zip(swept_names(sweep), out.jitter, strict=True)},
        "training_curves": out.curves,
        "checkpoint_scores": out.checkpoints,
        "cost": out.cost,
        "cls_roc": out.roc,
        "cls_confusion": out.confusion,
        "cls_probabilities": out.probabilities,
        "cls_calibration": out.calibration,
    }
    draw_figures(snakemake.params.cfg, sweep, inputs, outputs, snakemake.params.curve)
