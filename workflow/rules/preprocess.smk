# Preprocessing per subject: N4 bias correction, then the crop around the joint centre.


rule n4:
    input:
        L.DATA_IMAGE,
    output:
        image=L.N4_IMAGE,
        field=L.N4_FIELD,
        qc=report(
            L.N4_QC,
            caption="../../report/n4_qc.rst",
            category="Preprocessing",
            subcategory="N4",
            labels={"subject": "{subject}"},
        ),
    log:
        L.log("n4/{subject}"),
    benchmark:
        L.benchmark("n4/{subject}")
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
        L.N4_IMAGE,
    output:
        image=L.CROP_IMAGE,
        info=L.CROP_RECORD,
        qc=report(
            L.CROP_QC,
            caption="../../report/crop_qc.rst",
            category="Preprocessing",
            subcategory="Crop",
            labels={"subject": "{subject}"},
        ),
    log:
        L.log("crop/{subject}"),
    benchmark:
        L.benchmark("crop/{subject}")
    conda:
        "../../envs/preprocess.yaml"
    params:
        cfg=as_json(config["preprocess"]["crop"]),
    shell:
        "python -m segsweep crop image --image {input} --config-json {params.cfg:q}"
        " --out-image {output.image} --out-json {output.info} --out-qc {output.qc} > {log} 2>&1"


rule crop_mask:
    input:
        mask=L.DATA_MASK,
        info=L.CROP_RECORD,
    output:
        mask=L.CROP_MASK,
        kept=L.CROP_MASK_RECORD,
    log:
        L.log("crop_mask/{subject}"),
    benchmark:
        L.benchmark("crop_mask/{subject}")
    conda:
        "../../envs/preprocess.yaml"
    params:
        labels=as_json(LABELS),
    shell:
        "python -m segsweep crop mask --mask {input.mask} --crop-json {input.info}"
        " --labels-json {params.labels:q} --out-mask {output.mask} --out-json {output.kept}"
        " > {log} 2>&1"


rule crop_tables:
    input:
        crop_records=lambda w: each(L.CROP_RECORD, subject=valid_labelled(w)),
        mask_records=lambda w: each(L.CROP_MASK_RECORD, subject=valid_labelled(w)),
    output:
        centre=L.CENTRE_ERROR,
        kept=L.KEPT_FRACTION,
    log:
        L.log("crop_tables"),
    benchmark:
        L.benchmark("crop_tables")
    conda:
        "../../envs/preprocess.yaml"
    params:
        subjects=valid_labelled,
    script:
        "../scripts/crop_tables.py"
