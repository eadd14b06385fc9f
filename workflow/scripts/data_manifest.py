"""Rule data_manifest (a checkpoint): every subject's ingest check and the listing's problems in
one table, which stops the workflow (data.on_invalid: error) or leaves their subjects out (skip);
the cohort table, the subjects left out and what was read."""

from segsweep.data.validate import gather
from segsweep.logs import logged

with logged(snakemake.log[0]):
    params, output = snakemake.params, snakemake.output
    gather(
        snakemake.input.records,
        {**params.read, "manifest": params.manifest, "labels": params.labels},
        params.on_invalid,
        output.manifest,
        output.dropped,
        output.description,
    )
