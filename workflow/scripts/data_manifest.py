"""Rule data_manifest: the cohort table from every subject's ingest.json."""

from segsweep.data.ingest import write_manifests
from segsweep.logs import logged

with logged(snakemake.log[0]):
    write_manifests(snakemake.input.records, snakemake.output.manifest, snakemake.output.dropped)
