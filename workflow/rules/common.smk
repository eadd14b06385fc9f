# Parse-time tables the rules draw on: the subjects (from the synthetic plan or the manifest)
# and the runs of the sweep, and the input functions. Every path comes from segsweep.layout (L).
# Kept cheap: this code runs again in every cluster job.
import copy
import csv
import json
import os
import re
import shlex
from pathlib import Path

import jsonschema

from segsweep import layout as L
from segsweep.config_schema import section
from segsweep.errors import ConfigError
from segsweep.io.images import data_files
from segsweep.preprocess.split import labelled_sites
from segsweep.sweep.budget import budget_of, sweep_rungs
from segsweep.sweep.grammar import (
    configurations,
    confirmation_runs,
    load_sweep,
    seed_noise,
    swept_names,
    sweep_runs,
)


wildcard_constraints:
    subject=r"[^/]+",
    run=r"[^/]+",
    epochs=r"\d+",
    split=r"train|val|test",
    name=r"[^/]+",


SPLITS = ["train", "val", "test"]
FINAL_SPLITS = ["val", "test"]


def _in_force(read):
    """The config in force: a copy of the validated config (which is never changed after
    validation) with the classes and channels read (data.labels/channels, else the dataset's or
    the synthetic cohort's) and, with cross-validation, a dataset's own folds (a MONAI
    datalist's) or, with `folds: by_source`, one fold per site (`split.fold_sites`, in fold
    order). Every stage is handed this one, and the provenance hashes it."""
    in_force = copy.deepcopy(config)
    in_force["data"]["labels"] = read["labels"]
    in_force["data"]["channels"] = read["channels"]
    if in_force["split"]["folds"] == "by_source":
        # leave-one-site-out: fold i holds out the i-th site with labelled subjects
        in_force["split"]["fold_sites"] = labelled_sites(SUBJECTS)
        in_force["split"]["folds"] = len(in_force["split"]["fold_sites"])
    elif in_force["split"]["folds"] and read.get("folds"):
        in_force["split"]["folds"] = read["folds"]
    return in_force


# The data as the task plans it (TASK: the Snakefile's, segsweep.tasks): subject id → its raw
# files for the per-subject jobs (none under classification, whose images are read in one job),
# and the classes, channels and folds read.
SUBJECTS, DATA_READ = TASK.read_data()(config["data"])
IN_FORCE = _in_force(DATA_READ)
# two or more sites (the manifest's source) with labelled subjects: the thesis shows the final
# models' test patients by site
SITES = (
    len({s["source"] for s in SUBJECTS.values() if s["labelled"] and s.get("source")})
    >= 2
)
# The classes in the order the packed masks hold them (their channels) and every stage sees
# them: by name.
LABELS = dict(sorted(DATA_READ["labels"].items()))


def _validate_train(params):
    """One run's hyperparameters against the train schema (one compiled validator: a sweep
    may hold thousands of runs)."""
    try:
        _TRAIN_VALIDATOR.validate(params)
    except jsonschema.ValidationError as error:
        key = ".".join(str(p) for p in error.absolute_path) or "train"
        raise ConfigError(f"sweep: {key}", error.instance, error.message) from None


SWEEP = load_sweep(config["sweep"])
validate(SWEEP, "../schemas/sweep.schema.yaml")
_TRAIN_SCHEMA = section("train")
_TRAIN_VALIDATOR = jsonschema.validators.validator_for(_TRAIN_SCHEMA)(_TRAIN_SCHEMA)
RUNS = {run.run_id: run for run in sweep_runs(IN_FORCE, SWEEP, _validate_train)}
TASK.check(config, RUNS.values())  # every run's model and early stopping metric too
CONFIGURATIONS = configurations(list(RUNS.values()))  # id → its runs (k with folds)
FOLDS = IN_FORCE["split"]["folds"]


