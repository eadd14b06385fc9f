# One training job per run of the sweep, each holding one GPU (`--resources gpu=N` caps them).
# A killed job resumes from results/runs/{run}/state/ (not an output, so it survives a rerun).
# A transfer run (`init_from`) also waits for the selection of the run it starts from.


rule train:
    input:
        unpack(init_source),
        train="results/datasets/train.h5",
        val="results/datasets/val.h5",
    output:
        params="results/runs/{run}/params.yaml",
        log=report(
            "results/runs/{run}/train_log.csv",
            caption="../../report/train_log.rst",
            category="Training",
            labels={"run": "{run}", "table": "training log"},
        ),
        index="results/runs/{run}/checkpoints/index.json",
    log:
        "logs/train/{run}.log",
    benchmark:
        "benchmarks/train/{run}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: config["threads"]
    resources:
        gpu=1,
    params:
        hp=run_params,
        init=init_argument,
    shell:
        "python -m segsweep train --hp-json {params.hp:q} --train {input.train} --val {input.val}"
        " --out results/runs/{wildcards.run} --threads {threads} {params.init} > {log} 2>&1"
