# Cohort-level analysis: the runs table, hyperparameter tables, statistics and the figures.
# The runs table reads what each training cost from the train jobs' benchmarks and provenance.
# Under halving the sweep's tables, tests and figures compare every configuration at the first
# rung (the one budget all of them trained to); the final models keep their full budget.


rule analysis:
    input:
        unpack(final_tables),
        unpack(rung_decisions),  # under halving: which runs stopped where
        **(
            {"per_slice": each(L.VAL_PER_SLICE, run=sorted(RUNS))}
            if SLICE_LEVEL and not HALVING
            else {}
        ),
        # the final models' own validation tables, at the full budget
        **(
            {
                "final_per_patient": lambda w: each(
                    L.VAL_PER_PATIENT, run=final_members()
                )
            }
            if HALVING
            else {}
        ),
        # every configuration on one budget: under halving the first rung's
        selections=at_first_rung(L.SELECTION),
        external=[
            L.path(L.EXTERNAL_PER_PATIENT, name=name) for name in sorted(EXTERNAL)
        ],
        per_patient=at_first_rung(L.VAL_PER_PATIENT),
        scored=at_first_rung(SCORED),
        subjects=each(L.RUN_SUBJECTS, run=sorted(RUNS)),
        provenance=each(L.RUN_PROVENANCE, run=sorted(RUNS)),
        benchmarks=each(L.benchmark("train/{run}"), run=sorted(RUNS)),
        # under halving what the runs trained in their rungs' jobs
        rung_benchmarks=rung_benchmarks,
        splits=L.SPLITS,
        final=L.FINAL,
    output:
        **{name: L.path(L.TABLE, name=name) for name in L.TABLES},
        runs=report(
            L.RUNS_TABLE,
            caption="../../report/runs.rst",
            category="Results",
        ),
        configurations=L.CONFIGURATIONS_TABLE,
    log:
        L.log("analysis/analysis"),
    benchmark:
        benchmarked("analysis/analysis")
    conda:
        "../../envs/report.yaml"
    params:
        cfg=ANALYSIS_CONFIG,
        sweep=SWEEP,
        runs=sorted(RUNS),
        finals=lambda w: final_runs(),
        members=lambda w: final_members(),
        external=sorted(EXTERNAL),
        rung_runs=lambda w: [job["run"] for job in rung_jobs()],
    script:
        "../scripts/analysis.py"


rule figures:
    input:
        unpack(final_tables),
        runs=L.RUNS_TABLE,
        configurations=L.CONFIGURATIONS_TABLE,
        ranks=L.path(L.TABLE, name="rank_frequencies"),
        final=L.FINAL,
        splits=L.SPLITS,
        logs=each(L.RUN_LOG, run=sorted(RUNS)),
        selections=at_first_rung(L.SELECTION),
        external=[
            L.path(L.EXTERNAL_PER_PATIENT, name=name) for name in sorted(EXTERNAL)
        ],
    output:
        **({"native": L.NATIVE_BOXPLOT} if EXTERNAL else {}),
        **({"sites": L.SITE_BOXPLOT} if SITES else {}),
        jitter=report(
            each(L.JITTER, name=SWEPT),
            caption="../../report/jitter.rst",
            category="Results",
            subcategory="Hyperparameters",
        ),
        boxplots=report(
            each(L.BOXPLOT, split=FINAL_SPLITS),
            caption="../../report/boxplot.rst",
            category="Results",
            subcategory="Final models",
        ),
        curves=report(
            L.TRAINING_CURVES,
            caption="../../report/training_curves.rst",
            category="Results",
            subcategory="Final models",
        ),
        histograms=report(
            each(L.HISTOGRAM, split=FINAL_SPLITS),
            caption="../../report/histogram.rst",
            category="Results",
            subcategory="Final models",
        ),
        checkpoints=report(
            L.CHECKPOINT_SCORES,
            caption="../../report/checkpoint_scores.rst",
            category="Results",
            subcategory="Selection",
        ),
        ranking=L.RANKING_FIGURE,
        cost=L.COST_FIGURE,
    log:
        L.log("analysis/figures"),
    benchmark:
        benchmarked("analysis/figures")
    conda:
        "../../envs/report.yaml"
    params:
        cfg=ANALYSIS_CONFIG,
        sweep=SWEEP,
        runs=sorted(RUNS),
        finals=lambda w: final_runs(),
        curve=TASK.curve,  # the training curves' validation metric
        members=lambda w: final_members(),
        external=sorted(EXTERNAL),
    script:
        "../scripts/figures.py"
