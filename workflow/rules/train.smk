# One training job per run of the sweep, each holding one GPU (`--resources gpu=N` caps them).
# A killed job resumes from results/runs/{run}/state/ (not an output, so it survives a rerun).
# A transfer run (`init_from`) also waits for the selection of the run it starts from.
# A failing job is retried `train_retries` times (on SLURM with more time and memory, see
# slurm/config.yaml); the last attempt records the failure as the run's outputs (status "failed"
# in checkpoints/index.json) and succeeds, so the sweep goes on and the report lists the run.
# Every run writes provenance.json; the config hash reaches it through the environment (see the
# Snakefile), not as a param, so that editing the config or the sweep does not retrain runs.


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
        provenance="results/runs/{run}/provenance.json",
    log:
        "logs/train/{run}.log",
    benchmark:
        "benchmarks/train/{run}.tsv"
    retries: config["train_retries"]
    conda:
        "../../envs/train.yaml"
    threads: config["threads"]
    resources:
        gpu=1,
        attempt=lambda wildcards, attempt: attempt,
        attempts=config["train_retries"] + 1,
    params:
        args=train_arguments,
    shell:
        "python -m segsweep train {params.args} --train {input.train} --val {input.val}"
        " --out results/runs/{wildcards.run} --threads {threads}"
        " --attempt {resources.attempt} --max-attempts {resources.attempts} > {log} 2>&1"
