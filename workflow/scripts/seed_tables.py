"""Rule seed_tables: the seed-noise floor of the sweep's top settings."""

from segsweep.logs import logged
from segsweep.sweep.grammar import every_run
from segsweep.sweep.seeds import write_seed_tables
from segsweep.tasks import task_of

with logged(snakemake.log[0]):
    cfg, ids = snakemake.params.cfg, snakemake.params.runs
    known = every_run(cfg, snakemake.params.sweep)
    write_seed_tables(
        [known[r] for r in ids],
        dict(zip(ids, snakemake.input.selections, strict=True)),
        dict(zip(ids, snakemake.input.scored, strict=True)),
        cfg["selection"],
        snakemake.output.spread,
        snakemake.output.comparisons,
        snakemake.output.winners,
        task_of(cfg).choice_scorer(cfg),
    )
