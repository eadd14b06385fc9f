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


rule ingest_image:
    input:
        raw_image,
    output:
        image="results/data/{subject}/image.nii.gz",
        record="results/data/{subject}/ingest.json",
    log:
        "logs/ingest/{subject}.log",
    benchmark:
        "benchmarks/ingest/{subject}.tsv"
    conda:
        "../../envs/preprocess.yaml"
    params:
        image=lambda w: SUBJECTS[w.subject]["image"],
        source=lambda w: SUBJECTS[w.subject]["source"],
        perspective=lambda w: SUBJECTS[w.subject]["perspective"],
        labels=label_paths,
    shell:
        "python -m segsweep ingest image --subject {wildcards.subject} --image {params.image:q}"
        " --source {params.source:q} --perspective {params.perspective:q} {params.labels}"
        " --out-image {output.image} --out-json {output.record} > {log} 2>&1"


rule ingest_mask:
    input:
        image=raw_image,
        mask=raw_mask,
    output:
        "results/data/{subject}/mask.nii.gz",
    log:
        "logs/ingest/{subject}.mask.log",
    benchmark:
        "benchmarks/ingest/{subject}.mask.tsv"
    conda:
        "../../envs/preprocess.yaml"
    params:
        image=lambda w: SUBJECTS[w.subject]["image"],
        mask=lambda w: SUBJECTS[w.subject]["mask"],
        labels=as_json(config["data"]["labels"]),
    shell:
        "python -m segsweep ingest mask --subject {wildcards.subject} --image {params.image:q}"
        " --mask {params.mask:q} --labels-json {params.labels:q} --out-mask {output} > {log} 2>&1"


rule data_manifest:
    input:
        records=expand("results/data/{subject}/ingest.json", subject=sorted(SUBJECTS)),
        cohort=(
            "results/cohort/manifest.csv"
            if config["data"]["source"] == "synthetic"
            else []
        ),
    output:
        report(
            "results/data/manifest.csv",
            caption="../../report/manifest.rst",
            category="Data",
        ),
    log:
        "logs/data/manifest.log",
    benchmark:
        "benchmarks/data/manifest.tsv"
    conda:
        "../../envs/preprocess.yaml"
    shell:
        "python -m segsweep ingest manifest"
        " --records {input.records} --out {output} > {log} 2>&1"
