"""The field's dataset layouts read as they come, at DAG parse time (standard library only).

`data.manifest` may point at
- a CSV manifest (`segsweep.data.manifest`);
- a Medical Segmentation Decathlon v1 folder: `dataset.json` with `modality` (index → name),
  `labels` (value → name), `training` (image/label pairs) and `test` (images); multi-modal
  images are one 4D NIfTI each, channels last;
- an nnU-Net v2 raw folder: `imagesTr/{case}_{XXXX}{file_ending}` (one file per channel),
  `labelsTr/{case}{file_ending}`, optional `imagesTs/`, and `dataset.json` with
  `channel_names`, `labels` (name → value), `numTraining` and `file_ending`;
- a MONAI datalist JSON: `training` (and `validation`) entries with `image` (a path or one path
  per channel), `label` and an optional `fold`, and `testing` entries; paths relative to the
  JSON's folder, as MONAI's `load_decathlon_datalist` reads them.

Every reader returns the same subject table as the CSV manifest (subject id → images, mask, ...),
with the dataset's own class names and values and channel names where it has them, and the
problems of the listing itself (a duplicated case, a channel file missing from a case, counts
that disagree with `numTraining`) collected rather than raised, so that `segsweep validate` can
list every problem at once. Unknown keys (real archives carry misspellings such as `relase`)
and AppleDouble `._*` files are ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segsweep.data.manifest import read_manifest
from segsweep.errors import InputError

LAYOUTS = ("manifest", "decathlon", "nnunet", "datalist")
LAYOUT_NAMES = {
    "manifest": "a manifest CSV",
    "decathlon": "a Medical Segmentation Decathlon (v1) folder",
    "nnunet": "an nnU-Net v2 raw dataset folder",
    "datalist": "a MONAI datalist",
}
DATASET_JSON = "dataset.json"
# the column that carries a datalist's own cross-validation fold into the data manifest
DATASET_FOLD = "dataset_fold"
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd")


@dataclass(frozen=True)
class Problem:
    """One problem of a dataset: the subject ('' for the dataset as a whole), the file ('' when
    none) and what is wrong."""

    subject: str
    file: str
    problem: str


@dataclass
class Dataset:
    """A dataset as read: its layout, subject table (as `read_manifest` returns it), the class
    names → label values and channel names it declares (None where it declares none), the
    number of labelled cases it says it has (`numTraining`; None if it does not say) and the
    problems of its listing."""

    layout: str
    path: str
    subjects: dict[str, dict[str, Any]]
    labels: dict[str, int] | None = None
    channels: list[str] | None = None
    expected_labelled: int | None = None
    problems: list[Problem] = field(default_factory=list)


def subject_row(
    images: list[str], mask: str = "", extra: dict[str, str] | None = None, source: str = ""
) -> dict[str, Any]:
    """One subject-table row, in the form the CSV manifest's rows take."""
    return {
        "image": images[0],
        "images": list(images),
        "mask": mask,
        "class_masks": {},
        "roi": "",
        "source": source,
        "perspective": "",
        "labelled": bool(mask),
        "extra": dict(extra or {}),
    }


