# Successive halving (the sweep's `budget: {method: halving}`) and the seed-noise floor
# (`confirm`), as steps of the DAG: nothing is decided outside it.
#
# Every configuration (all its folds) trains to the first rung (train_rung), is selected on
# validation at that rung as selection defines it (select_rung), and the rung's decision (a
# checkpoint, results/budget/rung-E.csv) ranks the configurations on those scores: the best go
# on to the next rung, starting from the state their rung left, the rest end there. A run's own
# job (train.smk) then either trains on to train.epochs or ends the run at the rung that pruned
# it; either way its selection, validation tables and the analysis treat it as a result.
#
# A rung's jobs take no decision file as input: a decision made again (the grid grew) then
# retrains nothing that already went further, and the decision keeps promoting what trained
# past it (segsweep.sweep.budget, `trained_further`: the run folders are read for that).


rule train_rung:
    input:
        *TRANSFER_INPUT,
        unpack(rung_start),
        train=L.path(L.DATASET, split="train"),
        val=L.path(L.DATASET, split="val"),
        splits=L.SPLITS,
    output:
        params=L.at_rung(L.RUN_PARAMS),
        log=L.at_rung(L.RUN_LOG),
        index=L.RUNG_INDEX,
        provenance=L.at_rung(L.RUN_PROVENANCE),
        subjects=L.at_rung(L.RUN_SUBJECTS),
        state=L.RUNG_STATE,
    log:
        L.log(L.RUNG_TRAIN_JOB),
    benchmark:
        benchmarked(L.RUNG_TRAIN_JOB, rung_jobs)
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
        " --stop-at {wildcards.epochs} --rung-state {output.state}"
        " --attempt {resources.attempt} --max-attempts {resources.attempts} > {log} 2>&1"


rule select_rung:
    input:
        index=L.RUNG_INDEX,
        subjects=L.at_rung(L.RUN_SUBJECTS),
        val=VALIDATION_DATA,
    output:
        **{name: L.at_rung(table) for name, table in TASK.select_outputs.items()},
        selection=L.at_rung(L.SELECTION),
    log:
        L.log(L.RUNG_SELECT_JOB),
    benchmark:
        benchmarked(L.RUNG_SELECT_JOB, rung_jobs)
    conda:
        "../../envs/train.yaml"
    threads: config["threads"]
    params:
        cfg=as_json(config["selection"]),
        classification=as_json(STUDY_RULES),
        nsd_tolerance=config["metrics"]["nsd_tolerance_mm"],
    shell:
        TASK.select_command


checkpoint rung_decision:
    input:
        unpack(rung_inputs),
    output:
        decision=L.RUNG_DECISION,
    log:
        L.log("budget/rung-{epochs}"),
    benchmark:
        benchmarked("budget/rung-{epochs}", lambda w: [str(e) for e in RUNGS[:-1]])
    conda:
        "../../envs/report.yaml"
    params:
        cfg=CHOICE_CONFIG,
        sweep=SWEEP,
        budget=BUDGET,
        rungs=RUNGS,
        runs=lambda w: [r.run_id for c in entering(w.epochs) for r in CONFIGURATIONS[c]],
    script:
        "../scripts/rung_decision.py"


checkpoint confirm:
    input:
        unpack(confirm_inputs),
    output:
        table=L.CONFIRM,
    log:
        L.log("budget/confirm"),
    benchmark:
        benchmarked("budget/confirm", runs=bool(CONFIRM["top"]))
    conda:
        "../../envs/report.yaml"
    params:
        cfg=CHOICE_CONFIG,
        sweep=SWEEP,
        top=CONFIRM["top"],
        runs=sorted(RUNS),
        reached=lambda w: {c: rung_reached(c) for c in sorted(CONFIGURATIONS)},
    script:
        "../scripts/confirm.py"


rule seed_tables:
    input:
        unpack(choice_inputs),
    output:
        spread=L.SEED_SPREAD,
        comparisons=L.SEED_COMPARISONS,
        winners=L.SEED_WINNERS,
    log:
        L.log("budget/seeds"),
    benchmark:
        benchmarked("budget/seeds", runs=SEEDS)
    conda:
        "../../envs/report.yaml"
    params:
        cfg=CHOICE_CONFIG,
        sweep=SWEEP,
        runs=lambda w: choice_runs(),
    script:
        "../scripts/seed_tables.py"