# The sweep's training budget (segsweep.sweep.budget): with `method: halving` every
# configuration trains to the first rung, and each rung's decision (a checkpoint, budget.smk)
# sends the best on to the next.
BUDGET = budget_of(SWEEP)
RUNGS = sweep_rungs(SWEEP, list(RUNS.values()), TASK.name)
HALVING = len(RUNGS) > 1
# The seed-noise floor: the runs that would retrain each setting (a configuration without its
# seed) with `confirm.seeds` more seeds; the confirm checkpoint (budget.smk) picks the top ones.
CONFIRM = {"top": 0, "seeds": 2, **(SWEEP.get("confirm") or {})}
CONFIRMING = confirmation_runs(IN_FORCE, SWEEP, list(RUNS.values()))
# The thesis's seed-noise section: with a confirmation, or with several seeds per setting.
SEEDS = seed_noise(SWEEP)
EVERY_RUN = {
    **RUNS,
    **{run.run_id: run for runs in CONFIRMING.values() for run in runs},
}
# The validation table that scores configurations, for the final models and the analysis
# alike (segmentation: per patient, or per slice at slice level, only then do the cohort-level
# rules read every run's per-slice table; classification: per study or per image).
SCORED = TASK.scored(config["selection"])
SLICE_LEVEL = SCORED == L.VAL_PER_SLICE
SWEPT = swept_names(SWEEP)
# name → folder of an external method's predictions (final.external)
EXTERNAL = config["final"]["external"]
# What choosing the final models reads (segsweep.sweep.final with the task's scorer): its
# runs, the selection, n_best and group_by, so adding an external method or editing the report
# reruns neither the choice nor the final models' test.
CHOICE_CONFIG = {
    "task": config["task"],
    "train": config["train"],
    "split": {"folds": FOLDS},
    "data": {"labels": IN_FORCE["data"]["labels"]},
    "selection": config["selection"],
    "final": {k: config["final"][k] for k in ("n_best", "group_by")},
}
# The config the analysis and figures read: of the report's keys only the pairs it tabulates,
# so editing its title, author or patients reruns only the report. Its sections in a fixed
# order: a config file that gains a section (the schema's defaults fill those it lacks, after
# the others) reads the same.
ANALYSIS_CONFIG = dict(
    sorted({**IN_FORCE, "report": {"pairs": config["report"]["pairs"]}}.items())
)
# What a classifier's selection and final test read of the classification section (the
# bootstrap and the gallery are the analysis's and the final test's own params).
STUDY_RULES = {
    k: config["classification"][k] for k in ("study_probability", "threshold")
}


def as_json(value):
    """A config section as one shell-quotable JSON argument."""
    return json.dumps(value, sort_keys=True)


def each(pattern, **wildcards):
    """`pattern` for every value of one wildcard, e.g. each(L.SELECTION, run=runs)."""
    ((name, values),) = wildcards.items()
    return [L.path(pattern, **{name: value}) for value in values]


def _existing(paths):
    """Brought files are inputs only if they exist: a missing one is reported by ingest's check
    (naming the subject), where Snakemake would stop the whole DAG."""
    if config["data"]["source"] == "synthetic":
        return paths
    return [p for p in paths if os.path.exists(p)]


def _quoted(paths):
    return " ".join(shlex.quote(p) for p in paths)


def raw_image(wildcards):
    """Every channel's image file (with its ZRAW voxel file)."""
    row = SUBJECTS[wildcards.subject]
    return _existing([f for image in row["images"] for f in data_files(image)])


def raw_mask(wildcards):
    """The label map, or the one-file-per-class masks, of a labelled subject."""
    row = SUBJECTS[wildcards.subject]
    masks = list(row["class_masks"].values()) or [row["mask"]]
    return _existing([f for mask in masks if mask for f in data_files(mask)])


def image_args(wildcards):
    return f"--image {_quoted(SUBJECTS[wildcards.subject]['images'])}"


def mask_args(wildcards):
    """`--mask M` or one `--class-mask NAME=PATH` per class."""
    row = SUBJECTS[wildcards.subject]
    if row["class_masks"]:
        return " ".join(
            f"--class-mask {shlex.quote(f'{name}={path}')}"
            for name, path in row["class_masks"].items()
        )
    return f"--mask {shlex.quote(row['mask'])}" if row["mask"] else ""


