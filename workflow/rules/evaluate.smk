# The final models of the segmentation task: each as a model package (its QC calibrated on its
# folds' validation patients), on the test set — only they; no other rule reads test data — by
# its package, with predictions in processed and native space and their QC, the unlabelled
# subjects, and the external methods' predictions scored as the final models are.


rule package:
    input:
        unpack(package_data),
        unpack(model_runs),
        final=L.FINAL,
        val_tables=lambda w: each(
            L.VAL_PER_PATIENT, run=[run.run_id for run in CONFIGURATIONS[w.run]]
        ),
        provenance=lambda w: L.path(
            L.RUN_PROVENANCE, run=CONFIGURATIONS[w.run][0].run_id
        ),
        stats=L.NORMALISATION,
        plan=L.CROP_PLAN if PLANNED else [],
    output:
        L.PACKAGE,
    log:
        L.log("package/{run}"),
    benchmark:
        benchmarked("package/{run}", lambda w: final_runs())
    conda:
        "../../envs/train.yaml"
    threads: config["threads"]
    params:
        subjects=valid_labelled,
        runs=lambda w: [run.run_id for run in CONFIGURATIONS[w.run]],
        settings={
            "labels": LABELS,
            "channels": IN_FORCE["data"]["channels"],
            "n4": config["preprocess"]["n4"],
            "crop": CROP,
        },
    script:
        "../scripts/package.py"


rule final_test:
    input:
        unpack(final_test_data),
        unpack(model_runs),
        final=L.FINAL,
        package=L.PACKAGE,
        test=L.path(L.DATASET, split="test"),
    output:
        **(
            {
                "best_slice": L.BEST_FOLD_PER_SLICE,
                "best_patient": L.BEST_FOLD_PER_PATIENT,
            }
            if FOLDS
            else {}
        ),
        models=L.FINAL_MODELS,
        per_slice=L.TEST_PER_SLICE,
        per_patient=report(
            L.TEST_PER_PATIENT,
            caption="../../report/final_per_patient.rst",
            category="Results",
            subcategory="Final models",
            labels={"run": "{run}", "table": "per-patient test scores"},
        ),
        qc=L.FINAL_QC,
        predictions=directory(L.PREDICTIONS),
        native=directory(L.PREDICTIONS_NATIVE),
        figures=directory(L.OUTLINES),
    log:
        L.log("final/{run}"),
    benchmark:
        benchmarked("final/{run}", lambda w: final_runs())
    conda:
        "../../envs/train.yaml"
    threads: config["threads"]
    params:
        subjects=valid_labelled,
        runs=lambda w: [run.run_id for run in CONFIGURATIONS[w.run]],
        labels=LABELS,
        patients=config["report"]["patients"],
        higher_is_better=config["selection"]["higher_is_better"],
        reported=config["final"]["model"],
        nsd_tolerance=config["metrics"]["nsd_tolerance_mm"],
    script:
        "../scripts/final_test.py"


rule predict_unlabelled:
    input:
        unpack(unlabelled_data),
        package=L.PACKAGE,
    output:
        predictions=directory(L.UNLABELLED),
        figure=report(
            L.UNLABELLED_FIGURE,
            caption="../../report/unlabelled.rst",
            category="Results",
            subcategory="Unlabelled subjects",
            labels={"run": "{run}", "figure": "unlabelled overlay"},
        ),
    log:
        L.log("predict_unlabelled/{run}"),
    benchmark:
        benchmarked("predict_unlabelled/{run}", lambda w: final_runs())
    conda:
        "../../envs/train.yaml"
    threads: config["threads"]
    params:
        subjects=valid_unlabelled,
        labels=LABELS,
    script:
        "../scripts/predict_unlabelled.py"


rule score_external:
    input:
        folder=lambda w: EXTERNAL[w.name],
        splits=L.SPLITS,
        records=lambda w: each(L.INGEST_RECORD, subject=valid_labelled(w)),
        originals=lambda w: final_test_data(w)["originals"],
    output:
        L.EXTERNAL_PER_PATIENT,
    log:
        L.log("external/{name}"),
    benchmark:
        benchmarked("external/{name}", lambda w: sorted(EXTERNAL))
    conda:
        "../../envs/preprocess.yaml"
    params:
        records=lambda w, input: " ".join(
            shlex.quote(f"{s}={p}")
            for s, p in zip(valid_labelled(w), input.records, strict=True)
        ),
        labels=as_json(LABELS),
        nsd_tolerance=config["metrics"]["nsd_tolerance_mm"],
    shell:
        "python -m segsweep external {wildcards.name:q} {input.folder:q} --splits {input.splits}"
        " --records {params.records} --labels-json {params.labels:q}"
        " --nsd-tolerance-mm {params.nsd_tolerance} --out {output} > {log} 2>&1"


# The workflow of one outer fold of a nested cross-validation (split.outer_fold): the rows its
# chosen model predicted for the outer fold's patients, its test split, which the nested
# workflow pools (nested.smk).
if config["split"]["outer_fold"] is not None:

    rule held_out:
        input:
            final=L.FINAL,
            configurations=L.CONFIGURATIONS_TABLE,
            tables=lambda w: each(REPORTED_TEST, run=final_runs()),
        output:
            L.NESTED_HELD_OUT,
        log:
            L.log("nested/held_out"),
        benchmark:
            benchmarked("nested/held_out")
        conda:
            "../../envs/report.yaml"
        params:
            tables=lambda w, input: " ".join(
                shlex.quote(f"{run}={path}")
                for run, path in zip(final_runs(), input.tables, strict=True)
            ),
            fold=config["split"]["outer_fold"],
        shell:
            "python -m segsweep nested held-out --final {input.final}"
            " --configurations {input.configurations} --tables {params.tables}"
            " --outer-fold {params.fold} --out {output} > {log} 2>&1"
