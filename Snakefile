# segsweep: raw 3D images → preprocessing → one training job per sweep combination → selection,
# evaluation → analysis → thesis report (with `task: classification`, 2D radiographs classified
# per study through the same stages). Logic lives in scripts/segsweep; rules only call it.
import os
import shlex
import sys

from snakemake.settings.types import DeploymentMethod
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


# `--config task=classification`: the classification task's defaults over the segmentation ones
# (a config or the command line still overrides them).
if config.get("task") == "classification":

    configfile: "config/classification.yaml"


# The package is importable here and in every job's shell. Without conda, jobs run this very
# interpreter; with `--sdm conda` the rule's environment provides python.
PACKAGE_DIR = os.path.join(workflow.basedir, "scripts")
sys.path.insert(0, PACKAGE_DIR)

from segsweep.tasks import check as check_task, task_of

# The task (segsweep.tasks: what differs between segmentation and classification) fills the
# defaults it decides; the config is validated, and the task refuses what it cannot run.
task_of(config).with_defaults(config)
validate(config, "workflow/schemas/config.schema.yaml")
TASK = check_task(config)
# Nested cross-validation (`split.outer_folds` without `split.outer_fold`): this workflow runs
# each outer fold's workflow (this Snakefile with `split.outer_fold` set) as a module writing
# into its own folders, and pools what their chosen models predicted (workflow/rules/nested.smk).
NESTED = bool(config["split"]["outer_folds"]) and config["split"]["outer_fold"] is None


report: "report/workflow.rst"


_PYTHON_BIN = (
    ""
    if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
    else f"export PATH={shlex.quote(os.path.dirname(sys.executable))}:$PATH; "
)
_PREFIX = (
    f"set -euo pipefail; export PYTHONPATH={shlex.quote(PACKAGE_DIR)}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
    + _PYTHON_BIN
)


if NESTED:

    include: "workflow/rules/nested.smk"

    rule all:
        input:
            L.THESIS_HTML,
            L.THESIS_PDF,
            [L.outer(L.PACKAGE_INDEX, fold) for fold in OUTER_FOLDS],

else:

    include: "workflow/rules/common.smk"

    if TASK.name == "segmentation":

        include: "workflow/rules/data.smk"
        include: "workflow/rules/preprocess.smk"

    else:

        include: "workflow/rules/radiographs.smk"
    include: "workflow/rules/split.smk"
    include: "workflow/rules/train.smk"
    include: "workflow/rules/budget.smk"
    include: "workflow/rules/select.smk"

    if TASK.name == "segmentation":

        include: "workflow/rules/evaluate.smk"
        include: "workflow/rules/analysis.smk"
        include: "workflow/rules/report.smk"

    else:

        include: "workflow/rules/classification.smk"
    include: "workflow/rules/package.smk"

    if HALVING:

        include: "workflow/rules/budget_report.smk"

    # Provenance: every job sees the hash of the config in force (common.smk: with the data's
    # classes, channels and folds) and sweep it was planned with. Not a param: editing the config
    # must not retrain finished runs.
    from segsweep.provenance import config_hash

    shell.prefix(
        _PREFIX + f"export SEGSWEEP_CONFIG_HASH={config_hash(IN_FORCE, SWEEP)}; "
    )

    rule all:
        input:
            # an outer fold of a nested cross-validation: what its chosen model held out
            [L.NESTED_HELD_OUT] if config["split"]["outer_fold"] is not None else [],
            L.PACKAGE_INDEX,
            L.THESIS_HTML,
            L.THESIS_PDF,
            L.THESIS_LATEX,
