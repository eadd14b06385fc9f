"""Rule figures: jitter plots, boxplots, histograms, training curves, checkpoint scores, the
bootstrap ranking and score against training cost."""

from segsweep.logs import logged
from segsweep.report.figures import FigureInputs, draw_figures
from segsweep.sweep.grammar import swept_names

with logged(snakemake.log[0]):
    runs, models, given, out = (
        snakemake.params.runs,
        snakemake.params.finals,
        snakemake.input,
        snakemake.output,
    )
    cfg = snakemake.params.cfg
    best = cfg["final"]["model"] == "best_fold" and "best_per_slice" in given.keys()
    swept, splits = swept_names(snakemake.params.sweep), ("val", "test")
    outputs = {f"jitter_{name}": png for name, png in zip(swept, out.jitter, strict=True)}
    outputs |= {f"boxplot_{s}": png for s, png in zip(splits, out.boxplots, strict=True)}
    outputs |= {f"histogram_{s}": png for s, png in zip(splits, out.histograms, strict=True)}
    outputs |= {"training_curves": out.curves, "checkpoint_scores": out.checkpoints}
    outputs["ranking"] = out.ranking
    outputs["cost"] = out.cost
    if "native" in out.keys():
        outputs["boxplot_test_native"] = out.native
    if "sites" in out.keys():
        outputs["boxplot_sites"] = out.sites
    inputs = FigureInputs(
        runs=given.runs,
        configurations=given.configurations,
        rank_frequencies=given.ranks,
        final=given.final,
        selections=dict(zip(runs, given.selections, strict=True)),
        train_logs=dict(zip(runs, given.logs, strict=True)),
        val_per_slice=dict(zip(snakemake.params.members, given.val_per_slice, strict=True)),
        test_per_slice=dict(
            zip(models, given.best_per_slice if best else given.test_per_slice, strict=True)
        ),
        test_per_patient=dict(
            zip(models, given.best_per_patient if best else given.test_per_patient, strict=True)
        ),
        external=dict(zip(snakemake.params.external, given.external, strict=True)),
        splits=given.splits,
    )
    draw_figures(cfg, snakemake.params.sweep, inputs, outputs, snakemake.params.curve)
