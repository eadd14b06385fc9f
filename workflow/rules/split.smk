# Cohort stages: the patient-level split, training-split statistics and the HDF5 datasets.


rule split:
    input:
        "results/data/manifest.csv",
    output:
        splits=report(
            "results/splits/splits.csv",
            caption="../../report/splits.rst",
            category="Data",
        ),
        audit="results/splits/splits_audit.csv",
        checks="results/splits/splits_checks.csv",
    log:
        "logs/split/split.log",
    benchmark:
        "benchmarks/split/split.tsv"
    conda:
        "../../envs/preprocess.yaml"
    params:
        cfg=as_json(config["split"]),
    shell:
        "python -m segsweep split --manifest {input} --config-json {params.cfg:q}"
        " --out {output.splits} > {log} 2>&1"


rule normalisation:
    input:
        splits="results/splits/splits.csv",
        images=labelled_crops,
    output:
        "results/datasets/normalisation.json",
    log:
        "logs/pack/normalisation.log",
    benchmark:
        "benchmarks/pack/normalisation.tsv"
    conda:
        "../../envs/preprocess.yaml"
    params:
        cfg=as_json(
            {
                "normalise": config["preprocess"]["normalise"],
                "windows": config["preprocess"]["windows"],
                "channels": config["data"]["channels"],
            }
        ),
    shell:
        "python -m segsweep pack stats --splits {input.splits} --crop-dir results/crop"
        " --config-json {params.cfg:q} --out {output} > {log} 2>&1"


rule pack:
    input:
        splits="results/splits/splits.csv",
        stats="results/datasets/normalisation.json",
        images=labelled_crops,
        masks=labelled_crop_masks,
    output:
        "results/datasets/{split}.h5",
    log:
        "logs/pack/{split}.log",
    benchmark:
        "benchmarks/pack/{split}.tsv"
    conda:
        "../../envs/preprocess.yaml"
    params:
        labels=as_json(config["data"]["labels"]),
        volumes=(
            "--volumes"
            if config["preprocess"]["volumes"]
            or any(run.params["model"] == "unet3d" for run in RUNS.values())
            else ""
        ),
    shell:
        "python -m segsweep pack pack --split {wildcards.split} --splits {input.splits}"
        " --crop-dir results/crop --stats {input.stats} --labels-json {params.labels:q} {params.volumes}"
        " --out {output} > {log} 2>&1"
