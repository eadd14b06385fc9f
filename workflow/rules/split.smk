# The patient-level split, shared by both tasks: its unit is the subject (segmentation) or the
# study (classification), grouped by patient.


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
        benchmarked("split/split")
    conda:
        "../../envs/preprocess.yaml"
    params:
        cfg=as_json(IN_FORCE["split"]),
    shell:
        "python -m segsweep split --manifest {input} --config-json {params.cfg:q}"
        " --out {output.splits} --out-audit {output.audit} --out-checks {output.checks}"
        " > {log} 2>&1"
