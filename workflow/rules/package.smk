# The model packages of the final models (either task; each task's rules write one per final
# model) listed with their checksums in one index.


# Hashing a few zips: on SLURM it runs where Snakemake runs rather than waiting for a node.
rule package_index:
    input:
        lambda w: each(L.PACKAGE, run=final_runs()),
    output:
        L.PACKAGE_INDEX,
    log:
        L.log("package/index"),
    benchmark:
        benchmarked("package/index")
    localrule: True
    conda:
        "../../envs/preprocess.yaml"
    params:
        runs=lambda w: final_runs(),
    script:
        "../scripts/package_index.py"
