# Cohort stages: the patient-level split, training-split statistics and the HDF5 datasets.


rule split:
    input:
        L.DATA_MANIFEST,
    output:
        splits=report(
            L.SPLITS,
            caption="../../report/splits.rst",
            category="Data",
        ),
        audit=L.SPLITS_AUDIT,
        checks=L.SPLITS_CHECKS,
    log:
        L.log("split/split"),
    benchmark:
        L.benchmark("split/split")
    conda:
        "../../envs/preprocess.yaml"
    params:
        cfg=as_json(config["split"]),
    shell:
        "python -m segsweep split --manifest {input} --config-json {params.cfg:q}"
        " --out {output.splits} --out-audit {output.audit} --out-checks {output.checks}"
        " > {log} 2>&1"


rule normalisation:
    input:
        images=labelled_crop_images,
        splits=L.SPLITS,
    output:
        L.NORMALISATION,
    log:
        L.log("pack/normalisation"),
    benchmark:
        L.benchmark("pack/normalisation")
    conda:
        "../../envs/preprocess.yaml"
    params:
        subjects=valid_labelled,
        cfg={
            "normalise": config["preprocess"]["normalise"],
            "windows": config["preprocess"]["windows"],
            "channels": config["data"]["channels"],
        },
    script:
        "../scripts/normalisation.py"


rule pack:
    input:
        images=labelled_crop_images,
        masks=labelled_crop_masks,
        splits=L.SPLITS,
        stats=L.NORMALISATION,
    output:
        L.DATASET,
    log:
        L.log("pack/{split}"),
    benchmark:
        L.benchmark("pack/{split}")
    conda:
        "../../envs/preprocess.yaml"
    params:
        subjects=valid_labelled,
        labels=LABELS,
        volumes=config["preprocess"]["volumes"]
        or any(run.params["model"] == "unet3d" for run in RUNS.values()),
    script:
        "../scripts/pack.py"
