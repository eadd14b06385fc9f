"""The chapters of the classification task (`task: classification`): the cohort of studies,
the methods written from the configuration, and the final models' study-level results, after
Kaliyugarsan 2019 (chapter 5: study-wise accuracy, accuracy per study type in Table 5.1,
confusion matrices in Figs 5.5 and 5.7) and Harrison 2018 (MURA, Cohen's κ).

Every number comes from the workflow's files: the studies manifest, images.csv and splits.csv
for the cohort; classification_metrics.csv, study_types.csv, confusion.csv and calibration.csv
for the results (intervals are bootstrap 95 % over patients); the configuration for the
methods, with the ImageNet weights files that the runs' provenance.json records. Classes are
ordered by their value in `data.labels` (without it, as confusion.csv lists them); the last one
is the positive class. Each table's caption and each comparison state the studies and patients
they rest on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from segsweep import layout
from segsweep.evaluate.calibration import TOP_LABEL
from segsweep.io.records import flags, read_json
from segsweep.numerals import (
    NA,
    ci_text,
    integer,
    number,
    percent,
    plural,
    sentence_case,
    verb,
)
from segsweep.report.chapters import appendix, budget
from segsweep.report.chapters.data import LAYOUTS, checks_frame
from segsweep.report.chapters.methods import final_sentence, sweep_text, swept_frame
from segsweep.report.chapters.sweep_results import best_models, failed_runs, hyperparameter_effects
from segsweep.report.document import (
    Chapter,
    Document,
    Figure,
    Paragraph,
    Section,
    Table,
    join_words,
    text,
)
from segsweep.report.inputs import ReportInputs, Thesis, read_table
from segsweep.sweep.grammar import Run, sweep_runs, swept_names
from segsweep.sweep.pruning import halving, rung_epochs
from segsweep.vocabulary import format_level, level_order, model_label, pooled_score_label

METRICS = {
    "accuracy": "Accuracy",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "precision": "Precision",
    "f1": "F1",
    "auc": "ROC AUC",
    "kappa": "Cohen's κ",
}
STUDY_TYPE_METRICS = ["accuracy", "sensitivity", "specificity", "kappa"]  # Table 5.1, extended
SPLIT_ORDER = ["train", "val", "test"]
SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}
ALL = "all"  # study_types.csv's row of every study type together
NETWORKS = {
    "resnet18": "ResNet-18",
    "resnet34": "ResNet-34",
    "resnet50": "ResNet-50",
    "densenet121": "DenseNet-121",
    "vgg16": "VGG16",
}
CLASSIFICATION_LAYOUTS = {**LAYOUTS, "mura": "the MURA folder"}
# what the classification thesis has of its own: these chapters and the summary's paragraph on
# the final models (`final_summary`), a score of pooled predictions, a row of splits.csv per study
THESIS = Thesis(
    chapters=__name__,
    score_label=pooled_score_label,
    curve="image-level AUC",
    run_scores=(
        "AUC, accuracy, κ: the selected checkpoint's study-level metrics on the validation set"
    ),
    rows_per_study=True,
)
PROBLEM_HEADINGS = {"subject": "Study", "file": "File", "problem": "Problem"}  # dropped.csv


def studies(n: int) -> str:
    return plural(n, "study", "studies")


def interval_cell(value: Any, low: Any, high: Any) -> str:
    """ "0.812 [0.750, 0.870]"; a dash when the value is undefined, the value alone without an
    interval."""
    if pd.isna(value):
        return NA
    interval = ci_text(low, high)
    return number(value) if interval == NA else f"{number(value)} {interval}"


def class_order(config: dict[str, Any], confusion: pd.DataFrame | None = None) -> list[str]:
    """Class names by their value in `data.labels`; without labels, in the order confusion.csv
    lists them (the analysis writes them in class order)."""
    labels = config.get("data", {}).get("labels")
    if labels:
        return sorted(labels, key=lambda name: labels[name])
    if confusion is None:
        raise ValueError("without data.labels the class order comes from confusion.csv")
    return list(dict.fromkeys(confusion["true"].astype(str)))


def final_models(inputs: ReportInputs) -> dict[str, str]:
    """Final model id → its label ("id (group)"), in final.csv's order."""
    final = pd.read_csv(inputs.final, dtype=str, keep_default_na=False)
    return {r.run_id: model_label(r.run_id, r.group) for r in final.itertuples(index=False)}


# ---------------------------------------------------------------- data


def cohort(manifest: pd.DataFrame, images: pd.DataFrame, splits: pd.DataFrame) -> pd.DataFrame:
    """One row per valid, split study: study_id, patient_id, study_type ("" without), label,
    split and n_images (its rows in images.csv)."""
    valid = manifest[flags(manifest["valid"])].rename(columns={"subject_id": "study_id"})
    counted = images.groupby(images["study_id"].astype(str)).size().rename("n_images")
    split = splits.rename(columns={"subject_id": "study_id"})[["study_id", "split"]]
    joined = valid[["study_id", "patient_id", "study_type", "label"]].merge(split, on="study_id")
    return joined.merge(counted, left_on="study_id", right_index=True, how="left").fillna(
        {"n_images": 0}
    )


def _cohort_row(split: str, study_type: str, rows: pd.DataFrame, classes: list[str]) -> list:
    counts = [int((rows["label"] == name).sum()) for name in classes]
    shares = [f"{n} ({percent(n / len(rows))})" if len(rows) else "0" for n in counts]
    return [
        split,
        study_type,
        str(rows["patient_id"].nunique()),
        str(len(rows)),
        *shares,
        str(int(rows["n_images"].sum())),
    ]


def cohort_frame(studies_: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Per split (training, validation, test, then all together) and study type, with an "All"
    row per split: patients, studies, studies of each class as "n (share of the row's
    studies)" and images."""
    order = [s for s in SPLIT_ORDER if s in set(studies_["split"])]
    order += sorted(set(studies_["split"]) - set(order))
    types = sorted(set(studies_["study_type"]) - {""})
    rows = []
    for split in [*order, None]:
        part = studies_ if split is None else studies_[studies_["split"] == split]
        name = "All" if split is None else SPLIT_NAMES.get(split, split).capitalize()
        if len(types) > 1:
            rows += [_cohort_row(name, t, part[part["study_type"] == t], classes) for t in types]
        rows.append(
            _cohort_row(name, "All" if len(types) > 1 else (types or [NA])[0], part, classes)
        )
    columns = ["Split", "Study type", "Patients", "Studies", *classes, "Images"]
    return pd.DataFrame(rows, columns=columns)


