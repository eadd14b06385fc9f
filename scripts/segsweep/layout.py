"""Where every file of a workflow run lives: the only place that spells a path under `results/`,
`logs/` or `benchmarks/` (as nnU-Net keeps its paths in one module).

The rules declare their inputs, outputs, logs and benchmarks with these names (through
`workflow/rules/common.smk`) and hand the paths to the stages, which read and write only what
they are handed. A pattern keeps its wildcards (`{subject}`, `{run}`, `{split}`, `{name}`) for
Snakemake; `path(pattern, subject="epi-001")` fills them in for one file. Paths are relative to
the working directory the workflow runs in. A stage run by hand with `--results DIR` finds its
files through `under(DIR, pattern)`.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from pathlib import Path

RESULTS, LOGS, BENCHMARKS = "results", "logs", "benchmarks"

# the synthetic cohort: one folder per subject (MetaImage pairs) and its manifest
COHORT_SUBJECT = "results/cohort/{subject}"
COHORT_IMAGE = "results/cohort/{subject}/image.mhd"
COHORT_MASK = "results/cohort/{subject}/mask.mhd"
COHORT_ROI = "results/cohort/{subject}/roi.mhd"
COHORT_BIAS = "results/cohort/{subject}/bias.mhd"
COHORT_TRUTH = "results/cohort/{subject}/truth.json"
COHORT_MANIFEST = "results/cohort/manifest.csv"

# the synthetic radiograph cohort of the classification task: its manifest, one PNG per image
# beside it in results/radiographs/{patient}/{study}/
RADIOGRAPHS_MANIFEST = "results/radiographs/manifest.csv"

# ingest: each subject validated and canonical, and the cohort table
DATA_DIR = "results/data"
INGEST_RECORD = "results/data/{subject}/ingest.json"
DATA_IMAGE = "results/data/{subject}/image.nii.gz"
DATA_MASK = "results/data/{subject}/mask.nii.gz"
DATA_MANIFEST = "results/data/manifest.csv"
DROPPED = "results/data/dropped.csv"
DATA_DESCRIPTION = "results/data/dataset.json"  # the layout, classes and channels read
# classification: the valid images (one row each; manifest.csv then holds one row per study)
IMAGES_TABLE = "results/data/images.csv"
EXAMPLES_FIGURE = "results/data/examples.png"  # example images per study type and class

# preprocessing per subject, and the crop's cohort tables
N4_IMAGE = "results/n4/{subject}/image.nii.gz"
N4_FIELD = "results/n4/{subject}/bias_field.nii.gz"
N4_QC = "results/n4/{subject}/qc.png"
CROP_DIR = "results/crop"
CROP_CENTRE = "results/crop/{subject}/centre.json"  # crop centre, label extents around it
CROP_PLAN = "results/crop/plan.json"  # the window planned from the train/val subjects
CROP_IMAGE = "results/crop/{subject}/image.nii.gz"
CROP_RECORD = "results/crop/{subject}/crop.json"
CROP_QC = "results/crop/{subject}/qc.png"
CROP_MASK = "results/crop/{subject}/mask.nii.gz"
CROP_MASK_RECORD = "results/crop/{subject}/mask.json"
CENTRE_ERROR = "results/crop/centre_error.csv"
KEPT_FRACTION = "results/crop/kept_fraction.csv"

# the split and the packed datasets
SPLITS_DIR = "results/splits"
SPLITS = "results/splits/splits.csv"
SPLITS_AUDIT = "results/splits/splits_audit.csv"
SPLITS_CHECKS = "results/splits/splits_checks.csv"
NORMALISATION = "results/datasets/normalisation.json"
DATASET = "results/datasets/{split}.h5"

# one folder per run: training (state/ holds the resume state, deliberately no output),
# selection and validation tables
RUN_DIR = "results/runs/{run}"
RUN_PARAMS = "results/runs/{run}/params.yaml"
RUN_LOG = "results/runs/{run}/train_log.csv"
RUN_INDEX = "results/runs/{run}/checkpoints/index.json"
RUN_PROVENANCE = "results/runs/{run}/provenance.json"
RUN_STATE = "results/runs/{run}/state"
RUN_SUBJECTS = "results/runs/{run}/subjects.json"
SELECTION = "results/runs/{run}/selection.json"
VAL_DIR = "results/runs/{run}/val"
VAL_PER_SLICE = "results/runs/{run}/val/per_slice.csv"
VAL_PER_PATIENT = "results/runs/{run}/val/per_patient.csv"
# classification: the selected checkpoint's validation predictions, per image and per study
VAL_PER_IMAGE = "results/runs/{run}/val/per_image.csv"
VAL_PER_STUDY = "results/runs/{run}/val/per_study.csv"

# successive halving (the sweep's `budget`): a run trained to a rung below the last, {epochs}
# being the rung's epochs. Its checkpoint index lies beside the run's checkpoints (one folder
# for every rung); the rest in the rung's folder: the log so far, the resume state at the rung
# (what the next rung starts from), its provenance and subjects, and its selection and
# validation tables (the run's own files and tables at the rung, `at_rung`).
RUNG_DIR = "results/runs/{run}/rungs/{epochs}"
RUNG_INDEX = "results/runs/{run}/checkpoints/rung-{epochs}.json"
RUNG_STATE = "results/runs/{run}/rungs/{epochs}/state.pt"
# a rung's jobs, as their logs and benchmarks name them (`log`, `benchmark`)
RUNG_TRAIN_JOB = "train_rung/{run}/{epochs}"
RUNG_SELECT_JOB = "select_rung/{run}/{epochs}"
# TensorBoard event files of a run (curves and hyperparameters), written as it trains
RUN_EVENTS = "results/runs/{run}/tensorboard"
# the decision of one rung (configuration, score, rank, promoted or pruned and why), the rung
# table, each configuration's budget, and the figure of scores against epochs with the rungs
RUNG_DECISION = "results/budget/rung-{epochs}.csv"
BUDGET_RUNGS = "results/budget/rungs.csv"
BUDGET_CONFIGURATIONS = "results/budget/configurations.csv"
BUDGET_FIGURE = "results/figures/budget.png"
# the seed-noise floor (the sweep's `confirm`): the settings (configurations without their seed)
# chosen after the sweep for more seeds, each repeated setting's seed-to-seed spread, the top
# settings' differences set against it, and how often the winner stays first across seeds
CONFIRM = "results/budget/confirm.csv"
SEED_SPREAD = "results/budget/seed_spread.csv"
SEED_COMPARISONS = "results/budget/seed_comparisons.csv"
SEED_WINNERS = "results/budget/seed_winners.csv"

# the final models, one per chosen configuration ({run} is the configuration's id): test tables
# (of its fold ensemble with cross-validation, and of its best fold), which runs make it up,
# predictions, outlines and unlabelled subjects
FINAL = "results/summary/final.csv"
# an external method's test predictions (final.external), scored as the final models are
EXTERNAL_PER_PATIENT = "results/external/{name}/test/per_patient.csv"
NATIVE_BOXPLOT = "results/figures/boxplot_test_native.png"  # the final models and the external
SITE_BOXPLOT = "results/figures/boxplot_sites.png"  # the final models' test patients by site
TEST_PER_SLICE = "results/final/{run}/test/per_slice.csv"
TEST_PER_PATIENT = "results/final/{run}/test/per_patient.csv"
BEST_FOLD_PER_SLICE = "results/final/{run}/test_best_fold/per_slice.csv"
BEST_FOLD_PER_PATIENT = "results/final/{run}/test_best_fold/per_patient.csv"
# which runs make up a final model, its best fold and which of the two is reported (model, runs,
# best_fold, reported)
FINAL_MODELS = "results/final/{run}/models.json"
# classification: a final model's test predictions, per image and per study, and in models.json
# the runs it used (only the best fold under final.model: best_fold), their checkpoints and the
# decision threshold chosen on their validation studies (model, combined, runs, checkpoints,
# study_probability, threshold_rule, threshold, threshold_studies)
FINAL_THRESHOLD = "results/final/{run}/models.json"
TEST_PER_IMAGE = "results/final/{run}/test/per_image.csv"
TEST_PER_STUDY = "results/final/{run}/test/per_study.csv"
GALLERY = "results/final/{run}/gallery.png"  # its most confident false positives and negatives
PREDICTIONS = "results/final/{run}/predictions"
PREDICTIONS_NATIVE = "results/final/{run}/predictions_native"
OUTLINES = "results/final/{run}/figures"
UNLABELLED = "results/final/{run}/unlabelled"
# the model packages (one zip per final model, `segsweep.deploy`) and their index; each final
# model's QC of its test patients (one row per patient, the columns of `segsweep.deploy.qc`)
PACKAGE = "results/package/{run}.zip"
PACKAGE_INDEX = "results/package/index.json"
FINAL_QC = "results/final/{run}/qc.csv"
UNLABELLED_FIGURE = "results/final/{run}/unlabelled.png"

# nested cross-validation (`split.outer_folds`): each outer fold's workflow writes into its own
# folder (`outer`), where its chosen model's held-out rows lie in NESTED_HELD_OUT; the pooled
# estimate, per outer fold and overall, and how often each configuration was chosen
NESTED_HELD_OUT = "results/nested/held_out.csv"
NESTED_PER_PATIENT = "results/nested/per_patient.csv"
NESTED_SUMMARY = "results/nested/summary.csv"
NESTED_CHOICES = "results/nested/choices.csv"
NESTED_FIGURE = "results/figures/nested_held_out.png"

# analysis, figures and the thesis
RUNS_TABLE = "results/summary/runs.csv"
CONFIGURATIONS_TABLE = "results/summary/configurations.csv"
TABLE = "results/tables/{name}.csv"
TABLES = (
    "hyperparameters",
    "pairs",
    "best_runs",
    "final_per_patient",
    "slice_distribution",
    "metrics_summary",
    "class_summary",
    "kruskal",
    "final_tests",
    "folds",
    "fold_audit",
    "fold_checks",
    "ranking",
    "rank_frequencies",
    "configuration_tests",
    "ensemble_vs_fold",
)
# classification: the sweep's tables as for segmentation, and the final models' study-level ones
CLASSIFICATION_TABLES = (
    "hyperparameters",
    "pairs",
    "best_runs",
    "kruskal",
    "folds",
    "classification_metrics",
    "study_types",
    "confusion",
    "roc",
    "calibration",  # the ECE with its interval, per final model and split
    "reliability",  # the reliability diagram's bins
)
ROC_FIGURE = "results/figures/roc.png"
CONFUSION_FIGURE = "results/figures/confusion.png"
PROBABILITY_FIGURE = "results/figures/probabilities.png"
CALIBRATION_FIGURE = "results/figures/calibration.png"  # the reliability diagrams
JITTER = "results/figures/jitter_{name}.png"
BOXPLOT = "results/figures/boxplot_{split}.png"
HISTOGRAM = "results/figures/histogram_{split}.png"
TRAINING_CURVES = "results/figures/training_curves.png"
CHECKPOINT_SCORES = "results/figures/checkpoint_scores.png"
RANKING_FIGURE = "results/figures/ranking.png"
COST_FIGURE = "results/figures/cost.png"  # validation score against training cost
THESIS_HTML = "results/report/thesis.html"
THESIS_PDF = "results/report/thesis.pdf"
THESIS_LATEX = "results/report/latex"  # tables/, figures/, chapter.tex, preamble.tex, main.tex

_FIELDS = string.Formatter()


def path(pattern: str, **wildcards: str) -> str:
    """`pattern` with the given wildcards filled in; the others stay `{name}` for Snakemake."""
    values = {name: f"{{{name}}}" for _, name, _, _ in _FIELDS.parse(pattern) if name}
    return pattern.format(**{**values, **wildcards})


def at_rung(pattern: str) -> str:
    """A file of a run's folder (`RUN_DIR`) as the run has it at a rung: in its rung's folder
    (`RUNG_DIR`), e.g. the selection and validation tables of the run trained to 4 epochs."""
    prefix = RUN_DIR + "/"
    if not pattern.startswith(prefix):
        raise ValueError(f"{pattern} is not a file of a run's folder")
    return RUNG_DIR + "/" + pattern[len(prefix) :]


# what a nested workflow's outer folds share, as it depends on no split (the first outer fold
# makes it): the generated raw data and each subject's N4 bias correction
SHARED_FOLDERS = ("cohort", "radiographs", "n4")


def outer_prefixes(fold: str) -> dict[str, str]:
    """Where outer fold `fold` of a nested cross-validation writes what a plain workflow writes
    under results/ (but the shared folders, `SHARED_FOLDERS`), logs/ and benchmarks/: in its own
    subfolder outer/<fold>/ of each (Snakemake's module `replace_prefix`)."""
    folders = {
        value.split("/")[1]
        for value in globals().values()
        if isinstance(value, str) and value.startswith(f"{RESULTS}/") and value.count("/") > 1
    }
    prefixes = {
        f"{RESULTS}/{f}/": f"{RESULTS}/outer/{fold}/{f}/"
        for f in sorted(folders - set(SHARED_FOLDERS))
    }
    return prefixes | {f"{top}/": f"{top}/outer/{fold}/" for top in (LOGS, BENCHMARKS)}


def outer(pattern: str, fold: str) -> str:
    """The file `pattern` of outer fold `fold`'s workflow, e.g. its splits.csv."""
    for prefix, replacement in outer_prefixes(fold).items():
        if pattern.startswith(prefix):
            return replacement + pattern[len(prefix) :]
    raise ValueError(f"{pattern} is not one of an outer fold's files")


def log(job: str) -> str:
    """The log of one job, `job` naming its rule group and wildcards, e.g. "n4/{subject}"."""
    return f"{LOGS}/{job}.log"


def benchmark(job: str) -> str:
    """Snakemake's benchmark file of one job (named as its log)."""
    return f"{BENCHMARKS}/{job}.tsv"


def under(folder: str | Path, pattern: str, base: str = RESULTS, **wildcards: str) -> Path:
    """The file `pattern` names, in `folder` standing where `base` stands in the layout: a
    results file of a run whose results folder is `folder` (for stages run by hand), or, with
    `base=RUN_DIR`, a file of one run's folder."""
    relative = Path(path(pattern, **wildcards)).relative_to(path(base, **wildcards))
    return Path(folder) / relative


def named_under(folder: str | Path, files: dict[str, str], prefix: str) -> dict[str, Path]:
    """The files of `files` (a thesis's list, `*_thesis_files`) named `<prefix><name>`, in the
    results folder `folder` (as `under`), by name."""
    n = len(prefix)
    return {k[n:]: under(folder, pattern) for k, pattern in files.items() if k.startswith(prefix)}


def segmentation_thesis_files(
    swept: Iterable[str],
    external: bool,
    seeds: bool = False,
    budget: bool = False,
    sites: bool = False,
) -> dict[str, str]:
    """The tables ("table_<name>") and figures ("figure_<name>", PNG; the SVG lies beside each)
    the segmentation thesis shows, by name: the report rule's inputs, the figures its figures
    stage draws by hand, and what its report finds by hand; the native-space boxplot only with
    external methods (`external`: `final.external` is set); the seed tables only when settings
    are trained with several seeds (`seeds`: `repeats` ≥ 2 or `confirm.top` > 0); the training
    budget's tables and figure only under successive halving (`budget`); the test patients by
    site only with two or more labelled sites (`sites`)."""
    files = {
        "table_runs": RUNS_TABLE,
        "table_configurations": CONFIGURATIONS_TABLE,
        **{f"table_{name}": path(TABLE, name=name) for name in TABLES},
        **{f"figure_jitter_{name}": path(JITTER, name=name) for name in swept},
    }
    for split in ("val", "test"):
        files[f"figure_boxplot_{split}"] = path(BOXPLOT, split=split)
        files[f"figure_histogram_{split}"] = path(HISTOGRAM, split=split)
    files["figure_training_curves"] = TRAINING_CURVES
    files["figure_checkpoint_scores"] = CHECKPOINT_SCORES
    files["figure_ranking"] = RANKING_FIGURE
    files["figure_cost"] = COST_FIGURE
    if external:
        files["figure_boxplot_test_native"] = NATIVE_BOXPLOT
    if sites:
        files["figure_boxplot_sites"] = SITE_BOXPLOT
    if seeds:
        files["table_seed_spread"] = SEED_SPREAD
        files["table_seed_comparisons"] = SEED_COMPARISONS
        files["table_seed_winners"] = SEED_WINNERS
    if budget:
        files["table_budget_rungs"] = BUDGET_RUNGS
        files["table_budget_configurations"] = BUDGET_CONFIGURATIONS
        files["figure_budget"] = BUDGET_FIGURE
    return files


def classification_thesis_files(swept: Iterable[str], budget: bool = False) -> dict[str, str]:
    """The tables ("table_<name>") and figures ("figure_<name>", PNG) the classification thesis
    shows, by name: the report rule's inputs, and what its report finds by hand; the training
    budget's tables and figure only under successive halving (`budget`)."""
    files = {
        "table_runs": RUNS_TABLE,
        "table_configurations": CONFIGURATIONS_TABLE,
        **{f"table_{name}": path(TABLE, name=name) for name in CLASSIFICATION_TABLES},
        **{f"figure_jitter_{name}": path(JITTER, name=name) for name in swept},
        "figure_training_curves": TRAINING_CURVES,
        "figure_checkpoint_scores": CHECKPOINT_SCORES,
        "figure_cost": COST_FIGURE,
        "figure_cls_roc": ROC_FIGURE,
        "figure_cls_confusion": CONFUSION_FIGURE,
        "figure_cls_probabilities": PROBABILITY_FIGURE,
        "figure_cls_calibration": CALIBRATION_FIGURE,
        "figure_cls_examples": EXAMPLES_FIGURE,
    }
    if budget:
        files["table_budget_rungs"] = BUDGET_RUNGS
        files["table_budget_configurations"] = BUDGET_CONFIGURATIONS
        files["figure_budget"] = BUDGET_FIGURE
    return files
