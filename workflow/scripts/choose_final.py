"""Rule choose_final: the final models, chosen on validation only."""

from segsweep.logs import logged
from segsweep.sweep.final import write_final

with logged(snakemake.log[0]):
    selections = dict(zip(snakemake.params.runs, snakemake.input.selections, strict=True))
    write_final(snakemake.params.cfg, snakemake.params.sweep, selections, snakemake.output.table)