def check_args(wildcards):
    """Everything ingest's check records about a subject, as command-line arguments."""
    row = SUBJECTS[wildcards.subject]
    args = [image_args(wildcards), mask_args(wildcards)]
    args += [
        f"--{key} {shlex.quote(row[key])}"
        for key in ("roi", "source", "perspective")
        if row[key]
    ]
    args.append(f"--extra-json {shlex.quote(as_json(row['extra']))}")
    return " ".join(a for a in args if a)


def studies_source(wildcards):
    """What the studies stage reads: the synthetic cohort's manifest, or the brought manifest CSV
    (a MURA folder is read as it lies, not an input file)."""
    if config["data"]["source"] == "synthetic":
        return [L.RADIOGRAPHS_MANIFEST]
    manifest = config["data"]["manifest"]
    if not manifest:
        raise ConfigError(
            "data.manifest",
            None,
            "a manifest CSV (image, label, study_id, patient_id) or a MURA folder"
            " when data.source is 'manifest'",
        )
    return [manifest] if os.path.isfile(manifest) else []


STUDIES_MANIFEST = (
    L.RADIOGRAPHS_MANIFEST
    if config["data"]["source"] == "synthetic"
    else config["data"]["manifest"]
)


def validated(wildcards):
    """A subject's ingest record, once the data_manifest checkpoint has gathered every
    subject's check into one table: no subject's data is made before all are checked, so one
    run names every problem. Not a file of the checkpoint's: a new subject reruns the table,
    not every subject's ingest."""
    checkpoints.data_manifest.get()
    return L.path(L.INGEST_RECORD, subject=wildcards.subject)


def valid_subjects(wildcards):
    """Subjects that passed validation: all of them, unless `data.on_invalid: skip`, then
    those the data manifest (a checkpoint) lists as valid."""
    if config["data"]["on_invalid"] != "skip":
        return sorted(SUBJECTS)
    with open(checkpoints.data_manifest.get().output.manifest, newline="") as handle:
        return sorted(
            row["subject_id"]
            for row in csv.DictReader(handle)
            if row["valid"] == "True"
        )


def valid_labelled(wildcards):
    """The labelled subjects among the valid ones (they make up train/val/test)."""
    return [s for s in valid_subjects(wildcards) if SUBJECTS[s]["labelled"]]


def valid_unlabelled(wildcards):
    """The unlabelled subjects among the valid ones (predicted by the final models)."""
    return [s for s in valid_subjects(wildcards) if not SUBJECTS[s]["labelled"]]


def qc_subjects(wildcards):
    """The subjects shown in the report's N4 and crop QC figures: the first valid labelled
    subject of each source."""
    first = {}
    for subject in valid_labelled(wildcards):
        first.setdefault(SUBJECTS[subject]["source"], subject)
    return sorted(first.values())


def labelled_crop_images(wildcards):
    """The cropped images of the valid labelled subjects (the splits hold them)."""
    return each(L.CROP_IMAGE, subject=valid_labelled(wildcards))


def labelled_crop_masks(wildcards):
    return each(L.CROP_MASK, subject=valid_labelled(wildcards))


def final_test_data(wildcards):
    """What scoring a final model in native space reads of each valid labelled subject: its
    crop and crop/ingest records (to undo the crop) and its original masks and roi."""
    subjects = valid_labelled(wildcards)
    originals = [
        path
        for s in subjects
        for original in [
            SUBJECTS[s]["mask"],
            SUBJECTS[s]["roi"],
            *SUBJECTS[s]["class_masks"].values(),
        ]
        if original
        for path in data_files(original)
    ]
    return {
        "crops": each(L.CROP_IMAGE, subject=subjects),
        "crop_records": each(L.CROP_RECORD, subject=subjects),
        "ingest_records": each(L.INGEST_RECORD, subject=subjects),
        "originals": _existing(originals),
    }


