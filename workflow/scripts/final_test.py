"""Rule final_test: a final model on the test set (with folds: its fold ensemble, and its best
fold alone), its predictions by its package (the predictor of `segsweep predict`), their QC and
native-space scores."""

import torch

from segsweep.deploy.predictor import Predictor
from segsweep.devices import choose_device
from segsweep.evaluate.tables import FinalExport, evaluate_final
from segsweep.logs import logged

with logged(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    subjects, given, params, out = (
        snakemake.params.subjects,
        snakemake.input,
        snakemake.params,
        snakemake.output,
    )
    device = choose_device()
    final = FinalExport(
        labels=params.labels,
        grids=dict(zip(subjects, given.crops, strict=True)),
        crop_records=dict(zip(subjects, given.crop_records, strict=True)),
        ingest_records=dict(zip(subjects, given.ingest_records, strict=True)),
        predictions_dir=out.predictions,
        native_dir=out.native,
        figures_dir=out.figures,
        patients=tuple(params.patients),
        predictor=Predictor.load(given.package, device),
        qc_csv=out.qc,
    )
    best_fold = (out.best_slice, out.best_patient) if "best_slice" in out.keys() else None
    evaluate_final(
        snakemake.wildcards.run,
        dict(zip(params.runs, zip(given.selections, given.indices, strict=True), strict=True)),
        given.test,
        (out.per_slice, out.per_patient),
        best_fold,
        out.models,
        params.higher_is_better,
        params.reported,
        device,
        final,
        params.nsd_tolerance,
    )
