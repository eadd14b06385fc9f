# segsweep: raw 3D images → preprocessing → one training job per sweep combination → selection,
# evaluation → analysis → thesis report. Logic lives in scripts/segsweep; rules only call it.
import os
import sys

from snakemake.utils import min_version, validate


min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


report: "report/workflow.rst"


# Every job's shell runs this interpreter and finds the package (a conda env, when used, puts
# its own bin first); set once here so each rule's command stays short.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (os.path.join(workflow.basedir, "scripts"), os.environ.get("PYTHONPATH")) if p
)
os.environ["PATH"] = os.pathsep.join(
    (os.path.dirname(sys.executable), os.environ.get("PATH", ""))
)


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/split.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        "results/report/thesis.html",
        "results/report/thesis.pdf",
