"""Classification datasets: the images, their studies and patients, and every problem of them in
one pass (as `segsweep.data.validate` does for segmentation data).

Two layouts, told apart by the path (`detect_layout`):
- manifest: a CSV with columns image, label (a class name of `data.labels`), study_id,
  patient_id and optionally study_type and image_id; relative image paths are relative to the
  CSV's folder;
- mura: a MURA folder read as it is, `<root>/{train,valid}/XR_<TYPE>/patient<id>/
  study<k>_{positive,negative}/image<n>.png` (root: the MURA-v1.1 folder, or a folder holding
  it). Study type, patient and label come from the folder names: patient ids are kept as they
  are (MURA's ids are shared across study types: one id, one person), the study id is
  `XR_WRIST-patient00001-study1`, positive means the last class of `data.labels` (ordered by
  value) and negative the first, and MURA's own split is kept as `source_split` (ours stays our
  own). Where MURA's `{train,valid}_image_paths.csv` exist they list the images (an image on
  disk they do not list is ignored); `{train,valid}_labeled_studies.csv` must agree with the
  folder names.

Problems (subject: the study id, '' for the dataset): an empty required value; a label not in
`data.labels`; a study with mixed labels; a study under two patients; an image or image id
listed twice; a MURA label that its CSV contradicts or a study folder not named
study<k>_positive|negative; a missing or unreadable image file; an image that is not 2D (3D with
one slice is 2D; RGB and RGBA are fine: packing makes them grey). Files are checked from their
headers (`SimpleITK.ImageFileReader.ReadImageInformation`), read whole only where the header
reader fails. A manifest without a required column is an InputError at once.

`python -m segsweep studies` writes the valid images (images.csv), one row per study with its
`valid` flag (the manifest of the split), the problems (dropped.csv) and a description of the
dataset (dataset.json); under `--on-invalid error` any problem is one InputError listing all of
them, under `skip` the studies they name are left out.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import SimpleITK as sitk

from segsweep import layout
from segsweep.data.datasets import Problem
from segsweep.data.validate import PROBLEM_COLUMNS, plural, problem_table
from segsweep.errors import ConfigError, InputError
from segsweep.io.records import write_csv, write_json

REQUIRED = ("image", "label", "study_id", "patient_id")
IMAGE_COLUMNS = ["image_id", "image", "path", "label", "study_id", "patient_id", "study_type"]
STUDY_COLUMNS = ["subject_id", "patient_id", "study_type", "label", "n_images", "labelled"]
SINGLE_SOURCE = "all"  # the stratum of studies without a study type
MURA_SPLITS = ("train", "valid")
MURA_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".mha", ".nii", ".nii.gz")
STUDY_FOLDER = re.compile(r"^study(\d+)_(positive|negative)$")


@dataclass
class Dataset:
    """A classification dataset as read: its layout ("manifest" | "mura"), the path given, one
    row per image (`IMAGE_COLUMNS`, plus `source_split` for MURA, whose images are in study id
    order; `image` the file to read, `path` the file as the listing names it, study_type ""
    where there is none) and the problems of its listing (no file opened)."""

    layout: str
    path: str
    images: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)


def ordered_classes(labels: dict[str, int]) -> list[str]:
    """The class names ordered by value: index = class index, the last one positive."""
    if not isinstance(labels, dict) or len(labels) < 2:
        raise ConfigError("data.labels", labels, "{class name: value} with two or more classes")
    return sorted(labels, key=lambda name: labels[name])


def detect_layout(path: str | Path) -> str:
    """'mura' for a folder, 'manifest' for a .csv file; InputError otherwise."""
    path = Path(path)
    if path.is_dir():
        return "mura"
    if path.suffix.lower() == ".csv" and path.is_file():
        return "manifest"
    what = "not found" if not path.exists() else "neither a manifest CSV nor a MURA folder"
    raise InputError(None, str(path), what)


def read_dataset(path: str | Path, labels: dict[str, int]) -> Dataset:
    """The dataset at `path` (a manifest CSV or a MURA folder) with the problems of its listing;
    the image files are checked by `check_images`."""
    classes = ordered_classes(labels)
    if detect_layout(path) == "manifest":
        images, problems = _manifest(Path(path))
        layout = "manifest"
    else:
        images, problems = _mura(Path(path), classes)
        layout = "mura"
    problems += _listing_problems(images, classes)
    return Dataset(layout, str(path), images, problems)


def _resolve(value: str, folder: Path) -> str:
    return value if Path(value).is_absolute() else str(folder / value)


def _image_ids(images: pd.DataFrame) -> pd.Series:
    """The image's file name without its suffixes, prefixed by its study id unless it starts
    with it (the synthetic cohort's names do)."""
    stems = [Path(p).name.split(".")[0] for p in images["path"]]
    return pd.Series(
        [
            s if s.startswith(st) else f"{st}-{s}"
            for s, st in zip(stems, images["study_id"], strict=True)
        ],
        index=images.index,
        dtype=object,
    )


def _manifest(path: Path) -> tuple[pd.DataFrame, list[Problem]]:
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table.columns = [c.strip() for c in table.columns]
    missing = [c for c in REQUIRED if c not in table]
    if missing:
        raise InputError(
            None,
            str(path),
            f"manifest has no column {', '.join(missing)} (needs {', '.join(REQUIRED)})",
        )
    table = table.apply(lambda column: column.str.strip())
    problems = []
    for line, row in zip(range(2, len(table) + 2), table.itertuples(index=False), strict=True):
        empty = [c for c in REQUIRED if not getattr(row, c)]
        if empty:
            subject = row.study_id or f"(line {line})"
            problems.append(Problem(subject, row.image, f"line {line}: empty {', '.join(empty)}"))
    images = pd.DataFrame(
        {
            "image": [_resolve(p, path.parent) if p else "" for p in table["image"]],
            "path": table["image"],
            "label": table["label"],
            "study_id": table["study_id"],
            "patient_id": table["patient_id"],
            "study_type": table["study_type"] if "study_type" in table else "",
        }
    )
    given = table["image_id"] if "image_id" in table else pd.Series("", index=table.index)
    images.insert(0, "image_id", given.where(given != "", _image_ids(images)))
    return images[IMAGE_COLUMNS], problems


def mura_base(path: Path) -> Path:
    """The folder holding train/ and valid/: `path` or its MURA-v1.1 subfolder; InputError
    when neither holds XR_* study type folders."""
    for base in (path / "MURA-v1.1", path):
        if any(
            (base / split).is_dir() and any((base / split).glob("XR_*")) for split in MURA_SPLITS
        ):
            return base
    raise InputError(
        None, str(path), "no XR_* study type folders under train/ or valid/ (nor under MURA-v1.1/)"
    )


def _under_base(listed: str) -> Path | None:
    """A path of MURA's CSVs (`MURA-v1.1/train/XR_…`) from train/ or valid/ on."""
    parts = Path(listed.strip()).parts
    starts = [i for i, part in enumerate(parts) if part in MURA_SPLITS]
    return Path(*parts[starts[0] :]) if starts else None


def _listed_images(base: Path, split: str, problems: list[Problem]) -> list[Path] | None:
    """The images `{split}_image_paths.csv` lists (relative to base), None without it."""
    listing = base / f"{split}_image_paths.csv"
    if not listing.is_file():
        return None
    found = []
    for number, line in enumerate(listing.read_text().splitlines(), 1):
        if not line.strip():
            continue
        relative = _under_base(line)
        if relative is None or len(relative.parts) != 5:
            problems.append(
                Problem("", str(listing), f"line {number}: not a MURA image path: {line!r}")
            )
        else:
            found.append(relative)
    return found


def _labelled_studies(base: Path, split: str, problems: list[Problem]) -> dict[Path, str]:
    """Study folder (relative to base) → 0/1 from `{split}_labeled_studies.csv` ({} without)."""
    listing = base / f"{split}_labeled_studies.csv"
    if not listing.is_file():
        return {}
    found = {}
    for number, line in enumerate(listing.read_text().splitlines(), 1):
        if not line.strip():
            continue
        listed, _, value = line.rpartition(",")
        relative = _under_base(listed)
        if relative is None or len(relative.parts) != 4 or value.strip() not in {"0", "1"}:
            problems.append(
                Problem("", str(listing), f"line {number}: not 'study path,0|1': {line!r}")
            )
        else:
            found[relative] = value.strip()
    return found


def _mura(path: Path, classes: list[str]) -> tuple[pd.DataFrame, list[Problem]]:
    base = mura_base(path)
    negative, positive = classes[0], classes[-1]
    problems: list[Problem] = []
    rows = []
    for split in MURA_SPLITS:
        listed = _listed_images(base, split, problems)
        if listed is None:
            listed = sorted(
                p.relative_to(base)
                for p in (base / split).glob("XR_*/*/*/*")
                if p.is_file()
                and not p.name.startswith(".")
                and p.name.lower().endswith(MURA_SUFFIXES)
            )
        studies = _labelled_studies(base, split, problems)
        for relative in listed:
            _, study_type, patient, folder, _ = relative.parts
            study_id = f"{study_type}-{patient}-{folder.split('_')[0]}"
            match = STUDY_FOLDER.match(folder)
            label = ""
            if match is None:
                problems.append(
                    Problem(
                        study_id,
                        str(base / relative),
                        "study folder is not named study<k>_positive or study<k>_negative",
                    )
                )
            else:
                study_id = f"{study_type}-{patient}-study{match.group(1)}"
                label = positive if match.group(2) == "positive" else negative
                given = studies.pop(relative.parent, None)  # one problem per study
                if given is not None and given != ("1" if label == positive else "0"):
                    problems.append(
                        Problem(
                            study_id,
                            str(base / relative.parent),
                            f"{split}_labeled_studies.csv labels the study {given}, its folder "
                            f"says {match.group(2)}",
                        )
                    )
            rows.append(
                {
                    "image": str(base / relative),
                    "path": (Path(base.name) / relative).as_posix(),
                    "label": label,
                    "study_id": study_id,
                    "patient_id": patient,
                    "study_type": study_type,
                    "source_split": split,
                }
            )
    images = pd.DataFrame(
        rows, columns=[c for c in IMAGE_COLUMNS if c != "image_id"] + ["source_split"]
    )
    images = images.sort_values(["study_id", "path"], kind="stable", ignore_index=True)
    images.insert(0, "image_id", _image_ids(images) if len(images) else pd.Series(dtype=object))
    return images, problems


def _listing_problems(images: pd.DataFrame, classes: list[str]) -> list[Problem]:
    """Unknown labels, mixed studies, a study under two patients, a file or id listed twice."""
    problems = []
    known = images["label"] != ""
    for row in images[known & ~images["label"].isin(classes)].itertuples():
        problems.append(
            Problem(
                row.study_id,
                row.path,
                f"label {row.label!r} is not a class of data.labels {classes}",
            )
        )
    listed = images[images["study_id"] != ""]
    labelled = listed[listed["label"] != ""]
    n_labels = labelled.groupby("study_id")["label"].nunique()
    for study in n_labels.index[n_labels > 1]:
        labels = labelled.loc[labelled["study_id"] == study, "label"].value_counts().sort_index()
        counts = ", ".join(f"{label} ({plural(n, 'image')})" for label, n in labels.items())
        problems.append(Problem(study, "", f"study has mixed labels: {counts}"))
    named = listed[listed["patient_id"] != ""]
    n_patients = named.groupby("study_id")["patient_id"].nunique()
    for study in n_patients.index[n_patients > 1]:
        patients = sorted(set(named.loc[named["study_id"] == study, "patient_id"]))
        problems.append(Problem(study, "", f"study listed under patients {', '.join(patients)}"))
    for column, what in (("image", "image file"), ("image_id", "image id")):
        filled = listed[listed[column] != ""]
        twice = filled[filled[column].duplicated(keep=False)]
        for value, rows in twice.groupby(column):
            owners = sorted(set(rows["study_id"]))
            by = f" (by studies {', '.join(owners)})" if len(owners) > 1 else ""
            problems += [Problem(study, value, f"{what} listed twice{by}") for study in owners]
    return problems


def image_problem(path: str) -> str | None:
    """What is wrong with one image file (None: a readable 2D image, grey or colour)."""
    file = Path(path)
    if not file.is_file():
        return "image file not found"
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(file))
    try:
        reader.ReadImageInformation()
        size, components = reader.GetSize(), reader.GetNumberOfComponents()
    except RuntimeError:
        try:
            image = sitk.ReadImage(str(file))
        except RuntimeError:
            return "unreadable image (not a PNG, JPEG, DICOM, NIfTI or MHA file SimpleITK reads)"
        size, components = image.GetSize(), image.GetNumberOfComponentsPerPixel()
    if len(size) == 3 and size[2] == 1:
        size = size[:2]
    if len(size) != 2:
        return f"expected a 2D image, got {len(size)}D of size {list(size)}"
    if components > 4:
        return f"{components} components per pixel (expected grey, RGB or RGBA)"
    return None


