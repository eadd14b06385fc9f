"""Rule crop_tables: centre errors and kept fractions of the labelled subjects."""

from segsweep.logs import logged
from segsweep.preprocess.crop import write_tables

with logged(snakemake.log[0]):
    subjects = snakemake.params.subjects
    write_tables(
        dict(zip(subjects, snakemake.input.crop_records, strict=True)),
        dict(zip(subjects, snakemake.input.mask_records, strict=True)),
        snakemake.output.centre,
        snakemake.output.kept,
    )