def source_sentence(config: dict[str, Any], description: dict | None = None) -> str:
    """Where the studies come from: the synthetic radiograph cohort (with its configured seed
    and abnormal share), or the layout read (dataset.json's `layout`;
    a manifest CSV or a MURA folder)."""
    data = config.get("data", {})
    if data.get("source") == "synthetic":
        cohort_config = data.get("radiographs", {})
        sentence = "The studies are a synthetic radiograph cohort generated by segsweep"
        drawn = []
        if "seed" in cohort_config:
            drawn.append(f"seed {cohort_config['seed']}")
        if "abnormal" in cohort_config:
            drawn.append(f"{percent(float(cohort_config['abnormal']))} of studies drawn abnormal")
        return sentence + (f" ({', '.join(drawn)})." if drawn else ".")
    description = description or {}
    manifest = str(data.get("manifest"))
    layout = description.get("layout") or ("manifest" if manifest.endswith(".csv") else "mura")
    return (
        f"The studies are those of {CLASSIFICATION_LAYOUTS.get(layout, 'the dataset')} {manifest}."
    )


def _balance(studies_: pd.DataFrame, classes: list[str]) -> str:
    """ "12 studies (40 %) are abnormal and 18 (60 %) normal" (positive class first)."""
    parts = []
    for i, name in enumerate(reversed(classes)):
        n = int((studies_["label"] == name).sum())
        share = percent(n / len(studies_)) if len(studies_) else NA
        parts.append(f"{studies(n) if i == 0 else n} ({share}) {'are ' * (i == 0)}{name}")
    return str(join_words(parts))


def data_chapter(inputs: ReportInputs, label: str = "1") -> Chapter:
    """The cohort: where the studies come from, how many images, studies and patients, the
    class balance, the studies per split, study type and class, the packing, example images,
    the split audit and the studies dropped as invalid."""
    config = inputs.config
    read = {"dtype": str, "keep_default_na": False}
    manifest = pd.read_csv(inputs.manifest, **read)
    images = pd.read_csv(inputs.classification["images"], **read)
    splits = pd.read_csv(inputs.splits, **read)
    confusion = read_table(inputs.tables["confusion"], text=["model", "split", "true", "predicted"])
    classes = class_order(config, confusion)
    found = cohort(manifest, images, splits)
    types = sorted(set(found["study_type"]) - {""})
    table = Table.of(
        "cls-cohort",
        f"Patients, studies per class and images per split and study type "
        f"({studies(len(found))} of {plural(found['patient_id'].nunique(), 'patient')}); "
        "the share is of the row's studies.",
        cohort_frame(found, classes),
    )
    description = read_json(inputs.description) if inputs.description else None
    typed = f", of {plural(len(types), 'study type')} ({', '.join(types)})" if types else ""
    blocks: list[Any] = [
        text(
            "{source} It has {images} in {studies} of {patients}{typed}; {balance}. A study's "
            "label is that of its images; {table} lists the studies per split, study type and "
            "class.",
            source=source_sentence(config, description),
            images=plural(int(found["n_images"].sum()), "image"),
            studies=studies(len(found)),
            typed=typed,
            patients=plural(found["patient_id"].nunique(), "patient"),
            balance=_balance(found, classes),
            table=table,
        ),
        table,
        text(split_sentence(config, found)),
    ]
    size = config.get("preprocess", {}).get("image_size")
    if size:
        blocks.append(
            text(
                "Every image was resized to fit {s} × {s} pixels, its aspect kept, padded to "
                "that square and z-scored (zero mean and unit standard deviation per image), "
                "then packed into one HDF5 file per split (preprocess.image_size).",
                s=size,
            )
        )
    examples = inputs.figures.get("cls_examples")
    if examples is not None:
        figure = Figure.of("cls-examples", "Example images of each study type and class.", examples)
        blocks += [
            text("{figure} shows example images of each study type and class.", figure=figure),
            figure,
        ]
    if inputs.checks is not None:
        checks = pd.read_csv(inputs.checks, **read)
        audit = Table.of(
            "cls-split-audit",
            "Audit of the split: checks that no study, patient or image is in two of the "
            "training, validation and test sets.",
            checks_frame(checks),
        )
        verdict = (
            "every check passed"
            if flags(checks["passed"]).all()
            else "at least one check failed, and the results below are not free of leakage"
        )
        blocks += [
            text("{table} audits the split: {verdict}.", table=audit, verdict=verdict),
            audit,
        ]
    blocks += dropped_blocks(inputs, manifest)
    return Chapter("data", label, "Data", blocks)


def split_sentence(config: dict[str, Any], found: pd.DataFrame) -> str:
    """How the studies were split, with the studies and patients of each set."""
    split = config.get("split", {})
    stratum = split.get("stratify")
    stratified = f", stratified by “{stratum}”" if stratum else ""
    if stratum == "source":  # the studies manifest's source: the study type
        stratified = ", stratified by study type (the manifest's “source”)"
    sets = [
        f"{studies(int((found['split'] == s).sum()))} of "
        f"{plural(found.loc[found['split'] == s, 'patient_id'].nunique(), 'patient')} for "
        f"{SPLIT_NAMES[s]}"
        for s in SPLIT_ORDER
        if (found["split"] == s).any()
    ]
    sentence = (
        "The studies were split at patient level, every study of a patient in the same set"
        f"{stratified}, with seed {split.get('seed')}: {join_words(sets)}."
    )
    folds = int(split.get("folds") or 0)
    if folds:
        sentence += (
            f" For {folds}-fold cross-validation the training and validation studies were "
            f"dealt into {folds} folds, patients kept whole."
        )
    return sentence