def check_images(dataset: Dataset) -> list[Problem]:
    """Every problem of `dataset`: its listing's and each image file's (missing, unreadable,
    not 2D), dataset-level problems first, then by study."""
    problems = list(dataset.problems)
    for row in dataset.images[dataset.images["image"] != ""].itertuples():
        problem = image_problem(row.image)
        if problem:
            problems.append(Problem(row.study_id, row.image, problem))
    return sorted(problems, key=lambda p: (p.subject != "", p.subject))


def studies_table(images: pd.DataFrame) -> pd.DataFrame:
    """One row per study (in id order): subject_id (the study id), patient_id, study_type,
    label (its first image's, where they are mixed), n_images, labelled (True), valid (True:
    the caller marks the dropped ones), source (the split's stratum: the study type, "all"
    where there is none) and source_split where the images have it."""
    extra = ["source_split"] if "source_split" in images else []
    grouped = images.groupby("study_id", sort=True)
    studies = grouped[["patient_id", "study_type", "label", *extra]].first()
    studies["n_images"] = grouped.size()
    studies = studies.rename_axis("subject_id").reset_index()
    studies["labelled"] = True
    studies["valid"] = True
    studies["source"] = studies["study_type"].where(studies["study_type"] != "", SINGLE_SOURCE)
    return studies[[*STUDY_COLUMNS, "valid", "source", *extra]]