def package_data(wildcards):
    """What packaging a final model reads: the train and val split files (its training
    subjects' slices, the intensity reference, and its folds' validation patients', the QC
    calibration; never the test set) and the valid labelled subjects' crop and ingest records
    (to take the validation patients' maps back to their geometry)."""
    subjects = valid_labelled(wildcards)
    return {
        "datasets": [L.path(L.DATASET, split=split) for split in ("train", "val")],
        "crop_records": each(L.CROP_RECORD, subject=subjects),
        "ingest_records": each(L.INGEST_RECORD, subject=subjects),
    }


def unlabelled_data(wildcards):
    """The crops and records of the valid unlabelled subjects, for their predictions."""
    subjects = valid_unlabelled(wildcards)
    return {
        "crops": each(L.CROP_IMAGE, subject=subjects),
        "crop_records": each(L.CROP_RECORD, subject=subjects),
        "ingest_records": each(L.INGEST_RECORD, subject=subjects),
    }


def init_source(wildcards):
    """A transfer run depends on the run it initialises from, through its selection.json: the
    configuration `init_from` names, trained on the same fold (so no validation subject of the
    fold has trained the weights it starts from), or a run of another workflow (its
    selection.json, e.g. pretrained on another dataset), or a checkpoint file."""
    run = EVERY_RUN[wildcards.run]
    source = run.params.get("init_from")
    if not source:
        return {}
    if source in CONFIGURATIONS:
        (source_run,) = [r for r in CONFIGURATIONS[source] if r.fold == run.fold]
        return {
            "init": L.path(L.SELECTION, run=source_run.run_id),
            "init_index": L.path(L.RUN_INDEX, run=source_run.run_id),
        }
    if Path(source).is_file() and Path(source).name == Path(L.SELECTION).name:
        # a run of another workflow (another dataset): its selected checkpoint
        index = L.under(Path(source).parent, L.RUN_INDEX, base=L.RUN_DIR)
        return {"init": source, "init_index": str(index)}
    if Path(source).is_file():
        return {"init_checkpoint": source}
    raise ConfigError(
        f"run {wildcards.run}: init_from",
        source,
        "a configuration of the sweep, a run's selection.json or a checkpoint file",
    )


# The train rule's input function, only where a run of the sweep initialises from another: it
# gives the other runs nothing, and each call costs planning time in every job of a large sweep.
TRANSFER_INPUT = (
    [unpack(init_source)]
    if any(run.params.get("init_from") for run in EVERY_RUN.values())
    else []
)


def train_arguments(wildcards, input):
    """The run's hyperparameters as JSON and, for a transfer run, what it initialises from;
    under halving the state it starts from and, for a run its configuration's rungs pruned,
    the epochs it ends at (a rung's own job: the rung's epochs, given by its rule)."""
    hp = as_json({**EVERY_RUN[wildcards.run].params, "run_id": wildcards.run})
    arguments = f"--hp-json {shlex.quote(hp)}"
    if "init" in input.keys():
        arguments += f" --init-selection {shlex.quote(input.init)}"
        arguments += f" --init-index {shlex.quote(input.init_index)}"
    elif "init_checkpoint" in input.keys():
        arguments += f" --init-checkpoint {shlex.quote(input.init_checkpoint)}"
    if "start" in input.keys():
        arguments += f" --from-state {shlex.quote(input.start)}"
    if "start" in input.keys() and "epochs" not in wildcards.keys():
        ends = rung_reached(EVERY_RUN[wildcards.run].configuration)
        if ends < RUNGS[-1]:
            arguments += f" --stop-at {ends}"
    return arguments


# The split files that hold a run's validation patients: val.h5, and with folds also train.h5
# (a fold's validation patients come from both). The same for every run: a list, not an input
# function, since each call of one costs planning time in every job of a large sweep.
VALIDATION_DATA = each(L.DATASET, split=["train", "val"] if FOLDS else ["val"])