def dropped_blocks(inputs: ReportInputs, manifest: pd.DataFrame) -> list:
    """The studies dropped as invalid (the manifest's invalid rows, and dropped.csv's problems
    when there is one), or the sentence that none was."""
    invalid = int((~flags(manifest["valid"])).sum())
    dropped = (
        pd.read_csv(inputs.dropped, dtype=str, keep_default_na=False)
        if inputs.dropped is not None
        else pd.DataFrame()
    )
    if not invalid and not len(dropped):
        return [text("Every study passed input validation; none was dropped.")]
    blocks: list[Any] = []
    if len(dropped):
        shown = dropped.replace({"subject": {"": "(dataset)"}}).rename(columns=PROBLEM_HEADINGS)
        table = Table.of(
            "cls-dropped",
            "The problems found when the data was read: every one with its study (a problem of "
            "the dataset's listing names none), file and reason.",
            shown,
        )
        blocks += [
            text(
                "{n} failed input validation and {take} no part in any split; {table} lists "
                "the problems found.",
                n=sentence_case(studies(invalid)),
                take=verb(invalid, "takes", "take"),
                table=table,
            ),
            table,
        ]
    else:
        blocks.append(
            text(
                "{n} failed input validation and {take} no part in any split.",
                n=sentence_case(studies(invalid)),
                take=verb(invalid, "takes", "take"),
            )
        )
    return blocks


# ---------------------------------------------------------------- methods


def _levels(config: dict[str, Any], sweep: dict[str, Any]) -> dict[str, list[str]]:
    """Swept hyperparameter → its levels as display text."""
    runs = sweep_runs(config, sweep)
    return {
        name: [format_level(v) for v in level_order(pd.Series([r.values[name] for r in runs]))]
        for name in swept_names(sweep)
    }


def _of(noun: str, name: str, value: Any, levels: dict[str, list[str]]) -> str:
    """ "a learning rate of 0.001", or "a learning rate swept over 0.0001, 0.001"."""
    return f"{noun} {'' if name in levels else 'of '}{_say(name, value, levels)}"


def _say(name: str, value: Any, levels: dict[str, list[str]], shown: str | None = None) -> str:
    """The value of a training setting as text, or "swept over a, b" when the sweep varies it."""
    if name in levels:
        return "swept over " + ", ".join(levels[name])
    return shown if shown is not None else format_level(value)


SCHEDULES = {
    "constant": "kept constant",
    "time": "decayed as lr / (1 + {decay} · step)",
    "step": "multiplied by {lr_gamma} every {lr_step_epochs} epochs",
    "poly": "scaled by (1 − step / total steps)^{lr_power}",
    "cosine": "annealed with cosine warm restarts (SGDR), a first cycle of {lr_t0} epochs, each "
    "cycle {lr_t_mult} times the last, down to {lr_min}",
}


def network_sentence(
    train: dict[str, Any],
    levels: dict[str, list[str]],
    classes: list[str],
    packed: Any,
    imagenet: bool = False,
) -> str:
    """The network, its input size and dropout; `imagenet`: some run starts from ImageNet."""
    network = _say("model", train["model"], levels, NETWORKS.get(train["model"], train["model"]))
    size = train.get("input_size")
    if "input_size" in levels:
        seen = f"images resized on the device to a side {_say('input_size', size, levels)} pixels"
    elif size:
        seen = f"images resized on the device from {packed} to {size} × {size} pixels"
    else:
        seen = f"the images at their packed size, {packed} × {packed} pixels"
    dropout = float(train.get("dropout") or 0)
    drop = (
        f"dropout {_say('dropout', dropout, levels)} before it"
        if "dropout" in levels or dropout
        else "no dropout"
    )
    built = "" if imagenet else " (the architecture, built without downloaded weights)"
    return (
        f"The network is torchvision's {network}{built}, its final linear layer giving one "
        f"output per class ({len(classes)}: {', '.join(classes)}), with {drop}; it sees {seen}."
    )


IMAGENET_START = (
    "torchvision's ImageNet weights ({files}), their first convolution's kernel summed over R, G "
    "and B for the grey images (fed as packed, z-scored per image, without ImageNet's mean and "
    "standard deviation) and the final layer new"
)


def imagenet_files(
    runs: Sequence[Run], provenance: Mapping[str, str | Path]
) -> dict[str, str | None]:
    """Classifier → the file of the ImageNet weights its runs started from, for the classifiers
    of the runs with `pretrained: imagenet`, as their provenance.json (`provenance`, by run id)
    records it in `starting_weights` (None while none of them has)."""
    files: dict[str, str | None] = {}
    for run in runs:
        model = run.params["model"]
        if run.params.get("pretrained") != "imagenet" or files.get(model):
            continue
        files[model] = None
        path = provenance.get(run.run_id)
        if path is not None and Path(path).is_file():
            for start in read_json(path).get("starting_weights", []):
                if start["from"] == "imagenet":
                    files[model] = start["file"]
    return dict(sorted(files.items()))


def _imagenet_start(files: Mapping[str, str | None]) -> str:
    """ "torchvision's ImageNet weights (IMAGENET1K_V1: resnet18-f37072fd.pth), …": the file
    recorded for each network (named when several start from them)."""
    known = {model: file for model, file in files.items() if file}
    if len(files) == 1 and known:
        shown = f"IMAGENET1K_V1: {next(iter(known.values()))}"
    elif known:
        named = [f"{file} for {NETWORKS.get(model, model)}" for model, file in known.items()]
        shown = f"IMAGENET1K_V1: {', '.join(named)}"
    else:
        shown = "IMAGENET1K_V1"
    return IMAGENET_START.format(files=shown)


def initialisation_sentence(
    train: dict[str, Any],
    levels: dict[str, list[str]],
    run_ids: Sequence[str],
    imagenet: Mapping[str, str | None] | None = None,
) -> str:
    """Training from scratch or from ImageNet weights (`imagenet`: `imagenet_files`), then from
    a run of the sweep or a checkpoint, with frozen blocks."""
    source = train.get("init_from")
    if imagenet:
        return _from_imagenet(train, levels, run_ids, imagenet)
    if "init_from" in levels:
        start = f"The initialisation is {_say('init_from', source, levels)}"
    elif source is None:
        return "Every run starts from random weights (trained from scratch)."
    elif source in run_ids:
        start = f"Every run starts from the selected checkpoint of run {source} of this sweep"
    else:
        start = f"Every run starts from the checkpoint {source}"
    return f"{start} (the weights whose name and shape match are loaded){_freeze(train, levels)}."