def detect_layout(path: str | Path) -> str:
    """Which layout `path` holds: from the file's suffix, or for a folder from its
    dataset.json (`channel_names` or `file_ending`: nnU-Net v2; else Decathlon)."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".csv":
        return "manifest"
    if path.is_file() and path.name == DATASET_JSON:
        return detect_layout(path.parent)
    if path.is_file() and path.suffix.lower() == ".json":
        return "datalist"
    if path.is_dir():
        description = _read_json(path / DATASET_JSON)
        return "nnunet" if {"channel_names", "file_ending"} & set(description) else "decathlon"
    if not path.exists():
        raise InputError(None, str(path), "data.manifest not found")
    raise InputError(
        None, str(path), "data.manifest must be a CSV, a datalist JSON or a dataset folder"
    )


def read_dataset(
    path: str | Path, labels: dict[str, int] | None = None, channels: list[str] | None = None
) -> Dataset:
    """The dataset `path` holds, in whichever layout (see the module docstring). `labels` and
    `channels` (data.labels, data.channels) are only needed by the CSV manifest, whose mask
    columns and channel columns they name."""
    path = Path(path)
    if path.is_file() and path.name == DATASET_JSON:
        path = path.parent
    layout = detect_layout(path)
    if layout == "manifest":
        subjects, problems = read_manifest(path, labels or {}, channels)
        return Dataset(layout, str(path), subjects, problems=problems_of(problems))
    reader = {"decathlon": _decathlon, "nnunet": _nnunet, "datalist": _datalist}[layout]
    return reader(path)


def problems_of(found: list[tuple[str, str, str]]) -> list[Problem]:
    return [Problem(*item) for item in found]


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(None, str(path), "not found (a dataset folder needs its dataset.json)")
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(None, str(path), f"not valid JSON ({error})") from None
    if not isinstance(content, dict):
        raise InputError(None, str(path), "expected a JSON object at the top level")
    return content


def _resolve(value: str, folder: Path) -> str:
    """A dataset path as a path from here: relative ones are relative to the dataset's folder
    (`./imagesTr/x.nii.gz` is `imagesTr/x.nii.gz`)."""
    return value if Path(value).is_absolute() else str(folder / Path(value))


def case_name(path: str) -> str:
    """The case id a file stands for: its name without image suffix (`la_003.nii.gz` → la_003)."""
    name = Path(path).name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def _indexed_names(section: Any, key: str, path: Path) -> list[str] | None:
    """Channel names of `modality`/`channel_names` ({"0": "T2", "1": "ADC"}) in index order."""
    if section is None:
        return None
    try:
        order = sorted(section.items(), key=lambda item: int(item[0]))
    except (AttributeError, ValueError):
        raise InputError(None, str(path), f"'{key}' must map channel indices to names") from None
    if [int(index) for index, _ in order] != list(range(len(order))):
        raise InputError(None, str(path), f"'{key}' must number its channels 0, 1, 2, ...")
    return [str(name) for _, name in order]


def class_labels(section: Any, path: Path) -> dict[str, int] | None:
    """Class name → label value from a dataset's `labels`, background (0) left out: Decathlon's
    value → name ({"1": "edema"}) or nnU-Net's name → value ({"edema": 1}). nnU-Net regions
    (a list of values: overlapping targets) and its `ignore` label are refused, naming them:
    segsweep trains on disjoint classes; set data.labels to disjoint classes instead."""
    if section is None:
        return None
    if not isinstance(section, dict):
        raise InputError(None, str(path), "'labels' must be a JSON object")
    if all(re.fullmatch(r"\d+", str(key)) for key in section):
        pairs = [(str(name), int(value)) for value, name in section.items()]
    else:
        pairs = []
        for name, value in section.items():
            if isinstance(value, list):
                raise InputError(
                    None,
                    str(path),
                    f"label '{name}' is a region {value} (nnU-Net region-based training); "
                    "segsweep trains disjoint classes: set data.labels to them, "
                    "e.g. {name: value} of the dataset's individual label values",
                )
            if not isinstance(value, int):
                raise InputError(
                    None, str(path), f"label '{name}': value {value!r} is not an integer"
                )
            pairs.append((str(name), value))
    if any(name == "ignore" for name, _ in pairs):
        raise InputError(None, str(path), "the 'ignore' label (sparse annotation) is not supported")
    return {name: value for name, value in sorted(pairs, key=lambda p: p[1]) if value != 0}


def _described(
    layout: str,
    meta: Path,
    description: dict[str, Any],
    subjects: dict[str, dict[str, Any]],
    channels: list[str] | None,
    problems: list[Problem],
) -> Dataset:
    """The Dataset of a folder whose dataset.json (`meta`) gives its classes and numTraining."""
    expected = description.get("numTraining")
    return Dataset(
        layout,
        str(meta.parent),
        subjects,
        class_labels(description.get("labels"), meta),
        channels,
        expected if isinstance(expected, int) else None,
        problems,
    )


def _add(
    subjects: dict[str, dict[str, Any]],
    problems: list[Problem],
    seen: dict[str, str],
    case: str,
    row: dict[str, Any],
    where: str,
) -> None:
    """Add a case; a case listed twice is a problem of both listings and drops it (a duplicate
    id would pair one case's image with another's mask)."""
    if case in seen:
        problems.append(Problem(case, where, f"duplicate subject id (also {seen[case]})"))
        subjects.pop(case, None)
        return
    seen[case] = where
    subjects[case] = row


def _decathlon(folder: Path) -> Dataset:
    meta = folder / DATASET_JSON
    description = _read_json(meta)
    channels = _indexed_names(description.get("modality"), "modality", meta)
    training = description.get("training")
    if not isinstance(training, list):
        raise InputError(None, str(meta), "no 'training' list of image/label pairs")
    subjects: dict[str, dict[str, Any]] = {}
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for number, entry in enumerate(training):
        where = f"{meta} training[{number}]"
        if not isinstance(entry, dict) or not entry.get("image") or not entry.get("label"):
            problems.append(Problem("", where, "a training entry needs 'image' and 'label'"))
            continue
        image = _resolve(entry["image"], folder)
        row = subject_row([image], _resolve(entry["label"], folder))
        _add(subjects, problems, seen, case_name(image), row, where)
    for number, entry in enumerate(description.get("test") or []):
        value = entry.get("image") if isinstance(entry, dict) else entry
        where = f"{meta} test[{number}]"
        if not isinstance(value, str) or not value:
            problems.append(Problem("", where, "a test entry needs an image path"))
            continue
        image = _resolve(value, folder)
        _add(subjects, problems, seen, case_name(image), subject_row([image]), where)
    return _described("decathlon", meta, description, subjects, channels, problems)


def _channel_files(folder: Path, ending: str, problems: list[Problem]) -> dict[str, dict[int, str]]:
    """case → channel index → file of an nnU-Net images folder (`{case}_{XXXX}{ending}`);
    hidden and AppleDouble files are skipped, other names are problems."""
    cases: dict[str, dict[int, str]] = {}
    if not folder.is_dir():
        return cases
    pattern = re.compile(r"(.+)_(\d{4})" + re.escape(ending) + "$")
    for file in sorted(folder.iterdir()):
        if file.name.startswith("."):
            continue
        match = pattern.match(file.name)
        if not match:
            problems.append(
                Problem("", str(file), f"not named {{case}}_{{XXXX}}{ending} (nnU-Net v2)")
            )
            continue
        cases.setdefault(match.group(1), {})[int(match.group(2))] = str(file)
    return cases


def _nnunet(folder: Path) -> Dataset:
    meta = folder / DATASET_JSON
    description = _read_json(meta)
    ending = description.get("file_ending")
    if not isinstance(ending, str) or not ending.startswith("."):
        raise InputError(None, str(meta), "'file_ending' must name the files' suffix, e.g. .nii.gz")
    channels = _indexed_names(description.get("channel_names"), "channel_names", meta)
    expected = list(range(len(channels))) if channels else None
    problems: list[Problem] = []
    subjects: dict[str, dict[str, Any]] = {}
    labels_dir = folder / "labelsTr"
    labelled = _channel_files(folder / "imagesTr", ending, problems)
    unlabelled = _channel_files(folder / "imagesTs", ending, problems)
    for case, files in [*labelled.items(), *unlabelled.items()]:
        indices = sorted(files)
        wanted = expected or list(range(len(indices)))
        if indices != wanted:
            missing = [f"{case}_{i:04d}{ending}" for i in wanted if i not in files]
            extra = [files[i] for i in indices if i not in wanted]
            what = f"channel files missing: {', '.join(missing)}" if missing else ""
            what += ("; " if what else "") + (
                f"channels not in channel_names: {extra}" if extra else ""
            )
            problems.append(Problem(case, str(Path(files[indices[0]]).parent), what))
            continue
        if case in subjects:
            problems.append(Problem(case, files[0], "case in both imagesTr and imagesTs"))
            subjects.pop(case)
            continue
        mask = ""
        if case in labelled:
            label = labels_dir / f"{case}{ending}"
            if not label.exists():
                problems.append(Problem(case, str(label), "labelsTr has no label for this case"))
                continue
            mask = str(label)
        subjects[case] = subject_row([files[i] for i in wanted], mask)
    if labels_dir.is_dir():
        for file in sorted(labels_dir.iterdir()):
            case = file.name[: -len(ending)] if file.name.endswith(ending) else None
            if not file.name.startswith(".") and case not in labelled:
                problems.append(
                    Problem(case or "", str(file), "a label without images in imagesTr")
                )
    return _described("nnunet", meta, description, subjects, channels, problems)


def _datalist(path: Path) -> Dataset:
    description = _read_json(path)
    folder = path.parent
    if not isinstance(description.get("training"), list):
        raise InputError(None, str(path), "a MONAI datalist needs a 'training' list")
    subjects: dict[str, dict[str, Any]] = {}
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    entries = [
        (key, number, entry)
        for key in ("training", "validation", "testing", "test")
        for number, entry in enumerate(description.get(key) or [])
    ]
    for key, number, entry in entries:
        where = f"{path} {key}[{number}]"
        entry = {"image": entry} if isinstance(entry, str) else entry
        images = entry.get("image") if isinstance(entry, dict) else None
        images = [images] if isinstance(images, str) else images
        if not images or not all(isinstance(i, str) and i for i in images):
            problems.append(Problem("", where, "an entry needs 'image': a path or a list of paths"))
            continue
        images = [_resolve(image, folder) for image in images]
        labelled = key in ("training", "validation")
        label = entry.get("label") if labelled else None
        if labelled and not isinstance(label, str):
            problems.append(Problem("", where, f"a {key} entry needs a 'label' path"))
            continue
        extra = {}
        if "fold" in entry:
            if not isinstance(entry["fold"], int) or entry["fold"] < 0:
                problems.append(
                    Problem("", where, f"fold {entry['fold']!r} is not an integer >= 0")
                )
                continue
            extra[DATASET_FOLD] = str(entry["fold"])
        case = case_name(images[0])
        if len(images) > 1:
            case = re.sub(r"_\d{4}$", "", case)
        row = subject_row(images, _resolve(label, folder) if label else "", extra)
        _add(subjects, problems, seen, case, row, where)
    labels = description.get("labels")
    channels = description.get("channel_names", description.get("modality"))
    key = "channel_names" if "channel_names" in description else "modality"
    expected = description.get("numTraining")
    return Dataset(
        "datalist",
        str(path),
        subjects,
        class_labels(labels, path),
        _indexed_names(channels, key, path),
        expected if isinstance(expected, int) else None,
        problems,
    )
