"""Every problem of a dataset in one pass, voxels included, as one table (subject, file, problem).

The listing's problems (duplicate ids and the layout's own, `segsweep.data.datasets`; a file
listed twice; labelled counts against the dataset's `numTraining`) are found when the workflow
plans (`plan_subjects`: no file is opened), and the subjects they name are left out of its jobs.
Each other subject is checked by its own job (`segsweep.data.ingest.examine_subject`: every
problem its headers show, `segsweep.data.headers`, else the first its voxels show: truncated
data, NaN/inf, label values). The data_manifest checkpoint gathers both into one table
(`gather`): with `data.on_invalid: error` any problem stops the workflow with the whole table;
with `skip` every subject a problem names is left out (all its rows, for a duplicated id) and
listed with the reason in dropped.csv. `python -m segsweep validate` prints the same table.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from segsweep.data.datasets import DATASET_FOLD, LAYOUT_NAMES, Dataset, Problem, read_dataset
from segsweep.errors import ConfigError, InputError


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


PROBLEM_COLUMNS = ("subject", "file", "problem")


def _listed_twice(subjects: dict[str, dict[str, Any]]) -> list[Problem]:
    """A file that two listings name (two subjects' images, or a subject's image as its mask)."""
    owners: dict[str, list[str]] = {}
    for subject, row in subjects.items():
        files = [*row["images"], row.get("mask"), *row.get("class_masks", {}).values()]
        for path in filter(None, files):
            owners.setdefault(str(Path(path).resolve()), []).append(subject)
    problems = []
    for path, listed in owners.items():
        if len(listed) > 1:
            others = ", ".join(sorted(set(listed)))
            for subject in sorted(set(listed)):
                problems.append(Problem(subject, path, f"file listed twice (by {others})"))
    return problems


def listing_problems(dataset: Dataset) -> list[Problem]:
    """Every problem of `dataset` that its listing shows (no file is opened), in subject order
    (the dataset's own first)."""
    problems = list(dataset.problems)
    labelled = sum(row["labelled"] for row in dataset.subjects.values())
    if dataset.expected_labelled is not None and dataset.expected_labelled != labelled:
        problems.append(
            Problem(
                "",
                dataset.path,
                f"numTraining is {dataset.expected_labelled} but {labelled} labelled cases "
                "are listed",
            )
        )
    problems += _listed_twice(dataset.subjects)
    return ordered(problems)


def ordered(problems: list[Problem]) -> list[Problem]:
    """The table's order: the dataset's own problems first, then subject by subject."""
    return sorted(problems, key=lambda p: (p.subject != "", p.subject))


def problem_table(problems: list[Problem]) -> str:
    """The problems as one aligned text table (subject, file, problem)."""
    rows = [PROBLEM_COLUMNS, *((p.subject or "(dataset)", p.file, p.problem) for p in problems)]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(
        f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}".rstrip() for row in rows
    )


@dataclass(frozen=True)
class Plan:
    """What planning takes from the data: the dataset as read, the subjects its jobs check
    (those no listing problem names), the classes and channels in force (config, else the
    dataset's), the number of folds the dataset brings (0: none) and the listing's problems
    (the first rows of the table the data_manifest checkpoint gathers)."""

    dataset: Dataset
    subjects: dict[str, dict[str, Any]]
    labels: dict[str, int]
    channels: list[str] | None
    folds: int
    problems: list[Problem]


def resolved_labels(dataset: Dataset, labels: dict[str, int] | None) -> dict[str, int]:
    """data.labels if set, else the dataset's classes; ConfigError if neither names any (a
    CSV manifest names none: its masks' columns and values need data.labels)."""
    if labels:
        return dict(labels)
    if dataset.labels:
        return dict(dataset.labels)
    raise ConfigError(
        "data.labels",
        labels,
        f"{{class: label value}} of the masks: {LAYOUT_NAMES[dataset.layout]} "
        f"({dataset.path}) names no classes",
    )


def resolved_channels(dataset: Dataset, channels: list[str] | None) -> list[str] | None:
    """data.channels if set (for a dataset: as many names as it has channels), else the
    dataset's channel names (None for a CSV manifest: its one image column)."""
    if dataset.layout == "manifest" or not channels:
        return list(channels) if channels else dataset.channels
    if dataset.channels and len(channels) != len(dataset.channels):
        raise ConfigError(
            "data.channels",
            channels,
            f"{len(dataset.channels)} names: the dataset has channels {dataset.channels}",
        )
    return list(channels)


