"""Rule report: the thesis as HTML and PDF, from the rule's declared inputs."""

import os

from segsweep.logs import logged
from segsweep.report.inputs import ReportInputs
from segsweep.report.thesis import write_thesis


def named(prefix):
    """The rule's inputs named `<prefix><name>`, by name."""
    return {k[len(prefix) :]: v for k, v in snakemake.input.items() if k.startswith(prefix)}


with logged(snakemake.log[0]):
    given, params = snakemake.input, snakemake.params
    inputs = ReportInputs(
        config=params.cfg,
        sweep=params.sweep,
        manifest=given.manifest,
        dropped=given.dropped,
        records=dict(zip(params.subjects, given.records, strict=True)),
        splits=given.splits,
        checks=given.checks,
        centre_error=given.centre,
        kept_fraction=given.kept,
        n4_qc=dict(zip(params.qc, given.n4_qc, strict=True)),
        crop_qc=dict(zip(params.qc, given.crop_qc, strict=True)),
        tables=named("table_"),
        figures=named("figure_"),
        final=given.final,
        outlines=dict(zip(params.finals, given.outlines, strict=True)),
        unlabelled=dict(zip(params.finals, given.unlabelled, strict=True)),
        provenance=dict(zip(params.runs, given.provenance, strict=True)),
        benchmarks={rule: list(files) for rule, files in named("benchmarks_").items()},
        description=given.description,
        final_qc=dict(zip(params.finals, given.final_qc, strict=True)),
        test_per_patient=dict(zip(params.finals, given.test_per_patient, strict=True)),
        val_per_patient=dict(zip(params.members, given.val_per_patient, strict=True)),
    )
    templates = os.path.dirname(given.templates[0])
    output = snakemake.output
    write_thesis(inputs, output.html, output.pdf, output.latex, templates)
