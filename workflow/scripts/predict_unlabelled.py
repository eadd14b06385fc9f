"""Rule predict_unlabelled: a final model's package predicts the subjects without a reference
(with folds: its fold ensemble), as `segsweep predict` would."""

import torch

from segsweep.deploy.predictor import Predictor, SubjectFiles
from segsweep.devices import choose_device
from segsweep.evaluate.unlabelled import predict_unlabelled
from segsweep.logs import logged

with logged(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    subjects, given = snakemake.params.subjects, snakemake.input
    predict_unlabelled(
        Predictor.load(given.package, choose_device()),
        SubjectFiles(
            dict(zip(subjects, given.crops, strict=True)),
            dict(zip(subjects, given.crop_records, strict=True)),
            dict(zip(subjects, given.ingest_records, strict=True)),
        ),
        snakemake.output.predictions,
        snakemake.output.figure,
        snakemake.wildcards.run,
    )
