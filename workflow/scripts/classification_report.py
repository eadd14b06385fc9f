"""Rule report (classification): the thesis as HTML, PDF and LaTeX, from the rule's inputs."""

import os

from segsweep.logs import logged
from segsweep.report.chapters.classification import THESIS
from segsweep.report.inputs import ReportInputs
from segsweep.report.thesis import write_thesis


def named(prefix):
    """The rule's inputs named `<prefix><name>`, by name."""
    return {k[len(prefix) :]: v for k, v in snakemake.input.items() if k.startswith(prefix)}


with logged(snakemake.log[0]):
    given, params = snakemake.input, snakemake.params

    def by_model(files):
        return dict(zip(params.finals, files, strict=True))

    inputs = ReportInputs(
        config=params.cfg,
        sweep=params.sweep,
        manifest=given.manifest,
        dropped=given.dropped,
        records={},
        splits=given.splits,
        checks=given.checks,
        centre_error=None,
        kept_fraction=None,
        n4_qc={},
        crop_qc={},
        tables=named("table_"),
        figures=named("figure_"),
        final=given.final,
        outlines={},
        unlabelled={},
        provenance=dict(zip(params.runs, given.provenance, strict=True)),
        benchmarks={rule: list(files) for rule, files in named("benchmarks_").items()},
        description=given.description,
        classification={
            "images": given.images,
            "test_per_study": by_model(given.test_per_study),
            "test_per_image": by_model(given.test_per_image),
            "gallery": by_model(given.gallery),
        },
        thesis=THESIS,
    )
    templates = os.path.dirname(given.templates[0])
    output = snakemake.output
    write_thesis(inputs, output.html, output.pdf, output.latex, templates)
