# Preprocessing per subject: N4 bias correction, then the crop around the joint centre.


rule n4:
    input:
        "results/data/{subject}/image.nii.gz",
    output:
        image="results/n4/{subject}/image.nii.gz",
        field="results/n4/{subject}/bias_field.nii.gz",
        qc=report(
            "results/n4/{subject}/qc.png",
            caption="../../report/n4_qc.rst",
            category="Preprocessing",
            subcategory="N4",
            labels={"subject": "{subject}"},
        ),
    log:
        "logs/n4/{subject}.log",
    benchmark:
        "benchmarks/n4/{subject}.tsv"
    conda:
        "../../envs/preprocess.yaml"
    params:
        cfg=as_json(config["preprocess"]["n4"]),
    shell:
        "python -m segsweep n4 --image {input} --config-json {params.cfg:q}"
        " --out-image {output.image} --out-field {output.field} --out-qc {output.qc}"
        " > {log} 2>&1"


rule crop_image:
    input:
        "results/n4/{subject}/image.nii.gz",
    output:
        image="results/crop/{subject}/image.nii.gz",
        info="results/crop/{subject}/crop.json",
        qc=report(
            "results/crop/{subject}/qc.png",
            caption="../../report/crop_qc.rst",
            category="Preprocessing",
            subcategory="Crop",
            labels={"subject": "{subject}"},
        ),
    log:
        "logs/crop/{subject}.log",
    benchmark:
        "benchmarks/crop/{subject}.tsv"
    conda:
        "../../envs/preprocess.yaml"
    params:
        cfg=as_json(config["preprocess"]["crop"]),
    shell:
        "python -m segsweep crop image --image {input} --config-json {params.cfg:q}"
        " --out-image {output.image} --out-json {output.info} --out-qc {output.qc} > {log} 2>&1"


rule crop_mask:
    input:
        mask="results/data/{subject}/mask.nii.gz",
        info="results/crop/{subject}/crop.json",
    output:
        mask="results/crop/{subject}/mask.nii.gz",
        kept="results/crop/{subject}/mask.json",
    log:
        "logs/crop/{subject}.mask.log",
    benchmark:
        "benchmarks/crop/{subject}.mask.tsv"
    conda:
        "../../envs/preprocess.yaml"
    params:
        labels=as_json(config["data"]["labels"]),
    shell:
        "python -m segsweep crop mask --mask {input.mask} --crop-json {input.info}"
        " --labels-json {params.labels:q} --out-mask {output.mask} --out-json {output.kept}"
        " > {log} 2>&1"


rule crop_tables:
    input:
        infos=lambda w: expand(
            "results/crop/{subject}/{name}.json",
            subject=valid_labelled(w),
            name=["crop", "mask"],
        ),
    output:
        centre="results/crop/centre_error.csv",
        kept="results/crop/kept_fraction.csv",
    log:
        "logs/crop/tables.log",
    benchmark:
        "benchmarks/crop/tables.tsv"
    conda:
        "../../envs/preprocess.yaml"
    params:
        subjects=lambda w: valid_labelled(w),
    shell:
        "python -m segsweep crop tables --crop-dir results/crop --subjects {params.subjects}"
        " --out-centre {output.centre} --out-kept {output.kept} > {log} 2>&1"
