# The classification task's own stages after the choice of the final models (its data stage is
# radiographs.smk; split, training, selection and the choice are shared): a final model's test
# predictions per image and per study at the threshold chosen on validation (the only rule that
# reads the test set), the study-level analysis and figures beside the sweep's, and the thesis.
# Under halving the sweep's tables, tests and figures compare every configuration at the first
# rung (the one budget all of them trained to); the final models keep their full budget.


rule final_test:
    input:
        unpack(model_runs),
        final=L.FINAL,
        val_studies=lambda w: each(
            L.VAL_PER_STUDY, run=[r.run_id for r in CONFIGURATIONS[w.run]]
        ),
        test=L.path(L.DATASET, split="test"),
    output:
        models=L.FINAL_THRESHOLD,
        per_image=L.TEST_PER_IMAGE,
        per_study=report(
            L.TEST_PER_STUDY,
            caption="../../report/final_per_study.rst",
            category="Results",
            subcategory="Final models",
            labels={"run": "{run}", "table": "per-study test predictions"},
        ),
        gallery=L.GALLERY,
    log:
        L.log("final/{run}"),
    benchmark:
        benchmarked("final/{run}", lambda w: final_runs())
    conda:
        "../../envs/train.yaml"
    threads: config["threads"]
    params:
        runs=lambda w: " ".join(r.run_id for r in CONFIGURATIONS[w.run]),
        classification=as_json(STUDY_RULES),
        reported=config["final"]["model"],
        higher=str(config["selection"]["higher_is_better"]).lower(),
        gallery=config["classification"]["gallery"],
    shell:
        "python -m segsweep classify test --model {wildcards.run} --runs {params.runs}"
        " --selections {input.selections} --indices {input.indices}"
        " --val-studies {input.val_studies} --test {input.test}"
        " --reported {params.reported} --higher-is-better {params.higher}"
        " --classification-json {params.classification:q}"
        " --per-image {output.per_image} --per-study {output.per_study}"
        " --out-models {output.models} --gallery {params.gallery}"
        " --out-gallery {output.gallery} --threads {threads} > {log} 2>&1"


# A final model as a model package (segsweep.deploy.classification): the networks of the runs
# its models.json names, at the checkpoints their selections chose, with the threshold the
# final test used; all of its configuration's runs are given (models.json picks among them).
rule package:
    input:
        unpack(model_runs),
        models=L.FINAL_THRESHOLD,
        provenance=lambda w: each(
            L.RUN_PROVENANCE, run=[r.run_id for r in CONFIGURATIONS[w.run]]
        ),
    output:
        L.PACKAGE,
    log:
        L.log("package/{run}"),
    benchmark:
        benchmarked("package/{run}", lambda w: final_runs())
    conda:
        "../../envs/train.yaml"
    params:
        runs=lambda w: " ".join(r.run_id for r in CONFIGURATIONS[w.run]),
    shell:
        "python -m segsweep package --task classification --run {wildcards.run}"
        " --models-json {input.models} --runs {params.runs}"
        " --selections {input.selections} --indices {input.indices}"
        " --provenance {input.provenance} --out {output} > {log} 2>&1"


