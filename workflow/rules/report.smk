# The thesis document: HTML and PDF from the same Jinja2 templates (shipped in the package).


rule report:
    input:
        unpack(report_qc),
        unpack(report_finals),
        # the analysis tables and figures the thesis shows
        **L.segmentation_thesis_files(
            SWEPT, bool(EXTERNAL), seeds=SEEDS, budget=HALVING, sites=SITES
        ),
        final=L.FINAL,
        splits=L.SPLITS,
        checks=L.SPLITS_CHECKS,
        manifest=L.DATA_MANIFEST,
        dropped=L.DROPPED,
        description=L.DATA_DESCRIPTION,
        records=each(L.INGEST_RECORD, subject=sorted(SUBJECTS)),
        provenance=each(L.RUN_PROVENANCE, run=sorted(RUNS)),
        centre=L.CENTRE_ERROR,
        kept=L.KEPT_FRACTION,
        templates=multiext(
            os.path.join(PACKAGE_DIR, "segsweep/report/templates/thesis"),
            ".html.j2",
            ".css",
            ".js",
        ),
    output:
        html=report(
            L.THESIS_HTML,
            caption="../../report/thesis.rst",
            category="Thesis",
        ),
        pdf=report(
            L.THESIS_PDF,
            caption="../../report/thesis.rst",
            category="Thesis",
        ),
        latex=directory(L.THESIS_LATEX),
    log:
        L.log("report/report"),
    benchmark:
        benchmarked("report/report")
    conda:
        "../../envs/report.yaml"
    params:
        cfg=IN_FORCE,
        sweep=SWEEP,
        runs=sorted(RUNS),
        subjects=sorted(SUBJECTS),
        finals=lambda w: final_runs(),
        members=lambda w: final_members(),
        qc=qc_subjects,
    script:
        "../scripts/report.py"
