# One training job per run of the sweep, each holding one GPU (`--resources gpu=N` caps them).
# A killed job resumes from its state folder (L.RUN_STATE: not an output, so it survives a rerun).
# A run trains and validates on the subjects splits.csv gives it (its fold's, with
# cross-validation), recorded in subjects.json. A transfer run (`init_from`) also waits for the
# selection of the run it starts from: the same fold's run of that configuration.
# A failing job is retried `train_retries` times (on SLURM with more time and memory, see
# slurm/config.yaml); the last attempt records the failure as the run's outputs (status "failed"
# in checkpoints/index.json) and succeeds, so the sweep goes on and the report lists the run.
# Every run writes provenance.json; the config hash reaches it through the environment (see the
# Snakefile), not as a param, so that editing the config or the sweep does not retrain runs.


rule train:
    input:
        *TRANSFER_INPUT,  # a transfer run: what it initialises from
        *RUNG_INPUT,  # under halving: the state of the rung it goes on from or ends at
        train=L.path(L.DATASET, split="train"),
        val=L.path(L.DATASET, split="val"),
        splits=L.SPLITS,
    output:
        params=L.RUN_PARAMS,
        log=report(
            L.RUN_LOG,
            caption="../../report/train_log.rst",
            category="Training",
            labels={"run": "{run}", "table": "training log"},
        ),
        index=L.RUN_INDEX,
        provenance=L.RUN_PROVENANCE,
        subjects=L.RUN_SUBJECTS,
    log:
        L.log("train/{run}"),
    benchmark:
        benchmarked("train/{run}", lambda w: sorted(RUNS))  # confirmation seeds: not listed
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
        state=lambda w, output: run_state(output.index),
    shell:
        "python -m segsweep train {params.args} --train {input.train} --val {input.val}"
        " --splits {input.splits} --params {output.params} --log {output.log}"
        " --index {output.index} --provenance {output.provenance}"
        " --subjects {output.subjects} --state {params.state} --threads {threads}"
        " --attempt {resources.attempt} --max-attempts {resources.attempts} > {log} 2>&1"
