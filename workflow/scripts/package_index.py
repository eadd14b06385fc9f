"""Rule package_index: the final models' packages, their sizes and checksums."""

from segsweep.deploy.index import write_index
from segsweep.logs import logged

with logged(snakemake.log[0]):
    entries = write_index(
        dict(zip(snakemake.params.runs, snakemake.input, strict=True)), snakemake.output[0]
    )
    print(f"{len(entries)} model package(s) listed")
