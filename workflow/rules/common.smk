# Parse-time tables the rules draw on: the subjects (from the synthetic plan or the manifest)
# and the runs of the sweep. Kept cheap: this code runs again in every cluster job.
import csv
import json
import shlex
from pathlib import Path

import jsonschema
import yaml

from segsweep.errors import ConfigError
from segsweep.sweep import expand_sweep, load_sweep, swept_names


wildcard_constraints:
    subject=r"[^/]+",
    run=r"[^/]+",
    split=r"train|val|test",


SPLITS = ["train", "val", "test"]


def _load_subjects():
    """subject_id → raw paths, source and whether it is labelled."""
    data = config["data"]
    if data["source"] == "synthetic":
        from segsweep.cohort import plan_cohort

        table = {}
        for spec in plan_cohort(data["synthetic"]):
            folder = f"results/cohort/{spec.subject_id}"
            table[spec.subject_id] = {
                "image": f"{folder}/image.mhd",
                "mask": f"{folder}/mask.mhd" if spec.labelled else "",
                "roi": f"{folder}/roi.mhd" if spec.labelled else "",
                "source": spec.source,
                "perspective": spec.perspective,
                "labelled": spec.labelled,
            }
        return table
    if not data["manifest"]:
        raise ConfigError(
            "data.manifest", None, "a CSV path when data.source is 'manifest'"
        )
    manifest = Path(data["manifest"])
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    table = {}
    for row in rows:
        sid = row.get("subject_id", "")
        if not sid or not row.get("image"):
            continue  # reported with the file and row by the manifest check in ingest
        mask = row.get("mask") or ""
        roi = row.get("roi") or ""
        table[sid] = {
            "image": str(manifest.parent / row["image"]),
            "mask": str(manifest.parent / mask) if mask else "",
            "roi": str(manifest.parent / roi) if roi else "",
            "source": row.get("source", ""),
            "perspective": row.get("perspective", ""),
            "labelled": bool(mask),
        }
    return table


def _validate_train(params):
    try:
        jsonschema.validate(params, _TRAIN_SCHEMA)
    except jsonschema.ValidationError as error:
        key = ".".join(str(p) for p in error.absolute_path) or "train"
        raise ConfigError(f"sweep: {key}", error.instance, error.message) from None


SUBJECTS = _load_subjects()
LABELLED = sorted(s for s, row in SUBJECTS.items() if row["labelled"])
SWEEP = load_sweep(config["sweep"])
validate(SWEEP, "../schemas/sweep.schema.yaml")
with open(Path(workflow.basedir) / "workflow/schemas/config.schema.yaml") as _handle:
    _TRAIN_SCHEMA = yaml.safe_load(_handle)["properties"]["train"]
RUNS = {
    run.run_id: run for run in expand_sweep(SWEEP, config["train"], _validate_train)
}
SWEPT = swept_names(SWEEP)


def as_json(value):
    """A config section as one shell-quotable JSON argument."""
    return json.dumps(value, sort_keys=True)


def mhd_pair(path):
    """An MHD header and the ZRAW voxel file it points to."""
    return [path, path[: -len(".mhd")] + ".zraw"] if path.endswith(".mhd") else [path]


def label_paths(wildcards):
    """`--mask M --roi R` for ingest's record, for those the subject has."""
    row = SUBJECTS[wildcards.subject]
    return " ".join(
        f"--{key} {shlex.quote(row[key])}" for key in ("mask", "roi") if row[key]
    )


def raw_image(wildcards):
    return mhd_pair(SUBJECTS[wildcards.subject]["image"])


def raw_mask(wildcards):
    return mhd_pair(SUBJECTS[wildcards.subject]["mask"])


def run_params(wildcards):
    return as_json({**RUNS[wildcards.run].params, "run_id": wildcards.run})


def final_runs():
    """The final models, known once `choose_final` has run (a Snakemake checkpoint)."""
    with open(checkpoints.choose_final.get().output.table) as handle:
        return [row["run_id"] for row in csv.DictReader(handle)]


def final_outputs(wildcards):
    return expand(
        "results/final/{run}/test/{table}.csv",
        run=final_runs(),
        table=["per_slice", "per_patient"],
    )