def model_runs(wildcards):
    """The runs that make up a final model: its configuration's run, or its fold runs (their
    selections and checkpoint indices, in fold order)."""
    runs = [run.run_id for run in CONFIGURATIONS[wildcards.run]]
    return {
        "selections": each(L.SELECTION, run=runs),
        "indices": each(L.RUN_INDEX, run=runs),
    }


def final_runs():
    """The final models, known once `choose_final` has run (a Snakemake checkpoint)."""
    with open(checkpoints.choose_final.get().output.table) as handle:
        return [row["run_id"] for row in csv.DictReader(handle)]


def final_members():
    """The runs of the final models (each model's runs in fold order, models in the order of
    `final_runs()`)."""
    return [run.run_id for model in final_runs() for run in CONFIGURATIONS[model]]


# the test table of a final model that its results report: its best fold's under
# `final.model: best_fold` with cross-validation, else its own (the fold ensemble's)
REPORTED_TEST = (
    L.BEST_FOLD_PER_PATIENT
    if config["final"]["model"] == "best_fold" and FOLDS
    else L.TEST_PER_PATIENT
)


def run_state(index):
    """A run's state folder (`L.RUN_STATE`, deliberately no output) beside its checkpoint index
    (`L.RUN_INDEX` or `L.RUNG_INDEX`), in whichever results folder the rule writes (an outer
    fold's, in a nested cross-validation)."""
    return str(Path(index).parent.parent / Path(L.RUN_STATE).name)


def final_tables(wildcards):
    """The tables of the final models: the per-slice validation tables of their runs (in the
    order of `final_members()`) and their test tables, in the order of `final_runs()` (with
    folds also those of each model's best fold)."""
    models = final_runs()
    tables = {
        "val_per_slice": each(L.VAL_PER_SLICE, run=final_members()),
        "test_per_slice": each(L.TEST_PER_SLICE, run=models),
        "test_per_patient": each(L.TEST_PER_PATIENT, run=models),
    }
    if FOLDS:
        tables["best_per_slice"] = each(L.BEST_FOLD_PER_SLICE, run=models)
        tables["best_per_patient"] = each(L.BEST_FOLD_PER_PATIENT, run=models)
    return tables


def report_qc(wildcards):
    """The N4 and crop figures of the QC subjects, which the thesis shows."""
    qc = qc_subjects(wildcards)
    return {"n4_qc": each(L.N4_QC, subject=qc), "crop_qc": each(L.CROP_QC, subject=qc)}


def report_finals(wildcards):
    """What the thesis shows of the final models (outlines, unlabelled predictions, the QC of
    their test patients against their test Dice, their test and out-of-fold validation tables,
    by site), and the runtime of every job (Snakemake's
    benchmarks, by rule)."""
    runs = final_runs()
    return {
        "outlines": each(L.OUTLINES, run=runs),
        "unlabelled": each(L.UNLABELLED_FIGURE, run=runs),
        "final_qc": each(L.FINAL_QC, run=runs),
        "test_per_patient": each(L.TEST_PER_PATIENT, run=runs),
        "val_per_patient": each(L.VAL_PER_PATIENT, run=final_members()),
        **{
            f"benchmarks_{rule}": files for rule, files in benchmarks(wildcards).items()
        },
    }


# benchmark pattern → its rule's jobs in this workflow, declared where each rule is written (its
# `benchmark:` is `benchmarked(...)`), for the report's runtime table.
BENCHMARK_JOBS = {}
# a wildcard in a pattern, with the workflow's constraints where Snakemake has added them
_WILDCARD = re.compile(r"\{(\w+)(,[^{}]*)?\}")


def _job_file(pattern, value):
    """One job's benchmark file: `value` fills the one wildcard of `pattern`, or is a mapping
    of its wildcards' values."""
    if isinstance(value, dict):
        return L.path(pattern, **value)
    return _WILDCARD.sub(lambda _: value, pattern)


