"""Rule choose_final: the final models, chosen on validation only (out-of-fold with folds)."""

from segsweep.logs import logged
from segsweep.sweep.final import write_final
from segsweep.tasks import task_of

with logged(snakemake.log[0]):
    runs, given, cfg = snakemake.params.runs, snakemake.input, snakemake.params.cfg
    write_final(
        cfg,
        snakemake.params.sweep,
        dict(zip(runs, given.selections, strict=True)),
        dict(zip(runs, given.scored, strict=True)),
        snakemake.output.table,
        task_of(cfg).choice_scorer(cfg),
    )
