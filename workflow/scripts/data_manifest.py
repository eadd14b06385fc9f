"""Rule data_manifest: the cohort table from every subject's ingest.json, the subjects left
out (at planning and at ingest) and what was read."""

from segsweep.data.ingest import write_manifests
from segsweep.logs import logged

with logged(snakemake.log[0]):
    params, output = snakemake.params, snakemake.output
    write_manifests(
        snakemake.input.records,
        output.manifest,
        output.dropped,
        planned=params.read["problems"],
        description=output.description,
        read={**params.read, "manifest": params.manifest, "labels": params.labels},
    )
