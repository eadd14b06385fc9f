# Selection of every run's checkpoint on validation and its validation tables (one job per run:
# a sweep of thousands of runs plans faster with fewer jobs), and the choice of the final models,
# shared by both tasks: segmentation scores per slice and patient, classification per image and
# study (the task's tables and command: segsweep.tasks, Task.select_outputs and select_command).
# Only the final models then see the test set (evaluate.smk, classification.smk).


rule select:
    input:
        index=L.RUN_INDEX,
        subjects=L.RUN_SUBJECTS,
        val=VALIDATION_DATA,
    output:
        **TASK.select_outputs,  # the task's validation tables
        selection=L.SELECTION,
    log:
        L.log("select/{run}"),
    benchmark:
        benchmarked("select/{run}", lambda w: sorted(RUNS))
    conda:
        "../../envs/train.yaml"
    threads: config["threads"]
    params:
        cfg=as_json(config["selection"]),
        classification=as_json(STUDY_RULES),
        nsd_tolerance=config["metrics"]["nsd_tolerance_mm"],
    shell:
        TASK.select_command


# Under halving the choice is made among the configurations that reached the last rung, and with
# a confirmation on the seed-averaged score of the confirmed settings (budget.smk): their runs
# are then known only once the rungs' decisions and the confirmation are made.
checkpoint choose_final:
    input:
        *([unpack(choice_inputs)] if HALVING or CONFIRM["top"] else []),
        **(
            {}
            if HALVING or CONFIRM["top"]
            else {
                "selections": each(L.SELECTION, run=sorted(RUNS)),
                "scored": each(SCORED, run=sorted(RUNS)),
            }
        ),
    output:
        table=report(
            L.FINAL,
            caption="../../report/final.rst",
            category="Results",
        ),
    log:
        L.log("choose_final"),
    benchmark:
        benchmarked("choose_final")
    conda:
        "../../envs/report.yaml"
    params:
        cfg=CHOICE_CONFIG,
        sweep=SWEEP,
        runs=(lambda w: choice_runs()) if HALVING or CONFIRM["top"] else sorted(RUNS),
        seed_averaged=bool(CONFIRM["top"]),
        candidates=(lambda w: survivors()) if HALVING else sorted(CONFIGURATIONS),
    script:
        "../scripts/choose_final.py"
