"""Rule figures (classification): the sweep's figures as for segmentation (jitter, training
curves with the validation AUC, checkpoint scores, cost) and the final models' ROC curves,
confusion matrices and study probabilities."""

from types import SimpleNamespace

from segsweep.logs import logged
from segsweep.report.classification_figures import draw_classification_figures
from segsweep.report.figures import sweep_figures
from segsweep.sweep.grammar import swept_names

with logged(snakemake.log[0]):
    runs, models, given, out = (
        snakemake.params.runs,
        snakemake.params.finals,
        snakemake.input,
        snakemake.output,
    )
    sweep = snakemake.params.sweep
    files = SimpleNamespace(
        runs=given.runs,
        configurations=given.configurations,
        final=given.final,
        selections=dict(zip(runs, given.selections, strict=True)),
        train_logs=dict(zip(runs, given.logs, strict=True)),
    )
    swept = swept_names(sweep)
    outputs = {
        **{f"jitter_{name}": png for name, png in zip(swept, out.jitter, strict=True)},
        "training_curves": out.curves,
        "checkpoint_scores": out.checkpoints,
        "cost": out.cost,
    }
    sweep_figures(snakemake.params.cfg, sweep, files, outputs, curve=("val_auc", "AUC"))
    draw_classification_figures(
        given.final,
        {"roc": given.roc, "confusion": given.confusion, "classification_metrics": given.metrics},
        dict(zip(models, given.test_per_study, strict=True)),
        {
            "cls_roc": out.roc,
            "cls_confusion": out.confusion,
            "cls_probabilities": out.probabilities,
        },
    )