def _freeze(train: dict[str, Any], levels: dict[str, list[str]]) -> str:
    frozen = int(train.get("freeze_blocks") or 0)
    if "freeze_blocks" in levels or frozen:
        return f", with the first {_say('freeze_blocks', frozen, levels)} blocks frozen"
    return ", every layer trained"


def _from_imagenet(
    train: dict[str, Any],
    levels: dict[str, list[str]],
    run_ids: Sequence[str],
    files: Mapping[str, str | None],
) -> str:
    """The start of runs some of which (the level imagenet when `pretrained` is swept) load
    ImageNet weights, then the `init_from` checkpoint over them."""
    weights = _imagenet_start(files)
    if "pretrained" in levels:
        swept = _say("pretrained", train.get("pretrained"), levels)
        start = f"The starting weights are {swept}: random weights at none, {weights} at imagenet"
    else:
        start = f"Every run starts from {weights}"
    source = train.get("init_from")
    if "init_from" in levels:
        start += f"; then the initialisation is {_say('init_from', source, levels)}"
    elif source in run_ids:
        start += f"; then the selected checkpoint of run {source} of this sweep is loaded"
    elif source is not None:
        start += f"; then the checkpoint {source} is loaded"
    if "init_from" in levels or source is not None:
        start += " over them (its weights whose name and shape match)"
    return f"{start}{_freeze(train, levels)}."


def optimiser_sentence(train: dict[str, Any], levels: dict[str, list[str]]) -> str:
    """Optimiser, learning rate and its schedule, weight decay and batch size."""
    optimiser = {"adam": "Adam", "sgd": f"SGD with momentum {train.get('momentum')}"}
    name = _say("optimizer", train["optimizer"], levels, optimiser.get(train["optimizer"]))
    policy = train.get("lr_policy", "constant")
    schedule = (
        f"its schedule {_say('lr_policy', policy, levels)}"
        if "lr_policy" in levels
        else SCHEDULES[policy].format(**{k: format_level(v) for k, v in train.items()})
    )
    decay = train.get("weight_decay", 0)
    return (
        f"The optimiser is {name}, with {_of('a learning rate', 'lr', train['lr'], levels)}, "
        f"{schedule}, {_of('a weight decay', 'weight_decay', decay, levels)} and "
        f"{_of('a batch size', 'batch_size', train['batch_size'], levels)} images."
    )


def loss_sentence(train: dict[str, Any], levels: dict[str, list[str]]) -> str:
    weights = train.get("class_weights", "balanced")
    if "class_weights" in levels:
        swept = _say("class_weights", weights, levels)
        return f"The loss is cross-entropy, its class weights {swept}."
    if weights == "balanced":
        return (
            "The loss is cross-entropy weighted per class by n/(K·n_k) over the run's n "
            "training images, n_k of class k (train.class_weights: balanced), so every class "
            "weighs the same in total."
        )
    return "The loss is unweighted cross-entropy (train.class_weights: none)."


def augmentation_sentence(train: dict[str, Any], levels: dict[str, list[str]]) -> str:
    if "augment" not in levels and not train.get("augment"):
        return "Training images were not augmented."
    transforms = []
    if train.get("aug_flip"):
        transforms.append("left-right flips")
    for key, template in (
        ("aug_shift", "shifts by up to {} of the size"),
        ("aug_rotate", "rotations by up to ± {}°"),
        ("aug_brightness", "brightness offsets up to ± {}"),
        ("aug_contrast", "contrast factors 1 ± up to {}"),
        ("aug_gamma", "gamma with log γ up to ± {}"),
    ):
        if key in levels or train.get(key):
            transforms.append(template.format(_say(key, train.get(key), levels)))
    which = "swept on and off" if "augment" in levels else "augmented"
    listed = join_words(transforms) if transforms else "no transform"
    return (
        f"Training images were {which}: {listed}, each applied with probability "
        f"{_say('aug_p', train.get('aug_p'), levels)}."
    )


def schedule_sentence(train: dict[str, Any], levels: dict[str, list[str]]) -> str:
    """Epochs, early stopping and checkpoints."""
    patience = int(train.get("patience") or 0)
    every, unit = train.get("checkpoint_every"), train.get("checkpoint_unit", "epochs")
    sentence = f"Each run trains at most {_say('epochs', train['epochs'], levels)} epochs"
    if "patience" in levels or patience:
        sentence += (
            f", stopping early after {_say('patience', patience, levels)} epochs without "
            f"improvement of {train.get('early_stopping_metric')}"
        )
    interval = unit.rstrip("s") if every == 1 else f"{every} {unit}"
    return sentence + f"; a checkpoint is saved every {interval} and at the last epoch."


def selection_sentence(config: dict[str, Any]) -> str:
    """The checkpoint selection rule of config["selection"] at study or image level."""
    selection = config["selection"]
    best = "highest" if selection.get("higher_is_better", True) else "lowest"
    metric = METRICS.get(selection["metric"], selection["metric"])
    metric = metric if metric.isupper() or "'" in metric else metric.lower()
    level = selection.get("level", "study")
    return (
        f"For each run, the checkpoint with the {best} {level}-level {metric} on the "
        "validation set was selected; this validation score is the run's score in the tables "
        "and figures of the sweep."
    )


def halving_sentence(config: dict[str, Any], sweep: dict[str, Any]) -> str:
    """Under successive halving, where the sweep compares and where the final models come from;
    "" without it."""
    if not halving(config, sweep):
        return ""
    rungs = rung_epochs(config, sweep)
    return (
        f"Under successive halving the sweep's tables and figures compare every configuration "
        f"at the first rung ({plural(rungs[0], 'epoch')}), and the final models were chosen "
        f"among the configurations that reached the last rung, at the full budget of "
        f"{plural(rungs[-1], 'epoch')}."
    )


def study_probability_sentence(config: dict[str, Any], classes: list[str]) -> str:
    how = config.get("classification", {}).get("study_probability", "mean")
    positive = classes[-1]
    if how == "max":
        sentence = (
            f"A study's probability of {positive} is the largest of its images' probabilities "
            f"(classification.study_probability: max): one {positive}-looking image makes the "
            "study so, as a radiologist reads an examination (Kaliyugarsan's study-wise "
            "prediction)."
        )
    else:
        sentence = (
            f"A study's probability of {positive} is the mean of its images' probabilities "
            "(classification.study_probability: mean, the MURA baseline)."
        )
    if len(classes) > 2:
        sentence += " With more than two classes, each class's probability is averaged."
    return sentence


