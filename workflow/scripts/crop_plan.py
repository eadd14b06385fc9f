"""Rule crop_plan: the crop window planned from the train and val subjects' centre records."""

from segsweep.logs import logged
from segsweep.preprocess.crop import write_plan

with logged(snakemake.log[0]):
    subjects = snakemake.params.subjects
    write_plan(
        dict(zip(subjects, snakemake.input.centres, strict=True)),
        snakemake.input.splits,
        dict(snakemake.params.cfg),
        snakemake.output[0],
    )