def benchmarked(name, jobs=None, runs=True):
    """A rule's benchmark file, `layout.benchmark(name)`, and the jobs it runs: `jobs(wildcards)`
    gives, for each job, the value of the one wildcard in `name`, or a mapping of its
    wildcards' values (a rule without one runs one job); `runs=False` for a rule this workflow
    holds but does not run here."""
    pattern = L.benchmark(name)
    if _WILDCARD.search(pattern) and jobs is None:
        raise ValueError(f"benchmark {name}: say which jobs its rule runs (jobs=)")
    if pattern in BENCHMARK_JOBS:
        raise ValueError(f"benchmark {name}: declared by two rules")
    BENCHMARK_JOBS[pattern] = jobs if runs else False
    return pattern


def _declared(rule, benchmark):
    """(rule name, benchmark) as this workflow declared them; in an outer fold of a nested
    cross-validation (nested.smk) its rules are renamed outer<o>_<rule> and their benchmarks
    moved under benchmarks/outer/<o>/, and another outer fold's rules give (None, None).
    """
    if config["split"]["outer_fold"] is None or not workflow.modules:  # not a module
        return rule, benchmark
    fold = str(config["split"]["outer_fold"])
    if not rule.startswith(f"outer{fold}_"):
        return None, None
    moved = {new: old for old, new in L.outer_prefixes(fold).items()}
    prefix = next((p for p in moved if benchmark.startswith(p)), None)
    restored = moved[prefix] + benchmark[len(prefix) :] if prefix else benchmark
    return rule.removeprefix(f"outer{fold}_"), restored


def benchmarks(wildcards):
    """rule → the benchmark files of its jobs in this workflow, for every rule before the
    report (the jobs each declares, `benchmarked`: declaring them runs nothing more)."""
    found = {}
    for step in workflow.rules:
        name, pattern = _declared(step.name, str(step.benchmark or ""))
        if name is None or name == "report" or not pattern:
            continue
        pattern = _WILDCARD.sub(r"{\1}", pattern)
        if pattern not in BENCHMARK_JOBS:
            raise ValueError(f"{step.name}: its benchmark is not `benchmarked(...)`")
        jobs = BENCHMARK_JOBS[pattern]
        if jobs is False:
            continue
        found[name] = (
            [pattern]
            if jobs is None
            else [_job_file(pattern, value) for value in jobs(wildcards)]
        )
    return found


# Successive halving's rungs (budget.smk): which configurations each rung's decision promoted,
# read once per decision file.
_DECISIONS = {}


def decision(epochs):
    """configuration → "promoted" | "pruned" at the rung of `epochs`, once its decision (a
    checkpoint) is made."""
    path = checkpoints.rung_decision.get(epochs=str(epochs)).output.decision
    key = (path, os.stat(path).st_mtime_ns)
    if key not in _DECISIONS:
        with open(path, newline="") as handle:
            rows = csv.DictReader(handle)
            _DECISIONS[key] = {row["configuration"]: row["decision"] for row in rows}
    return _DECISIONS[key]


def rung_reached(configuration):
    """The epochs a configuration's training ends at: the first rung whose decision pruned it,
    else train.epochs (a run outside the sweep's rungs, e.g. a seed of the confirmation, trains
    the whole run)."""
    for epochs in RUNGS[:-1]:
        if decision(epochs).get(configuration, "promoted") == "pruned":
            return epochs
    return RUNGS[-1]


def entering(epochs):
    """The configurations that train to the rung of `epochs`: all of them at the first rung,
    then those the rung below promoted."""
    index = RUNGS.index(int(epochs))
    if index == 0:
        return sorted(CONFIGURATIONS)
    promoted = decision(RUNGS[index - 1])
    return sorted(c for c in CONFIGURATIONS if promoted.get(c) == "promoted")


def rung_start(wildcards):
    """What a run's job starts from under halving: the state the rung below left (for a rung's
    job, the rung below its own; for the run's own job, the rung it was pruned at, else the
    last rung below train.epochs); nothing at the first rung."""
    if "epochs" in wildcards.keys():
        index = RUNGS.index(int(wildcards.epochs))
        below = RUNGS[index - 1] if index else None
    elif wildcards.run not in RUNS:
        below = None  # a confirmation seed trains the whole run
    else:
        ends = rung_reached(RUNS[wildcards.run].configuration)
        below = ends if ends < RUNGS[-1] else RUNGS[-2]
    if below is None:
        return {}
    return {"start": L.path(L.RUNG_STATE, run=wildcards.run, epochs=str(below))}


