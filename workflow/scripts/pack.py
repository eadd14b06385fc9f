"""Rule pack: one split's normalised slices and masks in HDF5."""

from segsweep.logs import logged
from segsweep.preprocess.pack import write_pack

with logged(snakemake.log[0]):
    subjects = snakemake.params.subjects
    write_pack(
        snakemake.wildcards.split,
        snakemake.input.splits,
        dict(zip(subjects, snakemake.input.images, strict=True)),
        dict(zip(subjects, snakemake.input.masks, strict=True)),
        snakemake.input.stats,
        snakemake.params.labels,
        snakemake.output[0],
        volumes=snakemake.params.volumes,
    )
