"""Rule final_test: a final model on the test set, its predictions and native-space scores."""

import torch

from segsweep.devices import choose_device
from segsweep.evaluate.tables import FinalExport, evaluate_split
from segsweep.logs import logged

with logged(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    subjects, given = snakemake.params.subjects, snakemake.input
    final = FinalExport(
        labels=snakemake.params.labels,
        grids=dict(zip(subjects, given.crops, strict=True)),
        crop_records=dict(zip(subjects, given.crop_records, strict=True)),
        ingest_records=dict(zip(subjects, given.ingest_records, strict=True)),
        predictions_dir=snakemake.output.predictions,
        native_dir=snakemake.output.native,
        figures_dir=snakemake.output.figures,
        patients=tuple(snakemake.params.patients),
    )
    evaluate_split(
        given.selection,
        given.index,
        given.test,
        "test",
        snakemake.wildcards.run,
        snakemake.output.per_slice,
        snakemake.output.per_patient,
        choose_device(),
        final,
    )
