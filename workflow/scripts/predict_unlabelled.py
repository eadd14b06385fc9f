"""Rule predict_unlabelled: a final model's predictions (with folds: its fold ensemble's) for
the subjects without a reference."""

import torch

from segsweep.devices import choose_device
from segsweep.evaluate.tables import selected_checkpoints
from segsweep.evaluate.unlabelled import predict_unlabelled
from segsweep.io.records import read_json
from segsweep.logs import logged

with logged(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    subjects, given = snakemake.params.subjects, snakemake.input
    predict_unlabelled(
        selected_checkpoints(list(given.selections), list(given.indices)),
        read_json(given.stats),
        dict(zip(subjects, given.crops, strict=True)),
        dict(zip(subjects, given.crop_records, strict=True)),
        dict(zip(subjects, given.ingest_records, strict=True)),
        snakemake.params.labels,
        snakemake.output.predictions,
        snakemake.output.figure,
        snakemake.wildcards.run,
        choose_device(),
    )
