"""Rule analysis (classification): the runs and configurations tables, the sweep's tables and
statistics, and the final models' study-level metrics, per study type, confusion, ROC and
calibration. Under successive halving the runs' files are those of the first rung, and the rule
also gives the rungs' decisions, the final models' own validation tables (their full budget) and
the rung jobs' benchmarks."""

from segsweep import layout
from segsweep.logs import logged
from segsweep.sweep.classification_analysis import (
    ClassificationInputs,
    write_classification_tables,
)

with logged(snakemake.log[0]):
    runs, models, given = snakemake.params.runs, snakemake.params.finals, snakemake.input
    halving = "decisions" in given.keys()

    def by_run(files):
        return dict(zip(runs, files, strict=True))

    def by_model(files):
        return dict(zip(models, files, strict=True))

    def training_benchmarks(own):
        """Each run's training jobs' benchmark files: its own job's and, under halving, its
        rungs' jobs'."""
        jobs = {run: [path] for run, path in own.items()}
        if halving:
            rungs = snakemake.params.rung_runs
            for run, path in zip(rungs, given.rung_benchmarks, strict=True):
                jobs[run].append(path)
        return jobs

    inputs = ClassificationInputs(
        selections=by_run(given.selections),
        val_per_study=by_run(given.per_study),
        scored=by_run(given.scored),
        benchmarks=training_benchmarks(by_run(given.benchmarks)),
        provenance=by_run(given.provenance),
        splits=given.splits,
        final=given.final,
        test_per_study=by_model(given.test_per_study),
        test_per_image=by_model(given.test_per_image),
        decisions=list(given.decisions) if halving else [],
        final_val_per_study=dict(zip(snakemake.params.members, given.final_per_study, strict=True))
        if halving
        else {},
    )
    names = ("runs", "configurations", *layout.CLASSIFICATION_TABLES)
    write_classification_tables(
        snakemake.params.cfg,
        snakemake.params.sweep,
        inputs,
        {name: snakemake.output[name] for name in names},
    )
