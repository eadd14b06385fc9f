# The thesis document: HTML and PDF from the same Jinja2 templates.


rule report:
    input:
        rules.analysis.output,
        rules.figures.output,
        "results/splits/splits.csv",
        "results/splits/splits_checks.csv",
        "results/data/manifest.csv",
        expand("results/data/{subject}/ingest.json", subject=sorted(SUBJECTS)),
        expand("results/runs/{run}/provenance.json", run=sorted(RUNS)),
        rules.crop_tables.output,
        lambda w: expand(
            "results/final/{run}/{name}",
            run=final_runs(),
            name=["figures", "unlabelled.png", "predictions_native"],
        ),
        lambda w: expand(
            "results/{step}/{subject}/qc.png",
            step=["n4", "crop"],
            subject=qc_subjects(w),
        ),
        templates=multiext(
            os.path.join(workflow.basedir, "report/thesis"), ".html.j2", ".css"
        ),
    output:
        html=report(
            "results/report/thesis.html",
            caption="../../report/thesis.rst",
            category="Thesis",
        ),
        pdf=report(
            "results/report/thesis.pdf",
            caption="../../report/thesis.rst",
            category="Thesis",
        ),
    log:
        "logs/report/report.log",
    benchmark:
        "benchmarks/report/report.tsv"
    conda:
        "../../envs/report.yaml"
    params:
        cfg=as_json(config),
        sweep=as_json(SWEEP),
        templates=lambda w, input: os.path.dirname(input.templates[0]),
        qc=qc_subjects,
    shell:
        "python -m segsweep report --config-json {params.cfg:q} --sweep-json {params.sweep:q}"
        " --results results --templates {params.templates:q}"
        " --out-html {output.html} --out-pdf {output.pdf} --qc-subjects {params.qc}"
        " > {log} 2>&1"
