# The model packages of the final models (either task; each task's rules write one per final
# model) listed with their checksums in one index.


rule package_index:
    input:
        lambda w: each(L.PACKAGE, run=final_runs()),
    output:
        L.PACKAGE_INDEX,
    log:
        L.log("package/index"),
    benchmark:
        benchmarked("package/index")
    conda:
        "../../envs/train.yaml"
    params:
        runs=lambda w: final_runs(),
    script:
        "../scripts/package_index.py"
