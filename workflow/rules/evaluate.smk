# Selection of every run's checkpoint on validation and its validation metrics (one job per run:
# a sweep of thousands of runs plans faster with fewer jobs), the choice of the final models,
# and — only for those — the test set. No other rule reads test data.


rule select:
    input:
        index="results/runs/{run}/checkpoints/index.json",
        val="results/datasets/val.h5",
    output:
        selection="results/runs/{run}/selection.json",
        per_slice="results/runs/{run}/val/per_slice.csv",
        per_patient="results/runs/{run}/val/per_patient.csv",
    log:
        "logs/select/{run}.log",
    benchmark:
        "benchmarks/select/{run}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: config["threads"]
    params:
        cfg=as_json(config["selection"]),
    shell:
        "python -m segsweep select --run-dir results/runs/{wildcards.run} --val {input.val}"
        " --config-json {params.cfg:q} --out {output.selection} --threads {threads} > {log} 2>&1"
        " && python -m segsweep evaluate --run-dir results/runs/{wildcards.run}"
        " --selection {output.selection} --data {input.val} --split val"
        " --out-dir results/runs/{wildcards.run}/val --threads {threads} >> {log} 2>&1"


checkpoint choose_final:
    input:
        selections=expand("results/runs/{run}/selection.json", run=sorted(RUNS)),
        per_patient=expand("results/runs/{run}/val/per_patient.csv", run=sorted(RUNS)),
    output:
        table=report(
            "results/summary/final.csv",
            caption="../../report/final.rst",
            category="Results",
        ),
    log:
        "logs/final/choose.log",
    benchmark:
        "benchmarks/final/choose.tsv"
    conda:
        "../../envs/report.yaml"
    params:
        cfg=as_json(config),
        sweep=as_json(SWEEP),
    shell:
        "python -m segsweep final --config-json {params.cfg:q} --sweep-json {params.sweep:q}"
        " --results results --out {output.table} > {log} 2>&1"


rule final_test:
    input:
        unpack(final_test_data),
        final="results/summary/final.csv",
        selection="results/runs/{run}/selection.json",
        test="results/datasets/test.h5",
    output:
        per_slice="results/final/{run}/test/per_slice.csv",
        per_patient=report(
            "results/final/{run}/test/per_patient.csv",
            caption="../../report/final_per_patient.rst",
            category="Results",
            subcategory="Final models",
            labels={"run": "{run}", "table": "per-patient test scores"},
        ),
        predictions=directory("results/final/{run}/predictions"),
        native=directory("results/final/{run}/predictions_native"),
        figures=directory("results/final/{run}/figures"),
    log:
        "logs/final/{run}.log",
    benchmark:
        "benchmarks/final/{run}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: config["threads"]
    params:
        labels=as_json(config["data"]["labels"]),
        patients=" ".join(shlex.quote(p) for p in config["report"]["patients"]),
    shell:
        "python -m segsweep evaluate --run-dir results/runs/{wildcards.run}"
        " --selection {input.selection} --data {input.test} --split test"
        " --out-dir results/final/{wildcards.run}/test"
        " --predictions-dir {output.predictions} --crop-dir results/crop"
        " --figures-dir {output.figures} --patients {params.patients}"
        " --native-dir {output.native} --data-dir results/data"
        " --labels-json {params.labels:q} --threads {threads} > {log} 2>&1"


rule predict_unlabelled:
    input:
        unpack(unlabelled_data),
        selection="results/runs/{run}/selection.json",
        final="results/summary/final.csv",
        stats="results/datasets/normalisation.json",
    output:
        predictions=directory("results/final/{run}/unlabelled"),
        figure=report(
            "results/final/{run}/unlabelled.png",
            caption="../../report/unlabelled.rst",
            category="Results",
            subcategory="Unlabelled subjects",
            labels={"run": "{run}", "figure": "unlabelled overlay"},
        ),
    log:
        "logs/final/{run}_unlabelled.log",
    benchmark:
        "benchmarks/final/{run}_unlabelled.tsv"
    conda:
        "../../envs/train.yaml"
    threads: config["threads"]
    params:
        labels=as_json(config["data"]["labels"]),
        subjects=valid_unlabelled,
    shell:
        "python -m segsweep export --run-dir results/runs/{wildcards.run}"
        " --selection {input.selection} --stats {input.stats} --subjects {params.subjects}"
        " --labels-json {params.labels:q} --out-dir {output.predictions}"
        " --figure {output.figure} --threads {threads} > {log} 2>&1"