def examine(
    data: dict[str, Any],
) -> tuple[Dataset, dict[str, int], list[str] | None, list[Problem]]:
    """The dataset of the `data` config section (manifest, labels, channels) read: (dataset,
    classes and channels in force, the problems of its listing). Opens no image file."""
    path = data["manifest"]
    dataset = read_dataset(path, data.get("labels"), data.get("channels"))
    labels = resolved_labels(dataset, data.get("labels"))
    channels = resolved_channels(dataset, data.get("channels"))
    return dataset, labels, channels, listing_problems(dataset)


def plan_subjects(data: dict[str, Any]) -> Plan:
    """The brought dataset of the `data` config section as the workflow plans it (`examine`):
    the subjects a listing problem names are left out of its jobs, their problems kept for
    the table; InputError when none is left."""
    dataset, labels, channels, problems = examine(data)
    named = {p.subject for p in problems}
    kept = {s: row for s, row in dataset.subjects.items() if s not in named}
    if not kept:
        raise InputError(
            None,
            str(data["manifest"]),
            "no subject is left without problems:\n" + problem_table(problems),
        )
    folds = {row["extra"][DATASET_FOLD] for row in kept.values() if DATASET_FOLD in row["extra"]}
    return Plan(dataset, kept, labels, channels, len(folds), problems)


