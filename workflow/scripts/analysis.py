"""Rule analysis: the runs table, hyperparameter tables and statistics."""

from segsweep import layout
from segsweep.logs import logged
from segsweep.sweep.analysis import final_tables, write_tables

with logged(snakemake.log[0]):
    runs, finals, given = snakemake.params.runs, snakemake.params.finals, snakemake.input

    def by_final(files):
        return dict(zip(finals, files, strict=True))

    write_tables(
        snakemake.params.cfg,
        snakemake.params.sweep,
        dict(zip(runs, given.selections, strict=True)),
        dict(zip(runs, given.per_patient, strict=True)),
        given.final,
        final_tables(finals, by_final(given.val_per_slice), by_final(given.test_per_slice)),
        final_tables(finals, by_final(given.val_per_patient), by_final(given.test_per_patient)),
        {name: snakemake.output[name] for name in ("runs", *layout.TABLES)},
    )
