# Data: the synthetic knee cohort (default) and ingest of every subject, synthetic or brought.


rule cohort_subject:
    output:
        multiext("results/cohort/{subject}/image", ".mhd", ".zraw"),
        multiext("results/cohort/{subject}/mask", ".mhd", ".zraw"),
        multiext("results/cohort/{subject}/roi", ".mhd", ".zraw"),
        multiext("results/cohort/{subject}/bias", ".mhd", ".zraw"),
        truth="results/cohort/{subject}/truth.json",
    log:
        "logs/cohort/{subject}.log",
    benchmark:
        "benchmarks/cohort/{subject}.tsv"
    conda:
        "../../envs/preprocess.yaml"
    params:
        cfg=as_json(config["data"]["synthetic"]),
    shell:
        "python -m segsweep cohort subject --config-json {params.cfg:q}"
        " --subject {wildcards.subject} --out results/cohort/{wildcards.subject} > {log} 2>&1"


rule cohort_manifest:
    output:
        "results/cohort/manifest.csv",
    log:
        "logs/cohort/manifest.log",
    benchmark:
        "benchmarks/cohort/manifest.tsv"
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
        "results/data/{subject}/ingest.json",
    log:
        "logs/ingest/{subject}.check.log",
    benchmark:
        "benchmarks/ingest/{subject}.check.tsv"
    conda:
        "../../envs/preprocess.yaml"
    params:
        args=check_args,
        labels=as_json(config["data"]["labels"]),
        tolerance=config["data"]["tolerance"],
        on_invalid=config["data"]["on_invalid"],
    shell:
        "python -m segsweep ingest check --subject {wildcards.subject} {params.args}"
        " --labels-json {params.labels:q} --tolerance {params.tolerance}"
        " --on-invalid {params.on_invalid} --out-json {output} > {log} 2>&1"
        " || {{ tail -n 1 {log} >&2; exit 1; }}"


rule ingest_image:
    input:
        raw_image,
        record="results/data/{subject}/ingest.json",
    output:
        "results/data/{subject}/image.nii.gz",
    log:
        "logs/ingest/{subject}.log",
    benchmark:
        "benchmarks/ingest/{subject}.tsv"
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
        record="results/data/{subject}/ingest.json",
    output:
        "results/data/{subject}/mask.nii.gz",
    log:
        "logs/ingest/{subject}.mask.log",
    benchmark:
        "benchmarks/ingest/{subject}.mask.tsv"
    conda:
        "../../envs/preprocess.yaml"
    params:
        images=image_args,
        masks=mask_args,
        labels=as_json(config["data"]["labels"]),
        tolerance=config["data"]["tolerance"],
    shell:
        "python -m segsweep ingest mask --subject {wildcards.subject} {params.images}"
        " {params.masks} --labels-json {params.labels:q} --tolerance {params.tolerance}"
        " --out-mask {output} > {log} 2>&1"


checkpoint data_manifest:
    input:
        records=expand("results/data/{subject}/ingest.json", subject=sorted(SUBJECTS)),
        cohort=(
            "results/cohort/manifest.csv"
            if config["data"]["source"] == "synthetic"
            else []
        ),
    output:
        manifest=report(
            "results/data/manifest.csv",
            caption="../../report/manifest.rst",
            category="Data",
        ),
        dropped="results/data/dropped.csv",
    log:
        "logs/data/manifest.log",
    benchmark:
        "benchmarks/data/manifest.tsv"
    conda:
        "../../envs/preprocess.yaml"
    shell:
        "python -m segsweep ingest manifest --records {input.records}"
        " --out {output.manifest} --dropped {output.dropped} > {log} 2>&1"