def workflow_subjects(data: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """(subject_id → raw paths, source and whether it is labelled; the data as read: the
    layout, classes, channels, a datalist's folds and the listing's problems, which left
    subjects out) of the `data` config section, as the workflow plans its per-subject jobs.
    Brought data is read in whichever layout data.manifest holds; only its listing is checked
    here (no file is opened: every job parses the workflow again), each subject by its
    ingest_check job, and the data_manifest checkpoint gathers every problem in one table."""
    if data["source"] == "synthetic":
        from segsweep import layout
        from segsweep.data.cohort import LABELS as COHORT_LABELS
        from segsweep.data.cohort import plan_cohort

        table = {}
        for spec in plan_cohort(data["synthetic"]):
            image = layout.path(layout.COHORT_IMAGE, subject=spec.subject_id)

            def labelled(pattern: str, spec: Any = spec) -> str:
                """A labelled subject's file, "" for an unlabelled one."""
                return layout.path(pattern, subject=spec.subject_id) if spec.labelled else ""

            table[spec.subject_id] = {
                "image": image,
                "mask": labelled(layout.COHORT_MASK),
                "roi": labelled(layout.COHORT_ROI),
                "source": spec.source,
                "perspective": spec.perspective,
                "labelled": spec.labelled,
                "images": [image],
                "class_masks": {},
                "extra": {},
            }
        read = {
            "layout": "synthetic",
            "labels": data["labels"] or COHORT_LABELS,
            "channels": data["channels"],
            "problems": [],
        }
        return table, read
    if not data["manifest"]:
        raise ConfigError(
            "data.manifest",
            None,
            "a manifest CSV, a MONAI datalist or a Decathlon or nnU-Net v2 folder"
            " when data.source is 'manifest'",
        )
    plan = plan_subjects(data)
    read = {
        "layout": plan.dataset.layout,
        "labels": plan.labels,
        "channels": plan.channels,
        "folds": plan.folds,
        "problems": [vars(problem) for problem in plan.problems],
    }
    return plan.subjects, read


def record_problems(record: dict[str, Any]) -> list[Problem]:
    """The problems of a subject's ingest.json record (none for a valid subject)."""
    if record.get("valid", True):
        return []
    listed = record.get("problems") or [{"file": record.get("file"), "problem": record["problem"]}]
    return [Problem(record["subject_id"], p["file"] or "", p["problem"]) for p in listed]


def stop_on_problems(source: str, problems: list[Problem]) -> None:
    """InputError with the table of every problem (`data.on_invalid: error`); `source` names
    the dataset."""
    if problems:
        raise InputError(
            None,
            source,
            f"{plural(len(problems), 'problem')} (data.on_invalid: skip leaves their subjects "
            "out):\n" + problem_table(ordered(problems)),
        )


def gather(
    records: list[str],
    read: dict[str, Any],
    on_invalid: str,
    out_manifest: str,
    out_dropped: str,
    out_description: str,
) -> None:
    """The data_manifest checkpoint: every subject's ingest.json record (`records`) and the
    listing's problems (`read["problems"]`) in one table; under `on_invalid: error` any
    problem stops with the table (InputError), under `skip` the data manifest marks the
    subjects with problems invalid and dropped.csv lists them. `read`: layout, manifest,
    labels, channels and the listing's problems; with the counts, dataset.json."""
    # imported here: planning imports this module and reads no image
    from segsweep.data.ingest import write_manifests
    from segsweep.io.records import read_json

    if on_invalid == "error":
        listed = [Problem(**p) for p in read["problems"]]
        found = [p for path in records for p in record_problems(read_json(path))]
        stop_on_problems(read.get("manifest") or "data", listed + found)
    write_manifests(records, out_manifest, out_dropped, read["problems"], out_description, read)


def load_data_config(configfiles: list[str | Path]) -> dict[str, Any]:
    """The `data` section as Snakemake would see it: config/config.yaml (where present) with
    each config file merged over it, key by key, and the schema's defaults for the rest."""
    import yaml

    from segsweep.config_schema import complete

    def merge(base: dict, over: dict) -> dict:
        merged = dict(base)
        for key, value in over.items():
            both = isinstance(value, dict) and isinstance(merged.get(key), dict)
            merged[key] = merge(merged[key], value) if both else value
        return merged

    default = Path("config/config.yaml")
    config: dict[str, Any] = {}
    for path in [default] * default.is_file() + [Path(f) for f in configfiles]:
        config = merge(config, yaml.safe_load(path.read_text()) or {})
    return complete(config.get("data") or {}, "data")


def main(argv: list[str] | None = None) -> None:
    """`python -m segsweep validate [--configfile F ...] [PATH]`: every problem of the dataset
    the configuration brings (or of PATH), as one table; exit status 1 when there are any."""
    parser = argparse.ArgumentParser(prog="segsweep validate", description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", help="manifest CSV, datalist or dataset folder")
    parser.add_argument(
        "--configfile",
        action="append",
        default=[],
        help="config files merged over config/config.yaml (where present), in order",
    )
    args = parser.parse_args(argv)
    data = load_data_config(args.configfile)
    if args.path:
        data["manifest"] = args.path
    if not data.get("manifest"):
        parser.error("no dataset: give PATH or a config file setting data.manifest")
    try:
        dataset, labels, channels, problems = examine(data)
    except (InputError, ConfigError) as error:
        sys.exit(f"error: {error}")
    labelled = sum(row["labelled"] for row in dataset.subjects.values())
    print(
        f"{data['manifest']}: {LAYOUT_NAMES[dataset.layout]}; {len(dataset.subjects)} "
        f"subjects ({labelled} labelled); classes {labels}; channels {channels or ['image']}"
    )
    named = {p.subject for p in problems}
    checked = [(s, row) for s, row in dataset.subjects.items() if s not in named]
    for subject, row in tqdm(checked, desc="checking subjects", unit="subject", file=sys.stderr):
        problems += subject_problems(subject, row, labels, channels, data["tolerance"])
    if problems:
        print(f"{plural(len(problems), 'problem')}:\n{problem_table(ordered(problems))}")
        sys.exit(1)
    print("no problems in the listing, the headers and the voxels")


def subject_problems(
    subject: str,
    row: dict[str, Any],
    labels: dict[str, int],
    channels: list[str] | None,
    tolerance: float,
) -> list[Problem]:
    """The problems of one subject (`row` of a subject table) as its workflow job finds them
    (`segsweep.data.ingest.examine_subject`: headers, then voxels)."""
    from segsweep.data.ingest import examine_subject  # as in `gather`

    record = examine_subject(
        subject,
        row["images"],
        labels,
        mask_path=row.get("mask") or None,
        class_masks=row.get("class_masks") or None,
        roi_path=row.get("roi") or None,
        tolerance=tolerance,
        channels=len(channels) if channels else None,
    )
    return record_problems(record)


if __name__ == "__main__":
    main()