def threshold_sentence(config: dict[str, Any], classes: list[str]) -> str:
    """The threshold rule of classification.threshold."""
    rule = config.get("classification", {}).get("threshold", "youden")
    predicted = f"A study is predicted {classes[-1]} when its probability reaches the threshold"
    if rule == "youden":
        return (
            f"{predicted}, chosen for each run on the validation set by Youden's J: the "
            "threshold that maximises sensitivity + specificity − 1 over the validation "
            "studies (classification.threshold: youden), then applied unchanged to the test set."
        )
    return f"{predicted} {number(float(rule))}, fixed by classification.threshold."


def metrics_paragraphs(config: dict[str, Any], classes: list[str]) -> list[str]:
    """The metric definitions and the bootstrap."""
    positive, resamples = classes[-1], config.get("classification", {}).get("bootstrap")
    several = (
        f" With {len(classes)} classes, sensitivity, specificity, precision, F1 and AUC are "
        f"those of {positive} against the rest; accuracy and κ are over all classes."
        if len(classes) > 2
        else ""
    )
    return [
        f"Metrics count studies, with {positive} as the positive class: accuracy = "
        "(TP+TN)/n, sensitivity = TP/(TP+FN), specificity = TN/(TN+FP), precision = "
        "TP/(TP+FP), F1 = 2TP/(2TP+FP+FN), ROC AUC the area under the ROC curve of the study "
        "probabilities (the Mann–Whitney statistic, ties counted one half; free of the "
        "threshold), and Cohen's κ = (p_o − p_e)/(1 − p_e), the agreement of predicted and "
        f"true class beyond the agreement expected by chance (Harrison).{several} A metric "
        "whose denominator is zero is undefined (–). The confusion matrices count studies, "
        "rows the true class and columns the predicted one.",
        "Intervals are percentile bootstrap 95 % intervals over patients: "
        f"{resamples} resamples of the patients with replacement (classification.bootstrap), "
        "each resampled patient bringing all its studies, so a patient's studies are never "
        "counted as independent. The band of a ROC curve spans the 2.5th to 97.5th "
        "percentiles of the sensitivity at each false-positive rate.",
    ]


def methods_chapter(inputs: ReportInputs, label: str = "2") -> Chapter:
    """The methods, written from the configuration and the sweep: what is swept, the network,
    initialisation, optimiser, loss, augmentation and schedule of every run, the checkpoint
    selection and final models, the study probability, threshold, metrics and bootstrap."""
    config, sweep = inputs.config, inputs.sweep
    runs = sweep_runs(config, sweep)
    train = {**config["train"], **(sweep.get("fixed") or {})}
    levels = _levels(config, sweep)
    confusion = read_table(inputs.tables["confusion"], text=["model", "split", "true", "predicted"])
    classes = class_order(config, confusion)
    packed = config.get("preprocess", {}).get("image_size")
    blocks: list[Any] = []
    if levels:
        swept = Table.of(
            "cls-swept",
            "Swept hyperparameters, their levels and the value of the base run.",
            swept_frame(runs, sweep, train),
        )
        blocks += [
            text(
                "{how} {table} lists the swept hyperparameters.",
                how=sweep_text(runs, sweep),
                table=swept,
            ),
            swept,
        ]
    else:
        blocks.append(text(sweep_text(runs, sweep)))
    run_ids, imagenet = [r.run_id for r in runs], imagenet_files(runs, inputs.provenance)
    blocks.append(
        text(
            " ".join(
                [
                    network_sentence(train, levels, classes, packed, bool(imagenet)),
                    initialisation_sentence(train, levels, run_ids, imagenet),
                ]
            )
        )
    )
    blocks.append(
        text(
            " ".join(
                [
                    optimiser_sentence(train, levels),
                    loss_sentence(train, levels),
                    augmentation_sentence(train, levels),
                    schedule_sentence(train, levels),
                ]
            )
        )
    )
    chosen = [selection_sentence(config), final_sentence(config.get("final", {}))]
    chosen.append(halving_sentence(config, sweep))
    blocks.append(text(" ".join(sentence for sentence in chosen if sentence)))
    folds = int(config.get("split", {}).get("folds") or 0)
    if folds:
        blocks.append(
            text(
                "Every configuration was trained with {k}-fold cross-validation: {k} runs, each "
                "validated on its own fold and trained on the others; a configuration's score "
                "is over its pooled out-of-fold studies, each scored by the fold that never "
                "trained on it.",
                k=folds,
            )
        )
    metrics = Section(
        "cls-metrics-methods",
        "Study probability, threshold and metrics",
        [
            text(study_probability_sentence(config, classes)),
            text(threshold_sentence(config, classes)),
            *(text(p) for p in metrics_paragraphs(config, classes)),
        ],
    )
    return Chapter("methods", label, "Methods", [*blocks, metrics])


# ---------------------------------------------------------------- results


def _counts(table: pd.DataFrame, split: str) -> tuple[int, int]:
    """(studies, patients) of a split of classification_metrics.csv (the most any model
    was scored on)."""
    rows = table[table["split"] == split]
    return int(rows["n_studies"].max()), int(rows["n_patients"].max())


def _split_text(table: pd.DataFrame, split: str) -> str:
    n_studies, n_patients = _counts(table, split)
    name = f"{SPLIT_NAMES.get(split, split)} set"
    return f"the {name} ({studies(n_studies)} of {plural(n_patients, 'patient')})"


def metrics_frame(table: pd.DataFrame, labels: dict[str, str]) -> tuple[pd.DataFrame, list]:
    """Metrics (rows) × split and final model (columns) of classification_metrics.csv as
    "value [low, high]"; with more than one model, also the group header of the splits."""
    splits = [s for s in ["val", "test"] if s in set(table["split"])]
    cells = table.set_index(["model", "split", "metric"])
    rows = []
    for metric, name in METRICS.items():
        row = [name]
        for split in splits:
            for model in labels:
                key = (model, split, metric)
                row.append(
                    interval_cell(*cells.loc[key, ["value", "low", "high"]])
                    if key in cells.index
                    else NA
                )
        rows.append(row)
    if len(labels) == 1:
        columns = [SPLIT_NAMES[s].capitalize() for s in splits]
        return pd.DataFrame(rows, columns=["Metric", *columns]), []
    columns = [f"{labels[m]}" for _ in splits for m in labels]
    header = [("", 1), *((f"{SPLIT_NAMES[s].capitalize()} set", len(labels)) for s in splits)]
    frame = pd.DataFrame(rows, columns=["Metric", *columns])
    return frame, header


