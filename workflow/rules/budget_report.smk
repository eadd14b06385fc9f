# What successive halving spent and saved: the rung table, each configuration's budget and the
# figure of validation curves against epochs with the rungs (included only under halving).


rule budget_summary:
    input:
        unpack(rung_decisions),
        unpack(survivors_selected),
        logs=each(L.RUN_LOG, run=sorted(RUNS)),
        provenance=each(L.RUN_PROVENANCE, run=sorted(RUNS)),
    output:
        rungs=L.BUDGET_RUNGS,
        configurations=L.BUDGET_CONFIGURATIONS,
        figure=L.BUDGET_FIGURE,
    log:
        L.log("budget/summary"),
    benchmark:
        benchmarked("budget/summary")
    conda:
        "../../envs/report.yaml"
    params:
        cfg=as_json(CHOICE_CONFIG),
        sweep=as_json(SWEEP),
    shell:
        "python -m segsweep budget --config-json {params.cfg:q} --sweep-json {params.sweep:q}"
        " --out-rungs {output.rungs}"
        " --out-configurations {output.configurations} --out-figure {output.figure}"
        " > {log} 2>&1"
