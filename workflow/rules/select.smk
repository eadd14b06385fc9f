# Selection of every run's checkpoint on validation and its validation tables (one job per run:
# a sweep of thousands of runs plans faster with fewer jobs), and the choice of the final models,
# shared by both tasks: segmentation scores per slice and patient, classification per image and
# study. Only the final models then see the test set (evaluate.smk, classification.smk).


rule select:
    input:
        index=L.RUN_INDEX,
        subjects=L.RUN_SUBJECTS,
        val=validation_data,
    output:
        **(
            {"per_slice": L.VAL_PER_SLICE, "per_patient": L.VAL_PER_PATIENT}
            if SEGMENTATION
            else {"per_image": L.VAL_PER_IMAGE, "per_study": L.VAL_PER_STUDY}
        ),
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
    shell:
        (
            "python -m segsweep select --index {input.index} --val {input.val}"
            " --subjects-json {input.subjects} --config-json {params.cfg:q}"
            " --out {output.selection} --threads {threads} > {log} 2>&1"
            " && python -m segsweep evaluate --index {input.index} --run-id {wildcards.run}"
            " --selection {output.selection} --data {input.val}"
            " --subjects-json {input.subjects} --split val"
            " --per-slice {output.per_slice} --per-patient {output.per_patient}"
            " --threads {threads} >> {log} 2>&1"
        )
        if SEGMENTATION
        else (
            "python -m segsweep classify select --index {input.index} --val {input.val}"
            " --subjects-json {input.subjects} --config-json {params.cfg:q}"
            " --classification-json {params.classification:q} --out {output.selection}"
            " --per-image {output.per_image} --per-study {output.per_study}"
            " --threads {threads} > {log} 2>&1"
        )


checkpoint choose_final:
    input:
        selections=each(L.SELECTION, run=sorted(RUNS)),
        scored=each(SCORED, run=sorted(RUNS)),
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
        runs=sorted(RUNS),
    script:
        "../scripts/choose_final.py"