def study_type_frame(table: pd.DataFrame, labels: dict[str, str], positive: str) -> pd.DataFrame:
    """study_types.csv's test rows in the layout of Kaliyugarsan's Table 5.1, extended: per
    final model the study types and All, with studies, patients, positive studies, and
    accuracy, sensitivity, specificity and κ as "value [low, high]"."""
    test = table[table["split"] == "test"]
    rows = []
    for model, name in labels.items():
        for row in test[test["model"] == model].itertuples(index=False):
            values = [
                interval_cell(getattr(row, m), getattr(row, f"{m}_low"), getattr(row, f"{m}_high"))
                for m in STUDY_TYPE_METRICS
            ]
            kind = "All" if row.study_type == ALL else row.study_type
            counts = [integer(row.n_studies), integer(row.n_patients), integer(row.n_positive)]
            rows.append([name, kind, *counts, *values])
    columns = ["Model", "Study type", "Studies", "Patients", sentence_case(positive)]
    columns += [METRICS[m] for m in STUDY_TYPE_METRICS]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.drop(columns="Model") if len(labels) == 1 else frame


def _result_sentence(table: pd.DataFrame, model: str, split: str = "test") -> str:
    """ "m reached an accuracy of … , sensitivity …, specificity … and ROC AUC …"."""
    cells = table[(table["model"] == model) & (table["split"] == split)].set_index("metric")

    def cell(metric: str) -> str:
        if metric not in cells.index:
            return NA
        return interval_cell(*cells.loc[metric, ["value", "low", "high"]])

    return (
        f"{model} reached an accuracy of {cell('accuracy')}, a sensitivity of "
        f"{cell('sensitivity')}, a specificity of {cell('specificity')}, a ROC AUC of "
        f"{cell('auc')} and a Cohen's κ of {cell('kappa')}"
    )


def _threshold_text(config: dict[str, Any], table: pd.DataFrame, labels: dict[str, str]) -> str:
    """The decision threshold of each final model and how it was chosen."""
    thresholds = []
    for model in labels:
        rows = table[(table["model"] == model) & (table["split"] == "test")]
        if len(rows):
            thresholds.append(f"{number(rows['threshold'].iloc[0])} for {model}")
    rule = config.get("classification", {}).get("threshold", "youden")
    if rule == "youden":
        n_studies, n_patients = _counts(table, "val") if (table["split"] == "val").any() else (0, 0)
        how = (
            "chosen on the validation set by Youden's J (the threshold that maximises "
            "sensitivity + specificity − 1 over its "
            f"{studies(n_studies)} of {plural(n_patients, 'patient')}) and applied unchanged "
            "to the test set"
        )
    else:
        how = "fixed by classification.threshold, not chosen on the data"
    return f"The decision threshold on the study probability was {join_words(thresholds)}, {how}."


def _type_extremes(table: pd.DataFrame, model: str) -> str | None:
    """The test study types of highest and lowest accuracy of a model, with the studies and
    patients behind each; None with fewer than two study types of defined accuracy."""
    rows = table[(table["model"] == model) & (table["split"] == "test")]
    rows = rows[rows["study_type"] != ALL].dropna(subset=["accuracy"])
    if len(rows) < 2:
        return None
    ordered = rows.sort_values(["accuracy", "study_type"], ascending=[False, True], kind="stable")
    best, worst = ordered.iloc[0], ordered.iloc[-1]

    def said(row: pd.Series) -> str:
        accuracy = interval_cell(row["accuracy"], row["accuracy_low"], row["accuracy_high"])
        return (
            f"{row['study_type']} ({accuracy}, "
            f"{studies(int(row['n_studies']))} of {plural(int(row['n_patients']), 'patient')})"
        )

    return f"{model}'s test accuracy was highest on {said(best)} and lowest on {said(worst)}."


def error_counts(confusion: pd.DataFrame, model: str, classes: list[str]) -> dict[str, int]:
    """A model's test false positives and false negatives and the studies of the negative and
    positive classes (confusion.csv): keys fp, negative, fn, positive."""
    cells = confusion[(confusion["model"] == model) & (confusion["split"] == "test")]
    positive = classes[-1]
    negatives, positives = cells[cells["true"] != positive], cells[cells["true"] == positive]
    return {
        "fp": int(negatives.loc[negatives["predicted"] == positive, "count"].sum()),
        "negative": int(negatives["count"].sum()),
        "fn": int(positives.loc[positives["predicted"] != positive, "count"].sum()),
        "positive": int(positives["count"].sum()),
    }


def gallery_figure(
    inputs: ReportInputs, confusion: pd.DataFrame, model: str, classes: list[str], n: int
) -> Figure:
    """The final test's gallery of a model's most confident errors
    (`inputs.classification["gallery"][model]`), its caption counting what it shows."""
    counts, positive = error_counts(confusion, model, classes), classes[-1]
    fp, fn = min(n, counts["fp"]), min(n, counts["fn"])
    return Figure.of(
        f"cls-gallery-{model}",
        f"The most confident errors of final model {model} on the test set: its {fp} most "
        f"confident of {plural(counts['fp'], 'false positive')} (the highest study probability "
        f"of {positive} among the true {'/'.join(classes[:-1])} studies) and {fn} of "
        f"{plural(counts['fn'], 'false negative')} (the lowest among the true {positive} "
        "ones), each shown by its study's most (false positive) or least (false negative) "
        f"{positive}-looking image, with study id, study type and study probability.",
        inputs.classification["gallery"][model],
    )


