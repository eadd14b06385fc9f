# Data: the synthetic knee cohort (default) and ingest of every subject, synthetic or brought.


rule cohort_subject:
    output:
        data_files(L.COHORT_IMAGE),
        data_files(L.COHORT_MASK),
        data_files(L.COHORT_ROI),
        data_files(L.COHORT_BIAS),
        L.COHORT_TRUTH,
    log:
        L.log("cohort/{subject}"),
    benchmark:
        benchmarked(
            "cohort/{subject}",
            lambda w: sorted(SUBJECTS),
            runs=config["data"]["source"] == "synthetic",
        )
    group:
        "check"
    conda:
        "../../envs/preprocess.yaml"
    params:
        cfg=as_json(config["data"]["synthetic"]),
        out=lambda w, output: os.path.dirname(output[-1]),  # L.COHORT_SUBJECT
    shell:
        "python -m segsweep cohort subject --config-json {params.cfg:q}"
        " --subject {wildcards.subject} --out {params.out} > {log} 2>&1"


rule cohort_manifest:
    output:
        L.COHORT_MANIFEST,
    log:
        L.log("cohort_manifest"),
    benchmark:
        benchmarked("cohort_manifest", runs=config["data"]["source"] == "synthetic")
    conda:
        "../../envs/preprocess.yaml"
    params:
        cfg=as_json(config["data"]["synthetic"]),
    shell:
        "python -m segsweep cohort manifest --config-json {params.cfg:q} --out {output} > {log} 2>&1"


rule ingest_check:
    input:
        raw_image,
        raw_mask,
    output:
        L.INGEST_RECORD,
    log:
        L.log("ingest_check/{subject}"),
    benchmark:
        benchmarked("ingest_check/{subject}", lambda w: sorted(SUBJECTS))
    group:
        "check"
    conda:
        "../../envs/preprocess.yaml"
    params:
        args=check_args,
        labels=as_json(LABELS),
        tolerance=config["data"]["tolerance"],
        channels=(
            f"--channels {len(DATA_READ['channels'])}" if DATA_READ["channels"] else ""
        ),
    # Records every problem (--on-invalid skip): data_manifest applies data.on_invalid to them.
    shell:
        "python -m segsweep ingest check --subject {wildcards.subject} {params.args}"
        " --labels-json {params.labels:q} --tolerance {params.tolerance} {params.channels}"
        " --on-invalid skip --out-json {output} > {log} 2>&1"
        " || {{ tail -n 1 {log} >&2; exit 1; }}"


rule ingest_image:
    input:
        raw_image,
        record=validated,
    output:
        L.DATA_IMAGE,
    log:
        L.log("ingest/{subject}"),
    benchmark:
        benchmarked("ingest/{subject}", valid_subjects)
    group:
        "subject"
    conda:
        "../../envs/preprocess.yaml"
    params:
        images=image_args,
    shell:
        "python -m segsweep ingest image --subject {wildcards.subject} {params.images}"
        " --out-image {output} > {log} 2>&1"


rule ingest_mask:
    input:
        raw_image,
        raw_mask,
        record=validated,
    output:
        L.DATA_MASK,
    log:
        L.log("ingest_mask/{subject}"),
    benchmark:
        benchmarked("ingest_mask/{subject}", valid_labelled)
    group:
        "subject"
    conda:
        "../../envs/preprocess.yaml"
    params:
        images=image_args,
        masks=mask_args,
        labels=as_json(LABELS),
        tolerance=config["data"]["tolerance"],
    shell:
        "python -m segsweep ingest mask --subject {wildcards.subject} {params.images}"
        " {params.masks} --labels-json {params.labels:q} --tolerance {params.tolerance}"
        " --out-mask {output} > {log} 2>&1"


checkpoint data_manifest:
    input:
        records=each(L.INGEST_RECORD, subject=sorted(SUBJECTS)),
        cohort=L.COHORT_MANIFEST if config["data"]["source"] == "synthetic" else [],
    output:
        manifest=report(
            L.DATA_MANIFEST,
            caption="../../report/manifest.rst",
            category="Data",
        ),
        dropped=L.DROPPED,
        description=L.DATA_DESCRIPTION,
    log:
        L.log("data/manifest"),
    benchmark:
        benchmarked("data/manifest")
    conda:
        "../../envs/preprocess.yaml"
    params:
        read=DATA_READ,
        manifest=config["data"]["manifest"],
        labels=LABELS,
        on_invalid=config["data"]["on_invalid"],
    script:
        "../scripts/data_manifest.py"
