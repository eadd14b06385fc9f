# Nested cross-validation (split.outer_folds: m, split.fractions.test: 0): the workflow of each
# outer fold o is this Snakefile with split.outer_fold = o, a module whose results (but what
# depends on no split: the generated cohort and N4), logs and benchmarks go to results/outer/o/,
# logs/outer/o/ and benchmarks/outer/o/ (L.outer) and whose rules are named outer<o>_<rule>.
# Each outer fold's split tests on its outer fold's patients and plans, normalises, sweeps,
# selects and builds its final models on the other patients only (segsweep.preprocess.split);
# its held_out rule (evaluate.smk) keeps what its chosen model predicted for them. Here the outer
# folds are pooled into the estimate of the procedure and its thesis (segsweep.sweep.nested,
# segsweep.report.nested).
import copy
import json

from segsweep import layout as L
from segsweep.errors import ConfigError
from segsweep.provenance import config_hash
from segsweep.sweep.grammar import load_sweep

if TASK.name != "segmentation":
    raise ConfigError(
        "split.outer_folds",
        config["split"]["outer_folds"],
        "0: nested cross-validation runs the segmentation task",
    )

OUTER_FOLDS = [str(fold) for fold in range(config["split"]["outer_folds"])]

for _fold in OUTER_FOLDS:
    OUTER_CONFIG = copy.deepcopy(config)
    OUTER_CONFIG["split"]["outer_fold"] = int(_fold)
    OUTER = f"outer{_fold}"
    OUTER_RULES = f"outer{_fold}_"

    module:
        name: OUTER
        snakefile:
            os.path.join(workflow.basedir, "Snakefile")
        config:
            OUTER_CONFIG
        replace_prefix:
            L.outer_prefixes(_fold)

    # what depends on no split (L.SHARED_FOLDERS: the synthetic cohort, each subject's N4) is
    # made once, by the first outer fold, and read by all
    if _fold == OUTER_FOLDS[0]:

        use rule * from OUTER as OUTER_RULES*

    else:

        use rule * from OUTER exclude cohort_subject, cohort_manifest, n4 as OUTER_RULES*


rule nested_estimate:
    input:
        [L.outer(L.NESTED_HELD_OUT, fold) for fold in OUTER_FOLDS],
    output:
        patients=L.NESTED_PER_PATIENT,
        summary=L.NESTED_SUMMARY,
        choices=L.NESTED_CHOICES,
    log:
        L.log("nested/estimate"),
    benchmark:
        L.benchmark("nested/estimate")
    conda:
        "../../envs/report.yaml"
    params:
        selection=json.dumps(config["selection"], sort_keys=True),
    shell:
        "python -m segsweep nested estimate --held-out {input}"
        " --selection-json {params.selection:q} --out-patients {output.patients}"
        " --out-summary {output.summary} --out-choices {output.choices} > {log} 2>&1"


rule nested_report:
    input:
        patients=L.NESTED_PER_PATIENT,
        summary=L.NESTED_SUMMARY,
        choices=L.NESTED_CHOICES,
        theses=[L.outer(L.THESIS_HTML, fold) for fold in OUTER_FOLDS],
    output:
        figure=L.NESTED_FIGURE,
        html=report(L.THESIS_HTML, caption="../../report/thesis.rst", category="Thesis"),
        pdf=report(L.THESIS_PDF, caption="../../report/thesis.rst", category="Thesis"),
    log:
        L.log("nested/report"),
    benchmark:
        L.benchmark("nested/report")
    conda:
        "../../envs/report.yaml"
    params:
        cfg=json.dumps(config, sort_keys=True),
    shell:
        "python -m segsweep nested-report --config-json {params.cfg:q}"
        " --patients {input.patients} --summary {input.summary} --choices {input.choices}"
        " --out-figure {output.figure} --out-html {output.html} --out-pdf {output.pdf}"
        " > {log} 2>&1"


# every job sees the hash of the nested config and its sweep (the outer folds' jobs too: the
# modules' own shell prefixes are overridden by this one, set last)
shell.prefix(
    _PREFIX
    + f"export SEGSWEEP_CONFIG_HASH={config_hash(config, load_sweep(config['sweep']))}; "
)
