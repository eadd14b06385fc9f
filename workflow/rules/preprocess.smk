# Preprocessing per subject (segmentation): N4 bias correction, then the crop: each subject's
# centre (from its image alone) and, for labelled subjects, its label extents around it; with
# window_mm: auto one cohort-level plan of the window from the train and val subjects; then the
# crop itself; and the crops normalised and packed into one HDF5 file per split.
from segsweep.channels import channel_names
from segsweep.model.inputs import check as check_inputs
from segsweep.preprocess.crop_plan import AUTO, resolve_centre

# Every run's `inputs` against the packed channels the config names, so that a typo stops
# planning rather than a training job. With `data.channels` unset the names come from the
# images (one channel: `image`), and the training job checks them.
if IN_FORCE["data"]["channels"]:
    _NORMALISE = config["preprocess"]["normalise"]
    _CHANNELS = channel_names(
        IN_FORCE["data"]["channels"],
        len(IN_FORCE["data"]["channels"]),
        _NORMALISE,
        config["preprocess"]["windows"],
    )
    for _run_id, _run in RUNS.items():
        check_inputs(
            _run.params.get("inputs"),
            _CHANNELS,
            _NORMALISE,
            f"sweep: run {_run_id}: inputs",
        )

# preprocess.crop with its centre method resolved (auto: joint for the synthetic knee cohort,
# foreground for brought data)
CROP = {
    **config["preprocess"]["crop"],
    "centre": resolve_centre(
        config["preprocess"]["crop"]["centre"], config["data"]["source"]
    ),
}


# Only a planned window makes the crops wait for the split and the plan.
PLANNED = CROP["window_mm"] == AUTO


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
        benchmarked("n4/{subject}", valid_subjects)
    group:
        "subject"
    conda:
        "../../envs/preprocess.yaml"
    params:
        cfg=as_json(config["preprocess"]["n4"]),
    shell:
        "python -m segsweep n4 --image {input} --config-json {params.cfg:q}"
        " --out-image {output.image} --out-field {output.field} --out-qc {output.qc}"
        " > {log} 2>&1"


rule crop_centre:
    input:
        unpack(
            lambda w: {"mask": L.DATA_MASK} if SUBJECTS[w.subject]["labelled"] else {}
        ),
        image=L.N4_IMAGE,
    output:
        L.CROP_CENTRE,
    log:
        L.log("crop_centre/{subject}"),
    benchmark:
        benchmarked("crop_centre/{subject}", valid_subjects)
    group:
        "subject"
    conda:
        "../../envs/preprocess.yaml"
    params:
        cfg=as_json({key: CROP[key] for key in ("centre", "centre_mm")}),
        labels=as_json(LABELS),
        mask=lambda w, input: (
            f"--mask {shlex.quote(input.mask)}" if "mask" in input.keys() else ""
        ),
    shell:
        "python -m segsweep crop centre --image {input.image} {params.mask}"
        " --labels-json {params.labels:q} --config-json {params.cfg:q}"
        " --out-json {output} > {log} 2>&1"


rule crop_plan:
    input:
        splits=L.SPLITS,
        centres=lambda w: each(L.CROP_CENTRE, subject=valid_labelled(w)),
    output:
        L.CROP_PLAN,
    log:
        L.log("crop_plan"),
    benchmark:
        benchmarked("crop_plan")
    conda:
        "../../envs/preprocess.yaml"
    params:
        subjects=valid_labelled,
        cfg=CROP,
    script:
        "../scripts/crop_plan.py"


rule crop_image:
    input:
        unpack(lambda w: {"plan": L.CROP_PLAN} if PLANNED else {}),
        image=L.N4_IMAGE,
        centre=L.CROP_CENTRE,
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
        benchmarked("crop/{subject}", valid_subjects)
    group:
        "crop"
    conda:
        "../../envs/preprocess.yaml"
    params:
        cfg=as_json(CROP),
        plan=lambda w, input: f"--plan-json {input.plan}" if PLANNED else "",
    shell:
        "python -m segsweep crop image --image {input.image} --centre-json {input.centre}"
        " {params.plan} --config-json {params.cfg:q} --out-image {output.image}"
        " --out-json {output.info} --out-qc {output.qc} > {log} 2>&1"


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
        benchmarked("crop_mask/{subject}", valid_labelled)
    group:
        "crop"
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
        benchmarked("crop_tables")
    conda:
        "../../envs/preprocess.yaml"
    params:
        subjects=valid_labelled,
    script:
        "../scripts/crop_tables.py"


# Training-split statistics and the HDF5 datasets of the crops.


rule normalisation:
    input:
        images=labelled_crop_images,
        splits=L.SPLITS,
    output:
        L.NORMALISATION,
    log:
        L.log("pack/normalisation"),
    benchmark:
        benchmarked("pack/normalisation")
    conda:
        "../../envs/preprocess.yaml"
    params:
        subjects=valid_labelled,
        cfg={
            "normalise": config["preprocess"]["normalise"],
            "windows": config["preprocess"]["windows"],
            "channels": IN_FORCE["data"]["channels"],
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
        benchmarked("pack/{split}", lambda w: SPLITS)
    conda:
        "../../envs/preprocess.yaml"
    params:
        subjects=valid_labelled,
        labels=LABELS,
        volumes=config["preprocess"]["volumes"]
        or any(run.params["model"] == "unet3d" for run in RUNS.values()),
    script:
        "../scripts/pack.py"
