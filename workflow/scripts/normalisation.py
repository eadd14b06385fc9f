"""Rule normalisation: statistics of the training split's cropped images."""

from segsweep.logs import logged
from segsweep.preprocess.pack import write_stats

with logged(snakemake.log[0]):
    images = dict(zip(snakemake.params.subjects, snakemake.input.images, strict=True))
    write_stats(snakemake.input.splits, images, snakemake.params.cfg, snakemake.output[0])
