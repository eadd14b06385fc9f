"""Rule analysis (classification): the runs and configurations tables, the sweep's tables and
statistics, and the final models' study-level metrics, per study type, confusion and ROC."""

from segsweep import layout
from segsweep.logs import logged
from segsweep.sweep.classification_analysis import (
    ClassificationInputs,
    write_classification_tables,
)

with logged(snakemake.log[0]):
    runs, models, given = snakemake.params.runs, snakemake.params.finals, snakemake.input

    def by_run(files):
        return dict(zip(runs, files, strict=True))

    def by_model(files):
        return dict(zip(models, files, strict=True))

    inputs = ClassificationInputs(
        selections=by_run(given.selections),
        val_per_study=by_run(given.per_study),
        scored=by_run(given.scored),
        benchmarks=by_run(given.benchmarks),
        provenance=by_run(given.provenance),
        splits=given.splits,
        final=given.final,
        test_per_study=by_model(given.test_per_study),
        test_per_image=by_model(given.test_per_image),
    )
    names = ("runs", "configurations", *layout.CLASSIFICATION_TABLES)
    write_classification_tables(
        snakemake.params.cfg,
        snakemake.params.sweep,
        inputs,
        {name: snakemake.output[name] for name in names},
    )