def _errors_text(confusion: pd.DataFrame, model: str, classes: list[str]) -> str:
    """ "On the test set, m called 3 of the 20 normal studies abnormal (false positives) and
    missed 2 of the 10 abnormal studies (false negatives)" from confusion.csv."""
    counts, positive = error_counts(confusion, model, classes), classes[-1]
    fp, fn, n_negative, n_positive = (counts[k] for k in ("fp", "fn", "negative", "positive"))
    others = "/".join(c for c in classes if c != positive)
    return (
        f"on the test set, {model} called {fp} of the {n_negative} {others} "
        f"{'study' if n_negative == 1 else 'studies'} {positive} (false positives) and missed "
        f"{fn} of the {n_positive} {positive} {'study' if n_positive == 1 else 'studies'} "
        "(false negatives)"
    )


def _calibration_text(table: pd.DataFrame, model: str) -> str:
    """ "m had an ECE of 0.081 [0.050, 0.140] on the validation set (120 studies of 80 patients,
    10 bins) and … on the test set (…)" from calibration.csv."""
    said = []
    for split in ["val", "test"]:
        rows = table[(table["model"] == model) & (table["split"] == split)]
        if len(rows):
            row = rows.iloc[0]
            said.append(
                f"{interval_cell(row['ece'], row['ece_low'], row['ece_high'])} on the "
                f"{SPLIT_NAMES[split]} set ({studies(int(row['n_studies']))} of "
                f"{plural(int(row['n_patients']), 'patient')}, {plural(int(row['bins']), 'bin')})"
            )
    return f"{model} had an ECE of {' and '.join(said)}"


def calibration_section(
    inputs: ReportInputs, labels: dict[str, str], classes: list[str]
) -> Section:
    """The final models' calibration (calibration.csv): what ECE is, each model's ECE with its
    interval per split, and the reliability diagrams and how to read them."""
    table = read_table(inputs.tables["calibration"], text=["model", "split", "probability"])
    if (table["probability"] == TOP_LABEL).any():
        score = "confidence"
        what = (
            "The top-label expected calibration error (ECE) of the study confidences (with "
            f"{len(classes)} classes: a study's highest class probability, against whether that "
            "class is its true one)"
        )
        outcome = "studies whose most probable class is the true one"
    else:
        score, outcome = "probability", f"{classes[-1]} studies"
        what = f"The expected calibration error (ECE) of the study probabilities of {classes[-1]}"
    counts = []
    for split in [s for s in ["val", "test"] if (table["split"] == s).any()]:
        rows = table[table["split"] == split]
        row = rows.loc[rows["n_studies"].idxmax()]
        counts.append(
            f"the {SPLIT_NAMES[split]} set has {studies(int(row['n_studies']))} in "
            f"{plural(int(row['bins']), 'bin')}"
        )
    figure = Figure.of(
        "cls-calibration",
        f"Reliability diagrams of the final models: per equal-width bin of the study {score}, "
        f"the share of {outcome} against the bin's mean {score}, the diagonal (perfect "
        f"calibration) dashed and the studies of each bin as bars beneath; {' and '.join(counts)}."
        " The legend gives each model's expected calibration error (ECE) with its bootstrap "
        "95 % interval over patients.",
        inputs.figures["cls_calibration"],
    )
    results = [_calibration_text(table, model) for model in labels]
    paragraph = text(
        "{what} measures how far the predicted probabilities stray from the observed "
        "frequencies: the studies are grouped into equal-width bins of their {score} (about "
        "ten studies a bin on average, 2 to 10 bins), and the ECE is the mean over the "
        "studies of the gap between the share of {outcome} in a study's bin and the bin's mean "
        "{score} (each bin's gap weighed by its share of the studies). It is 0 for "
        "perfectly calibrated probabilities and at most 1, does not depend on the threshold, "
        "is computed on studies (not images) and is biased upwards when bins hold few studies; "
        "its interval is the bootstrap 95 % interval over patients. {results}. In {figure}, a "
        "point below the diagonal marks a bin whose probabilities are too high (fewer "
        "{outcome} than predicted), one above it probabilities too low; the bars beneath count "
        "the studies each point rests on.",
        what=what,
        score=score,
        outcome=outcome,
        results=join_words(results),
        figure=figure,
    )
    return Section("cls-final-calibration", "Calibration", [paragraph, figure], level=3)