# The train rule's input function, only under halving (each call costs planning time).
RUNG_INPUT = [unpack(rung_start)] if HALVING else []


def rung_decisions(wildcards):
    """The decision of every rung below the last, in rung order (none without halving)."""
    return {
        "decisions": [
            checkpoints.rung_decision.get(epochs=str(e)).output.decision
            for e in RUNGS[:-1]
        ]
    }


def at_first_rung(pattern):
    """`pattern` (a file of a run's folder) of every run of the sweep where all configurations
    compare on one budget: at the first rung under halving, else the run's own."""
    if not HALVING:
        return each(pattern, run=sorted(RUNS))
    at = L.path(L.at_rung(pattern), epochs=str(RUNGS[0]))
    return each(at, run=sorted(RUNS))


def survivors():
    """The configurations the final models are chosen from: those that reached the last rung
    (all of them without halving)."""
    if not HALVING:
        return sorted(CONFIGURATIONS)
    return entering(RUNGS[-1])


def confirmed():
    """The settings the confirmation retrains with more seeds (its checkpoint's choice)."""
    with open(checkpoints.confirm.get().output.table, newline="") as handle:
        return [row["setting"] for row in csv.DictReader(handle)]


def choice_runs():
    """The runs whose selections the final choice reads: the survivors' runs and, with a
    confirmation, the confirmed settings' seeds (all trained to train.epochs: a setting
    confirmed after its first seed was pruned is compared on its confirmation seeds)."""
    runs = [r.run_id for c in survivors() for r in CONFIGURATIONS[c]]
    if CONFIRM["top"]:
        runs += [r.run_id for s in confirmed() for r in CONFIRMING[s]]
    return runs


def rung_inputs(wildcards):
    """The selections and scoring tables at the rung of every run of the configurations that
    entered it."""
    runs = [r.run_id for c in entering(wildcards.epochs) for r in CONFIGURATIONS[c]]
    at = {"epochs": wildcards.epochs}
    return {
        "selections": each(L.path(L.at_rung(L.SELECTION), **at), run=runs),
        "scored": each(L.path(L.at_rung(SCORED), **at), run=runs),
    }


def confirm_inputs(wildcards):
    """What the confirmation ranks settings by: every run's selection and scoring table (a
    pruned run's at its rung) and, under halving, the rungs' decisions (how far each trained:
    settings that trained further rank first)."""
    return {
        **rung_decisions(wildcards),
        "selections": each(L.SELECTION, run=sorted(RUNS)),
        "scored": each(SCORED, run=sorted(RUNS)),
    }


def choice_inputs(wildcards):
    """The selections and scoring tables the final choice and the seed tables read."""
    runs = choice_runs()
    return {"selections": each(L.SELECTION, run=runs), "scored": each(SCORED, run=runs)}


def survivors_selected(wildcards):
    """The selections and scored validation tables of the runs that reached the last rung."""
    runs = [r.run_id for c in survivors() for r in CONFIGURATIONS[c]]
    return {"selections": each(L.SELECTION, run=runs), "scored": each(SCORED, run=runs)}


def rung_jobs(wildcards=None):
    """The jobs of the rungs below the last, as their wildcards: every run of each
    configuration that entered a rung (none without halving)."""
    return [
        {"run": run.run_id, "epochs": str(epochs)}
        for epochs in RUNGS[:-1]
        for configuration in entering(epochs)
        for run in CONFIGURATIONS[configuration]
    ]


def rung_benchmarks(wildcards):
    """The benchmark files of every rung job (what halving trained before the runs' own
    jobs), for the runs table's cost."""
    return [L.path(L.benchmark(L.RUNG_TRAIN_JOB), **job) for job in rung_jobs()]
