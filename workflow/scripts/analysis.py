"""Rule analysis: the runs and configurations tables, hyperparameter tables and statistics."""

from segsweep import layout
from segsweep.logs import logged
from segsweep.sweep.analysis import AnalysisInputs, write_tables

with logged(snakemake.log[0]):
    runs, models, given = snakemake.params.runs, snakemake.params.finals, snakemake.input
    members = snakemake.params.members  # the final models' runs

    def by_run(files):
        return dict(zip(runs, files, strict=True))

    def by_model(name):
        return dict(zip(models, getattr(given, name), strict=True)) if name in given.keys() else {}

    def training_benchmarks(own):
        """Each run's training jobs' benchmark files: its own job's and, under halving, its
        rungs' jobs'."""
        jobs = {run: [path] for run, path in own.items()}
        rungs = snakemake.params.rung_runs
        for run, path in zip(rungs, given.rung_benchmarks, strict=True):
            jobs[run].append(path)
        return jobs

    inputs = AnalysisInputs(
        selections=by_run(given.selections),
        val_per_patient=by_run(given.per_patient),
        # every run's at slice level (configurations are scored on them), else the final runs'
        val_per_slice=by_run(given.per_slice)
        if "per_slice" in given.keys()
        else dict(zip(members, given.val_per_slice, strict=True)),
        subjects=by_run(given.subjects),
        splits=given.splits,
        final=given.final,
        test_per_slice=by_model("test_per_slice"),
        test_per_patient=by_model("test_per_patient"),
        scored=by_run(given.scored),
        best_per_slice=by_model("best_per_slice"),
        best_per_patient=by_model("best_per_patient"),
        external=dict(zip(snakemake.params.external, given.external, strict=True)),
        provenance=by_run(given.provenance),
        benchmarks=training_benchmarks(by_run(given.benchmarks)),
        # under halving: the decision of every rung below the last
        decisions=list(given.decisions) if "decisions" in given.keys() else [],
        final_val_per_patient=dict(zip(members, given.final_per_patient, strict=True))
        if "final_per_patient" in given.keys()
        else {},
    )
    names = ("runs", "configurations", *layout.TABLES)
    write_tables(
        snakemake.params.cfg,
        snakemake.params.sweep,
        inputs,
        {name: snakemake.output[name] for name in names},
    )
