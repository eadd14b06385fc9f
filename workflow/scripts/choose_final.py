"""Rule choose_final: the final models, chosen on validation only (out-of-fold with folds),
among the configurations that reached the last rung, on the seed-averaged score when the
sweep confirms its top settings with more seeds."""

from segsweep.logs import logged
from segsweep.sweep.final import write_final
from segsweep.sweep.grammar import every_run
from segsweep.tasks import task_of

with logged(snakemake.log[0]):
    ids, given, cfg = snakemake.params.runs, snakemake.input, snakemake.params.cfg
    known = every_run(cfg, snakemake.params.sweep)
    write_final(
        cfg,
        [known[r] for r in ids],
        dict(zip(ids, given.selections, strict=True)),
        dict(zip(ids, given.scored, strict=True)),
        snakemake.output.table,
        task_of(cfg).choice_scorer(cfg),
        seed_averaged=snakemake.params.seed_averaged,
        candidates=snakemake.params.candidates,
    )
