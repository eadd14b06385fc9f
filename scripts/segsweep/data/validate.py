"""Every problem of a dataset in one pass: the listing and every file's header, no voxels.

`python -m segsweep validate` prints one table of them (subject, file, problem), and the workflow
runs the same check when it plans (`plan_subjects`): with `data.on_invalid: error` any problem
stops planning with the whole table; with `skip`, every subject named by a problem is left out
(all its rows, for a duplicated id) and listed with the reason in dropped.csv. What only the
voxels show (NaN/inf, label values, truncated data) stays with the per-subject ingest jobs, which
under `--keep-going` all report.

Checks: duplicate ids and the layout's own listing problems (`segsweep.data.datasets`); missing
files; unsupported or unreadable headers; images that are not 3D (or 4D with channels last);
channel counts against the named channels; every channel, mask and class mask against the first
channel's size, spacing, origin and direction (within `data.tolerance`); a file listed twice;
labelled counts against the dataset's `numTraining`.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segsweep.data.datasets import DATASET_FOLD, LAYOUT_NAMES, Dataset, Problem, read_dataset
from segsweep.errors import ConfigError, InputError
from segsweep.io.images import brought_header


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


CHANNEL_TOLERANCE = 1e-3  # mm: channels are stacked voxel by voxel (as ingest checks them)
PROBLEM_COLUMNS = ("subject", "file", "problem")


def _grid_problem(
    header: dict[str, Any], reference: dict[str, Any], tolerance: float, what: str
) -> str | None:
    """What differs between a mask's or channel's grid and the image's (the first channel's),
    in the words ingest uses for the same check; None when they match."""
    against = "image" if what == "mask" else "first channel"
    if header["size"] != reference["size"]:
        return f"shape mismatch: {what} size {header['size']} != {against} size {reference['size']}"
    differences = []
    for key in ("spacing", "origin", "direction"):
        difference = float(np.max(np.abs(np.subtract(header[key], reference[key]))))
        if difference > tolerance:
            ours = ", ".join(f"{v:.4g}" for v in reference[key])
            theirs = ", ".join(f"{v:.4g}" for v in header[key])
            differences.append(
                f"{key} differs by {difference:.3g} ({against} ({ours}), {what} ({theirs}), "
                f"tolerance {tolerance:g})"
            )
    if not differences:
        return None
    mismatch = "geometry mismatch" if what == "mask" else f"{what} geometry mismatch"
    return f"{mismatch}: " + "; ".join(differences)


def _header(subject: str, path: str, problems: list[Problem]) -> dict[str, Any] | None:
    try:
        header = brought_header(path, subject)
    except InputError as error:
        problems.append(Problem(subject, path, error.problem))
        return None
    if header["dimension"] not in (3, 4):
        problems.append(Problem(subject, path, f"expected a 3D image, got {header['dimension']}D"))
        return None
    return header


def subject_problems(
    subject: str, row: dict[str, Any], channels: int | None, tolerance: float
) -> list[Problem]:
    """The header-level problems of one subject (`row` of a subject table). `channels`: how
    many channels its images must hold together (None: as many as they do)."""
    problems: list[Problem] = []
    images = row["images"]
    headers = [_header(subject, path, problems) for path in images]
    first = headers[0]
    for path, header in zip(images, headers, strict=True):
        if header and header["dimension"] == 4 and len(images) > 1:
            problems.append(Problem(subject, path, "a 4D image can only be a subject's only image"))
    held = sum(h["channels"] for h in headers if h) if all(headers) else None
    if held is not None and channels is not None and held != channels:
        problems.append(
            Problem(subject, images[0], f"images hold {held} channels, {channels} are named")
        )
    if first and first["size"] is not None:
        for path, header in zip(images[1:], headers[1:], strict=True):
            if header and header["size"] is not None:
                problem = _grid_problem(header, first, CHANNEL_TOLERANCE, "channel")
                problems += [Problem(subject, path, problem)] if problem else []
    masks = [row["mask"]] if row.get("mask") else []
    masks += list(row.get("class_masks", {}).values())
    for path in masks:
        header = _header(subject, path, problems)
        if header and header["dimension"] != 3:
            problems.append(
                Problem(subject, path, f"a mask must be 3D, got {header['dimension']}D")
            )
        elif header and first and first["size"] is not None and header["size"] is not None:
            problem = _grid_problem(header, first, tolerance, "mask")
            problems += [Problem(subject, path, problem)] if problem else []
    if row.get("roi"):
        _header(subject, row["roi"], problems)
    return problems


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


def check_dataset(
    dataset: Dataset, channels: int | None = None, tolerance: float = 1e-3
) -> list[Problem]:
    """Every problem of `dataset` that its listing and headers show, in subject order (the
    dataset's own first)."""
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
    for subject, row in dataset.subjects.items():
        problems += subject_problems(subject, row, channels, tolerance)
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
    """What planning takes from the data: the dataset as read, the subjects it keeps, the
    classes and channels in force (config, else the dataset's), the number of folds the
    dataset brings (0: none) and the problems that left subjects out (`on_invalid: skip`)."""

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
    data: dict[str, Any], headers: bool = True
) -> tuple[Dataset, dict[str, int], list[str] | None, list[Problem]]:
    """The dataset of the `data` config section (manifest, labels, channels, tolerance) read
    and checked: (dataset, classes and channels in force, every problem); without `headers`
    only the problems of its listing (no file is opened)."""
    path = data["manifest"]
    dataset = read_dataset(path, data.get("labels"), data.get("channels"))
    labels = resolved_labels(dataset, data.get("labels"))
    channels = resolved_channels(dataset, data.get("channels"))
    if not headers:
        return dataset, labels, channels, list(dataset.problems)
    problems = check_dataset(dataset, len(channels) if channels else None, data["tolerance"])
    return dataset, labels, channels, problems


def plan_subjects(data: dict[str, Any], headers: bool = True) -> Plan:
    """The brought dataset of the `data` config section, checked (`examine`): raises
    InputError with the table of every problem under `on_invalid: error`; under `skip` leaves
    out the subjects the problems name. `headers=False` skips reading the files' headers: for
    a job of a workflow whose planning has read them already and found no problem."""
    dataset, labels, channels, problems = examine(data, headers)
    if problems and data.get("on_invalid", "error") == "error":
        raise InputError(
            None,
            str(data["manifest"]),
            f"{plural(len(problems), 'problem')} (data.on_invalid: skip leaves their subjects "
            "out):\n" + problem_table(problems),
        )
    dropped = {p.subject for p in problems}
    kept = {s: row for s, row in dataset.subjects.items() if s not in dropped}
    if not kept:
        raise InputError(None, str(data["manifest"]), "no subject is left without problems")
    folds = {row["extra"][DATASET_FOLD] for row in kept.values() if DATASET_FOLD in row["extra"]}
    return Plan(dataset, kept, labels, channels, len(folds), problems)


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
    if problems:
        print(f"{plural(len(problems), 'problem')}:\n{problem_table(problems)}")
        sys.exit(1)
    print("no problems in the listing and the headers")


if __name__ == "__main__":
    main()
