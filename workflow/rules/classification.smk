# The classification task's own stages after the choice of the final models (its data stage is
# radiographs.smk; split, training, selection and the choice are shared): a final model's test
# predictions per image and per study at the threshold chosen on validation (the only rule that
# reads the test set), the study-level analysis and figures beside the sweep's, and the thesis.


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


rule analysis:
    input:
        selections=each(L.SELECTION, run=sorted(RUNS)),
        per_study=each(L.VAL_PER_STUDY, run=sorted(RUNS)),
        scored=each(SCORED, run=sorted(RUNS)),  # as choose_final's
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
        logs=each(L.RUN_LOG, run=sorted(RUNS)),
        selections=each(L.SELECTION, run=sorted(RUNS)),
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
        **L.classification_thesis_files(SWEPT),
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
