# One training job per run of the sweep, each holding one GPU (`--resources gpu=N` caps them).


rule train:
    input:
        train="results/datasets/train.h5",
        val="results/datasets/val.h5",
    output:
        params="results/runs/{run}/params.yaml",
        log="results/runs/{run}/train_log.csv",
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
    shell:
        "python -m segsweep train --hp-json {params.hp:q} --train {input.train} --val {input.val}"
        " --out results/runs/{wildcards.run} --threads {threads} > {log} 2>&1"