rule analysis:
    input:
        # under halving: which runs stopped where, the final models' own validation tables at
        # the full budget, and what the runs trained in their rungs' jobs
        *([unpack(rung_decisions)] if HALVING else []),
        **(
            {
                "final_per_study": lambda w: each(
                    L.VAL_PER_STUDY, run=final_members()
                ),
                "rung_benchmarks": rung_benchmarks,
            }
            if HALVING
            else {}
        ),
        # every configuration on one budget: under halving the first rung's
        selections=at_first_rung(L.SELECTION),
        per_study=at_first_rung(L.VAL_PER_STUDY),
        scored=at_first_rung(SCORED),  # as choose_final's
        provenance=each(L.RUN_PROVENANCE, run=sorted(RUNS)),
        benchmarks=each(L.benchmark("train/{run}"), run=sorted(RUNS)),
        test_per_study=lambda w: each(L.TEST_PER_STUDY, run=final_runs()),
        test_per_image=lambda w: each(L.TEST_PER_IMAGE, run=final_runs()),
        splits=L.SPLITS,
        final=L.FINAL,
    output:
        **{name: L.path(L.TABLE, name=name) for name in L.CLASSIFICATION_TABLES},
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
        # under halving: the final models' runs and the runs of the rung jobs, in input order
        **(
            {
                "members": lambda w: final_members(),
                "rung_runs": lambda w: [job["run"] for job in rung_jobs()],
            }
            if HALVING
            else {}
        ),
        cfg=ANALYSIS_CONFIG,
        sweep=SWEEP,
        runs=sorted(RUNS),
        finals=lambda w: final_runs(),
    script:
        "../scripts/classification_analysis.py"


rule figures:
    input:
        runs=L.RUNS_TABLE,
        configurations=L.CONFIGURATIONS_TABLE,
        final=L.FINAL,
        roc=L.path(L.TABLE, name="roc"),
        confusion=L.path(L.TABLE, name="confusion"),
        metrics=L.path(L.TABLE, name="classification_metrics"),
        calibration=L.path(L.TABLE, name="calibration"),
        reliability=L.path(L.TABLE, name="reliability"),
        logs=each(L.RUN_LOG, run=sorted(RUNS)),
        selections=at_first_rung(L.SELECTION),
        test_per_study=lambda w: each(L.TEST_PER_STUDY, run=final_runs()),
    output:
        jitter=report(
            each(L.JITTER, name=SWEPT),
            caption="../../report/jitter.rst",
            category="Results",
            subcategory="Hyperparameters",
        ),
        curves=report(
            L.TRAINING_CURVES,
            caption="../../report/training_curves.rst",
            category="Results",
            subcategory="Final models",
        ),
        checkpoints=L.CHECKPOINT_SCORES,
        cost=L.COST_FIGURE,
        roc=L.ROC_FIGURE,
        confusion=L.CONFUSION_FIGURE,
        probabilities=L.PROBABILITY_FIGURE,
        calibration=L.CALIBRATION_FIGURE,
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
    script:
        "../scripts/classification_figures.py"


rule report:
    input:
        unpack(
            lambda w: {
                f"benchmarks_{rule}": files for rule, files in benchmarks(w).items()
            }
        ),
        **L.classification_thesis_files(SWEPT, budget=HALVING),
        test_per_study=lambda w: each(L.TEST_PER_STUDY, run=final_runs()),
        test_per_image=lambda w: each(L.TEST_PER_IMAGE, run=final_runs()),
        gallery=lambda w: each(L.GALLERY, run=final_runs()),
        final=L.FINAL,
        splits=L.SPLITS,
        checks=L.SPLITS_CHECKS,
        manifest=L.DATA_MANIFEST,
        images=L.IMAGES_TABLE,
        dropped=L.DROPPED,
        description=L.DATA_DESCRIPTION,
        provenance=each(L.RUN_PROVENANCE, run=sorted(RUNS)),
        templates=multiext(
            os.path.join(PACKAGE_DIR, "segsweep/report/templates/thesis"),
            ".html.j2",
            ".css",
            ".js",
        ),
    output:
        html=report(
            L.THESIS_HTML,
            caption="../../report/thesis.rst",
            category="Thesis",
        ),
        pdf=report(
            L.THESIS_PDF,
            caption="../../report/thesis.rst",
            category="Thesis",
        ),
        latex=directory(L.THESIS_LATEX),
    log:
        L.log("report/report"),
    benchmark:
        benchmarked("report/report")
    conda:
        "../../envs/report.yaml"
    params:
        cfg=IN_FORCE,
        sweep=SWEEP,
        runs=sorted(RUNS),
        finals=lambda w: final_runs(),
    script:
        "../scripts/classification_report.py"