def final_section(inputs: ReportInputs) -> Section:
    """The final models' study-level results on validation and test: metrics, per study type,
    confusion matrices, ROC curves, probabilities, the threshold, the gallery of errors and the
    calibration."""
    config, labels = inputs.config, final_models(inputs)
    metrics = read_table(inputs.tables["classification_metrics"], text=["model", "split", "metric"])
    types = read_table(inputs.tables["study_types"], text=["model", "split", "study_type"])
    confusion = read_table(inputs.tables["confusion"], text=["model", "split", "true", "predicted"])
    classes = class_order(config, confusion)
    splits = [s for s in ["val", "test"] if (metrics["split"] == s).any()]
    described = join_words([_split_text(metrics, s) for s in splits])
    frame, header = metrics_frame(metrics, labels)
    metrics_table = Table.of(
        "cls-metrics",
        f"Study-level metrics of the final {'model' if len(labels) == 1 else 'models'} on "
        f"{described}, each with its bootstrap 95 % interval over patients, at the decision "
        "threshold chosen on validation.",
        frame,
        group_header=header,
        notes=["The format is “value [low, high]”; ROC AUC does not depend on the threshold."],
    )
    test_studies, test_patients = _counts(metrics, "test")
    type_table = Table.of(
        "cls-study-types",
        "Test results per study type (Kaliyugarsan's Table 5.1, extended): studies, patients, "
        f"{classes[-1]} studies, accuracy, sensitivity, specificity and Cohen's κ, each with its "
        f"bootstrap 95 % interval over the study type's patients; All is the whole test set "
        f"({studies(test_studies)} of {plural(test_patients, 'patient')}).",
        study_type_frame(types, labels, classes[-1]),
        notes=["The format is “value [low, high]”; – is undefined (no study of the class)."],
    )
    figures = inputs.figures
    confusion_figure = Figure.of(
        "cls-confusion",
        "Confusion matrices of the final models on the validation and test sets (after "
        "Kaliyugarsan's Figs 5.5 and 5.7): rows the true class, columns the predicted one, each "
        "cell the number of studies and its share of the row.",
        figures["cls_confusion"],
    )
    roc = Figure.of(
        "cls-roc",
        "ROC curves of the study probabilities of the final models on the validation and test "
        "sets, the bootstrap 95 % band over patients shaded and the chance diagonal dashed; the "
        "legend gives the AUC with its interval.",
        figures["cls_roc"],
    )
    probabilities = Figure.of(
        "cls-probabilities",
        f"Study probabilities of {classes[-1]} of the {studies(test_studies)} of the test set, "
        "by true class, with the decision threshold dashed.",
        figures["cls_probabilities"],
    )
    n = int(config.get("classification", {}).get("gallery", 4))
    galleries = [gallery_figure(inputs, confusion, model, classes, n) for model in labels]
    blocks: list[Any] = []
    same = " (the same patients for every model)" if len(labels) > 1 else ""
    for model in labels:
        blocks.append(
            text(
                "On the {patients} of the test set ({n_studies}){same}, {result} ({table}).",
                patients=plural(test_patients, "patient"),
                n_studies=studies(test_studies),
                same=same,
                result=_result_sentence(metrics, model),
                table=metrics_table,
            )
        )
    blocks += [metrics_table, text(_threshold_text(config, metrics, labels))]
    extremes = [s for s in (_type_extremes(types, m) for m in labels) if s]
    blocks.append(
        text(
            "{table} breaks the test results down by study type. {extremes}",
            table=type_table,
            extremes=" ".join(extremes),
        )
    )
    blocks.append(type_table)
    errors = [_errors_text(confusion, m, classes) for m in labels]
    blocks += [
        text(
            "{figure} shows the confusion matrices: {errors}.",
            figure=confusion_figure,
            errors=join_words(errors),
        ),
        confusion_figure,
        text(
            "{roc} shows the ROC curves and {probabilities} the study probabilities against the "
            "threshold; {galleries} {show} the most confident errors on the test set.",
            roc=roc,
            probabilities=probabilities,
            galleries=galleries,
            show=verb(len(galleries), "shows", "show"),
        ),
        roc,
        probabilities,
        *galleries,
        calibration_section(inputs, labels, classes),
    ]
    return Section("cls-final", "Final models", blocks)


def results_chapter(
    inputs: ReportInputs, sections: Sequence[Any] = (), label: str = "3"
) -> Chapter:
    """The results: `sections` (the sweep's, shared with segmentation: failed runs,
    hyperparameter effects, best runs) and then the final models' section."""
    return Chapter("results", label, "Results", [*sections, final_section(inputs)])


def chapters(inputs: ReportInputs, all_runs: Table) -> list[Chapter]:
    """The classification thesis: its data and methods, the sweep's results as for
    segmentation (shared sections, under successive halving with the training budget) followed
    by the final models' study-level results, and the same appendices."""
    sweep = [
        *failed_runs(inputs, all_runs),
        *budget.sections(inputs),
        hyperparameter_effects(inputs, all_runs),
        best_models(inputs),
    ]
    return [
        data_chapter(inputs, "1"),
        methods_chapter(inputs, "2"),
        results_chapter(inputs, sweep, "3"),
        *appendix.chapters(inputs, all_runs),
    ]


def report_inputs(
    results: str | Path,
    config: dict[str, Any],
    sweep: dict[str, Any],
    qc_subjects: list[str],
    benchmarks: str | Path | None = None,
) -> ReportInputs:
    """The files of the classification run whose results folder is `results`, as
    `ReportInputs.under` finds them, with its own tables and figures
    (`layout.classification_thesis_files`, under successive halving with the training
    budget's), and its images and final models' test predictions and galleries in place of the
    segmentation's (it has no QC figures: `qc_subjects` is empty)."""
    inputs = ReportInputs.under(results, config, sweep, qc_subjects, benchmarks)

    def under(pattern: str, **wildcards: str) -> Path:
        return layout.under(results, pattern, **wildcards)

    finals = pd.read_csv(inputs.final, dtype=str)["run_id"].tolist()
    files = layout.classification_thesis_files(swept_names(sweep), budget=halving(config, sweep))
    return replace(
        inputs,
        tables=layout.named_under(results, files, "table_"),
        figures=layout.named_under(results, files, "figure_"),
        outlines={},
        unlabelled={},
        classification={
            "images": under(layout.IMAGES_TABLE),
            "test_per_study": {r: under(layout.TEST_PER_STUDY, run=r) for r in finals},
            "test_per_image": {r: under(layout.TEST_PER_IMAGE, run=r) for r in finals},
            "gallery": {r: under(layout.GALLERY, run=r) for r in finals},
        },
        thesis=THESIS,
    )


def final_summary(inputs: ReportInputs, document: Document) -> list[Paragraph]:
    """The summary's paragraphs on the final models: their study-level AUC and accuracy on the
    test set, at the threshold chosen on validation."""
    table = document.find("cls-metrics")
    if table is None:
        return []
    metrics = read_table(inputs.tables["classification_metrics"], text=["model", "split", "metric"])
    test = metrics[metrics["split"] == "test"].set_index(["model", "metric"])
    finals = pd.read_csv(inputs.final, dtype=str, keep_default_na=False)["run_id"].tolist()
    out = []
    for model in finals:
        if (model, "auc") not in test.index or (model, "accuracy") not in test.index:
            continue
        auc, accuracy = test.loc[(model, "auc")], test.loc[(model, "accuracy")]
        out.append(
            text(
                "On the {studies} of {patients} in the test set, the final model {model} reached "
                "a study-level ROC AUC of {auc}{auc_ci} and an accuracy of {accuracy}"
                "{accuracy_ci} at the threshold {threshold} chosen on validation ({table}).",
                studies=plural(int(auc["n_studies"]), "study", "studies"),
                patients=plural(int(auc["n_patients"]), "patient"),
                model=model,
                auc=number(auc["value"]),
                auc_ci=_bounds(auc),
                accuracy=number(accuracy["value"]),
                accuracy_ci=_bounds(accuracy),
                threshold=number(accuracy["threshold"]),
                table=table,
            )
        )
    return out


def _bounds(row: pd.Series) -> str:
    """ " [low, high]" of a metrics row, nothing when undefined."""
    interval = ci_text(row["low"], row["high"])
    return "" if interval == NA else f" {interval}"
