# Data of the classification task: the synthetic radiograph cohort (default) or a brought manifest
# CSV or MURA folder, every image read and checked in one job (rule studies: one row per image in
# images.csv, one per study in manifest.csv, which the shared split reads), then each split's
# images packed into one HDF5 file (segsweep.io.image_sets).


rule cohort_radiographs:
    output:
        L.RADIOGRAPHS_MANIFEST,
    log:
        L.log("cohort_radiographs"),
    benchmark:
        benchmarked("cohort_radiographs", runs=config["data"]["source"] == "synthetic")
    conda:
        "../../envs/preprocess.yaml"
    params:
        # its classes are data.labels': the lowest value is normal, the highest abnormal
        cfg=as_json({**config["data"]["radiographs"], "labels": LABELS}),
        out=lambda w, output: os.path.dirname(output[0]),
    shell:
        "python -m segsweep radiographs --config-json {params.cfg:q}"
        " --out-dir {params.out} --out-manifest {output} > {log} 2>&1"


rule studies:
    input:
        studies_source,
    output:
        images=L.IMAGES_TABLE,
        manifest=report(
            L.DATA_MANIFEST,
            caption="../../report/manifest.rst",
            category="Data",
        ),
        dropped=L.DROPPED,
        description=L.DATA_DESCRIPTION,
    log:
        L.log("data/studies"),
    benchmark:
        benchmarked("data/studies")
    conda:
        "../../envs/preprocess.yaml"
    params:
        manifest=STUDIES_MANIFEST,
        labels=as_json(LABELS),
        on_invalid=config["data"]["on_invalid"],
    shell:
        "python -m segsweep studies --manifest {params.manifest:q}"
        " --labels-json {params.labels:q} --on-invalid {params.on_invalid}"
        " --out-images {output.images} --out-manifest {output.manifest}"
        " --out-dropped {output.dropped} --out-description {output.description}"
        " > {log} 2>&1 || {{ tail -n 1 {log} >&2; exit 1; }}"


rule examples:
    input:
        L.IMAGES_TABLE,
    output:
        L.EXAMPLES_FIGURE,
    log:
        L.log("data/examples"),
    benchmark:
        benchmarked("data/examples")
    conda:
        "../../envs/preprocess.yaml"
    params:
        labels=as_json(LABELS),
    shell:
        "python -m segsweep images examples --images {input}"
        " --labels-json {params.labels:q} --out {output} > {log} 2>&1"


rule pack_images:
    input:
        images=L.IMAGES_TABLE,
        splits=L.SPLITS,
    output:
        L.DATASET,
    log:
        L.log("pack/{split}"),
    benchmark:
        benchmarked("pack/{split}", lambda w: SPLITS)
    conda:
        "../../envs/preprocess.yaml"
    params:
        size=config["preprocess"]["image_size"],
        labels=as_json(LABELS),
    shell:
        "python -m segsweep images split --images {input.images} --splits {input.splits}"
        " --split {wildcards.split} --size {params.size} --labels-json {params.labels:q}"
        " --out {output} > {log} 2>&1"
