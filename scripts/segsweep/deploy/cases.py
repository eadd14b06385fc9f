"""The cases of `segsweep predict --input PATH...`: which scans make which case, and its name
(the output stem: DIR/<name>.nii.gz).

- An image file (.mhd, .mha, .nii, .nii.gz; any letter case) is a case named by its file name
  without the extension. nnU-Net channel naming: `CASE_0000.nii.gz`, `CASE_0001.nii.gz`, … (a
  4-digit suffix) are channels 0, 1, … of case `CASE`, grouped across all inputs; a lone
  `CASE_0000` is the one-channel case `CASE`.
- A folder holding a DICOM series is one case (one channel) named after the folder.
- Any other folder gives its image files and its subfolders holding a DICOM series (one level
  deep; other entries are ignored).
- A .csv file is a manifest as the data's (segsweep.data.manifest): `subject_id` names the case;
  the image columns are `image`, or the package's channel names in channel order; paths are
  relative to the CSV's folder.

Problems come back as (what, reason) pairs, not raised, so that one bad case does not stop the
others: a path that does not exist, a file of another type, a folder with nothing usable, a
folder with several DICOM series, a manifest missing a column or with an empty cell, a case with
the wrong number of channels or a gap in its channel indices, and a case name that several
inputs make (that case is left out).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from segsweep.data.manifest import read_manifest
from segsweep.errors import InputError
from segsweep.io.images import SUFFIXES, _one_series

CHANNEL = re.compile(r"(?P<case>.+)_(?P<index>\d{4})")

Problem = tuple[str, str]


@dataclass(frozen=True)
class Case:
    """One case to predict: its output stem and one path per input channel, in channel order
    (an image file or a DICOM series folder)."""

    name: str
    channels: tuple[str, ...]


@dataclass(frozen=True)
class _Part:
    """What one input gives a case: all its channels (`index` None) or channel `index`."""

    name: str
    paths: tuple[str, ...]
    index: int | None = None


Found = tuple[list[_Part], list[Problem]]


def find_cases(
    inputs: Sequence[str | Path], channels: int = 1, names: Sequence[str] | None = None
) -> tuple[list[Case], list[Problem]]:
    """(The cases of the inputs sorted by name, the problems as (what, reason)); `channels`:
    how many input channels the model takes; `names`: its channel names (a manifest's image
    columns; `image` without them)."""
    groups: dict[str, list[_Part]] = {}
    problems: list[Problem] = []
    for item in inputs:
        parts, trouble = _from_input(Path(item), names)
        problems += trouble
        for part in parts:
            groups.setdefault(part.name, []).append(part)
    cases = []
    for name in sorted(groups):
        reason = _clash(groups[name]) or _channel_problem(groups[name], channels)
        if reason:
            problems.append((name, reason))
        else:
            ordered = sorted(groups[name], key=lambda part: part.index or 0)
            cases.append(Case(name, tuple(path for part in ordered for path in part.paths)))
    return cases, problems


def _from_input(path: Path, names: Sequence[str] | None) -> Found:
    """The parts one input gives, and its problems."""
    if not path.exists():
        return [], [(str(path), "not found")]
    if path.is_dir():
        return _from_folder(path)
    if path.name.lower().endswith(".csv"):
        return _from_manifest(path, names)
    part = _image_part(path)
    if part is None:
        kinds = ", ".join(SUFFIXES)
        return [], [(str(path), f"not an image file ({kinds}), a folder or a .csv manifest")]
    return [part], []


def _image_part(path: Path) -> _Part | None:
    """The part an image file gives (None for another file): a channel where its name (less
    the extension) ends in a 4-digit suffix, else the whole case."""
    suffix = next((s for s in SUFFIXES if path.name.lower().endswith(s)), None)
    if suffix is None:
        return None
    stem = path.name[: -len(suffix)]
    match = CHANNEL.fullmatch(stem)
    if match:
        return _Part(match["case"], (str(path),), int(match["index"]))
    return _Part(stem, (str(path),))


def _holds_dicom(folder: Path) -> bool:
    return bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))


def _dicom(folder: Path) -> Found:
    """The case of a folder holding DICOM, named after it, or the problem of several series."""
    try:
        _one_series(folder, None)
    except InputError as error:
        return [], [(str(folder), error.problem)]
    name = Path(os.path.abspath(folder)).name  # `.` and `..` named too, symlinks kept
    return [_Part(name, (str(folder),))], []


def _from_folder(folder: Path) -> Found:
    """A DICOM folder's case, else the image files and DICOM subfolders in it."""
    if _holds_dicom(folder):
        return _dicom(folder)
    parts: list[_Part] = []
    problems: list[Problem] = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir() and _holds_dicom(entry):
            found, trouble = _dicom(entry)
            parts += found
            problems += trouble
        elif entry.is_file() and (part := _image_part(entry)) is not None:
            parts.append(part)
    if not parts and not problems:
        problems.append((str(folder), "holds no image file and no DICOM series"))
    return parts, problems


def _from_manifest(path: Path, names: Sequence[str] | None) -> Found:
    """The cases of a manifest's rows whose image paths all exist."""
    try:
        table, trouble = read_manifest(path, {}, list(names) if names else None)
    except InputError as error:
        return [], [(str(path), error.problem)]
    problems = [(subject, f"{file}: {problem}") for subject, file, problem in trouble]
    parts = []
    for subject, row in table.items():
        missing = [image for image in row["images"] if not Path(image).exists()]
        problems += [(image, f"not found (case {subject} of {path})") for image in missing]
        if not missing:
            parts.append(_Part(subject, tuple(row["images"])))
    return parts, problems


def _clash(parts: list[_Part]) -> str | None:
    """Why several inputs cannot make one case: a whole case given twice, or a channel."""
    indices = [part.index for part in parts]
    if len(parts) > 1 and (None in indices or len(set(indices)) < len(indices)):
        return "made by several inputs: " + ", ".join(part.paths[0] for part in parts)
    return None


def _channel_problem(parts: list[_Part], channels: int) -> str | None:
    """Why a case's channels are not those the model takes: how many and which are missing."""
    if parts[0].index is None:  # a whole case (_clash: the only part)
        found = len(parts[0].paths)
        return None if found == channels else f"{found} channel(s) found; expected {channels}"
    indices = {part.index for part in parts if part.index is not None}
    missing = sorted(set(range(max(max(indices) + 1, channels))) - indices)
    reasons = [f"channel(s) {', '.join(f'_{i:04d}' for i in sorted(indices))} found"]
    if len(indices) != channels:
        reasons.append(f"expected {channels}")
    if missing:
        reasons.append(f"missing {', '.join(f'_{i:04d}' for i in missing)}")
    return "; ".join(reasons) if len(reasons) > 1 else None