def main(argv: list[str] | None = None) -> None:
    """Read and check the dataset; write images.csv, manifest.csv, dropped.csv, dataset.json."""
    parser = argparse.ArgumentParser(prog="segsweep studies", description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True, help="manifest CSV or MURA folder")
    parser.add_argument(
        "--labels-json", required=True, help='data.labels, e.g. {"normal": 0, "abnormal": 1}'
    )
    parser.add_argument("--on-invalid", choices=("error", "skip"), default="error")
    parser.add_argument("--out-images", type=Path, default=Path(layout.IMAGES_TABLE))
    parser.add_argument("--out-manifest", type=Path, default=Path(layout.DATA_MANIFEST))
    parser.add_argument("--out-dropped", type=Path, default=Path(layout.DROPPED))
    parser.add_argument("--out-description", type=Path, default=Path(layout.DATA_DESCRIPTION))
    args = parser.parse_args(argv)
    labels = json.loads(args.labels_json)
    dataset = read_dataset(args.manifest, labels)
    problems = check_images(dataset)
    write_csv(pd.DataFrame(problems, columns=list(PROBLEM_COLUMNS)), args.out_dropped)
    if problems and args.on_invalid == "error":
        raise InputError(
            None,
            args.manifest,
            f"{plural(len(problems), 'problem')} (data.on_invalid: skip leaves their studies "
            "out):\n" + problem_table(problems),
        )
    dropped = {p.subject for p in problems}
    studies = studies_table(dataset.images[dataset.images["study_id"] != ""])
    studies["valid"] = ~studies["subject_id"].isin(dropped)
    kept = dataset.images[
        dataset.images["study_id"].isin(studies.loc[studies["valid"], "subject_id"])
    ]
    if kept.empty:
        raise InputError(None, args.manifest, "no study is left without problems")
    write_csv(kept, args.out_images)
    write_csv(studies, args.out_manifest)
    write_json(
        args.out_description,
        {
            "layout": dataset.layout,
            "path": dataset.path,
            "labels": labels,
            "channels": None,
            "problems": [asdict(p) for p in problems],
            "n_images": len(kept),
            "n_studies": int(kept["study_id"].nunique()),
            "n_patients": int(kept["patient_id"].nunique()),
            "n_dropped_studies": int((~studies["valid"]).sum()),
        },
    )


if __name__ == "__main__":
    main()
