"""Rule figures: jitter plots, boxplots, histograms, training curves and checkpoint scores."""

from segsweep.logs import logged
from segsweep.report.figures import draw_figures
from segsweep.sweep.analysis import final_tables
from segsweep.sweep.grammar import swept_names

with logged(snakemake.log[0]):
    runs, finals, given, out = (
        snakemake.params.runs,
        snakemake.params.finals,
        snakemake.input,
        snakemake.output,
    )
    swept, splits = swept_names(snakemake.params.sweep), ("val", "test")
    outputs = {f"jitter_{name}": png for name, png in zip(swept, out.jitter, strict=True)}
    outputs |= {f"boxplot_{s}": png for s, png in zip(splits, out.boxplots, strict=True)}
    outputs |= {f"histogram_{s}": png for s, png in zip(splits, out.histograms, strict=True)}
    outputs |= {"training_curves": out.curves, "checkpoint_scores": out.checkpoints}
    draw_figures(
        snakemake.params.cfg,
        snakemake.params.sweep,
        given.runs,
        given.final,
        dict(zip(runs, given.selections, strict=True)),
        dict(zip(runs, given.logs, strict=True)),
        final_tables(
            finals,
            dict(zip(finals, given.val_per_slice, strict=True)),
            dict(zip(finals, given.test_per_slice, strict=True)),
        ),
        outputs,
    )
