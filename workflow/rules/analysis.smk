# Cohort-level analysis: the runs table, hyperparameter tables, statistics and the figures.


rule analysis:
    input:
        selections=expand("results/runs/{run}/selection.json", run=sorted(RUNS)),
        per_patient=expand("results/runs/{run}/val/per_patient.csv", run=sorted(RUNS)),
        final="results/summary/final.csv",
        tests=final_outputs,
    output:
        runs=report(
            "results/summary/runs.csv",
            caption="../../report/runs.rst",
            category="Results",
        ),
        hyperparameters="results/tables/hyperparameters.csv",
        pairs="results/tables/pairs.csv",
        best="results/tables/best_runs.csv",
        final="results/tables/final_per_patient.csv",
        distribution="results/tables/slice_distribution.csv",
        metrics="results/tables/metrics_summary.csv",
        classes="results/tables/class_summary.csv",
        kruskal="results/tables/kruskal.csv",
        tests="results/tables/final_tests.csv",
    log:
        "logs/analysis/analysis.log",
    benchmark:
        "benchmarks/analysis/analysis.tsv"
    conda:
        "../../envs/report.yaml"
    params:
        cfg=as_json(config),
        sweep=as_json(SWEEP),
    shell:
        "python -m segsweep analysis --config-json {params.cfg:q} --sweep-json {params.sweep:q}"
        " --results results > {log} 2>&1"


rule figures:
    input:
        runs="results/summary/runs.csv",
        final="results/summary/final.csv",
        logs=expand("results/runs/{run}/train_log.csv", run=sorted(RUNS)),
        per_slice=expand("results/runs/{run}/val/per_slice.csv", run=sorted(RUNS)),
        selections=expand("results/runs/{run}/selection.json", run=sorted(RUNS)),
        tests=final_outputs,
    output:
        jitter=report(
            expand("results/figures/jitter_{name}.png", name=SWEPT),
            caption="../../report/jitter.rst",
            category="Results",
            subcategory="Hyperparameters",
        ),
        boxplots=report(
            expand("results/figures/boxplot_{split}.png", split=["val", "test"]),
            caption="../../report/boxplot.rst",
            category="Results",
            subcategory="Final models",
        ),
        curves=report(
            "results/figures/training_curves.png",
            caption="../../report/training_curves.rst",
            category="Results",
            subcategory="Final models",
        ),
        histograms=report(
            expand("results/figures/histogram_{split}.png", split=["val", "test"]),
            caption="../../report/histogram.rst",
            category="Results",
            subcategory="Final models",
        ),
        checkpoints=report(
            "results/figures/checkpoint_scores.png",
            caption="../../report/checkpoint_scores.rst",
            category="Results",
            subcategory="Selection",
        ),
    log:
        "logs/analysis/figures.log",
    benchmark:
        "benchmarks/analysis/figures.tsv"
    conda:
        "../../envs/report.yaml"
    params:
        cfg=as_json(config),
        sweep=as_json(SWEEP),
    shell:
        "python -m segsweep figures --config-json {params.cfg:q} --sweep-json {params.sweep:q}"
        " --results results > {log} 2>&1"
