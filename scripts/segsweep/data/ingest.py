"""Ingest: read and validate one subject, reorient it to the canonical "LIP" grid, record geometry.

Everything downstream assumes one orientation (slice arr[k] is a coronal plane, superior at the
top), float32 images and uint8 label maps, so these checks happen once, here, and a bad subject
stops with one message naming the subject, the file and the problem (see `InputError`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from segsweep.data.datasets import Problem
from segsweep.data.headers import header_problems
from segsweep.errors import InputError
from segsweep.io.images import canonical, float_type, geometry, read_image, write_image
from segsweep.io.records import named_paths, read_json, write_csv, write_json

log = logging.getLogger(__name__)
PATH_COLUMNS = ("image", "mask", "roi")
MANIFEST_COLUMNS = [
    "subject_id",
    "source",
    "perspective",
    "image",
    "mask",
    "roi",
    "labelled",
    "valid",
    "problem",
]


# ---------------------------------------------------------------------------------------------
# geometry checks


def _geometry_differences(image: sitk.Image, mask: sitk.Image, tolerance: float) -> list[str]:
    """Human-readable list of geometry properties differing by more than `tolerance`."""
    problems = []
    for name, a, b in (
        ("spacing", image.GetSpacing(), mask.GetSpacing()),
        ("origin", image.GetOrigin(), mask.GetOrigin()),
        ("direction", image.GetDirection(), mask.GetDirection()),
    ):
        diff = float(np.max(np.abs(np.subtract(a, b))))
        if diff > tolerance:
            problems.append(
                f"{name} differs by {diff:.3g} (image {_fmt(a)}, mask {_fmt(b)}, "
                f"tolerance {tolerance:g})"
            )
    return problems


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


# ---------------------------------------------------------------------------------------------
# channels and masks


def read_channels(paths: list[str | Path], subject: str | None = None) -> sitk.Image:
    """One image per channel (PET, CT, ...) as one float32 image with one component per channel.

    Every channel must share the first one's size and geometry: channels are stacked voxel by
    voxel, so a shifted channel would silently pair the wrong voxels. One 4D file (a Decathlon
    multi-modal image) holds its channels along its fourth axis, on one grid by construction.
    """
    if not paths:
        raise InputError(subject, None, "no image given")
    if len(paths) == 1:
        images = [read_image(paths[0], subject, channels_last=True)]
        if images[0].GetDimension() == 4:
            return _compose(_volumes(images[0]))
    else:
        images = [read_image(path, subject) for path in paths]
    for path, image in zip(paths, images, strict=True):
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(subject, str(path), "multi-component voxels are not supported")
    if len(images) == 1:
        return images[0]
    first = images[0]
    for path, image in zip(paths[1:], images[1:], strict=True):
        _check_grid(subject, first, image, path, 1e-3, "channel", f"first channel ({paths[0]})")
    return _compose(images)


def _volumes(image: sitk.Image) -> list[sitk.Image]:
    """The 3D volumes along a 4D image's fourth axis (with its first three axes' geometry)."""
    size = list(image.GetSize())
    return [sitk.Extract(image, [*size[:3], 0], [0, 0, 0, channel]) for channel in range(size[3])]


def _compose(images: list[sitk.Image]) -> sitk.Image:
    """Channels on one grid as one float32 image with a component per channel (one channel:
    the image itself)."""
    if len(images) == 1:
        return images[0]
    floats = [sitk.Cast(image, sitk.sitkFloat32) for image in images]
    for image in floats[1:]:
        image.CopyInformation(floats[0])
    return sitk.Compose(floats)


def _check_grid(
    subject: str | None,
    reference: sitk.Image,
    image: sitk.Image,
    path: str | Path,
    tolerance: float,
    what: str,
    against: str,
) -> None:
    """An InputError naming `path` unless `image` (a mask or a channel) lies on the grid of
    `reference`: the same size, spacing, origin and direction within `tolerance`."""
    if image.GetSize() != reference.GetSize():
        size, expected = list(image.GetSize()), list(reference.GetSize())
        raise InputError(
            subject, str(path), f"shape mismatch: {what} size {size} != {against} size {expected}"
        )
    differences = _geometry_differences(reference, image, tolerance)
    if differences:
        mismatch = "geometry mismatch" if what == "mask" else f"{what} geometry mismatch"
        raise InputError(subject, str(path), f"{mismatch}: " + "; ".join(differences))


def _integer_values(subject: str, array: np.ndarray, mask_path: str | Path) -> list[int]:
    values = np.unique(array)
    non_integer = values[values != np.round(values)]
    if non_integer.size:
        raise InputError(
            subject,
            str(mask_path),
            f"non-integer label values {_list(non_integer)} (not a label map)",
        )
    return values.astype(np.int64).tolist()


def read_label_map(
    subject: str,
    image: sitk.Image,
    labels: dict[str, int],
    mask_path: str | Path | None = None,
    class_masks: dict[str, str | Path] | None = None,
    tolerance: float = 1e-3,
) -> tuple[sitk.Image, list[str]]:
    """The subject's label map, checked against its image; returns (uint8 map, warnings).

    Either one label map (`mask_path`, values in {0} ∪ data.labels) or one binary file per class
    (`class_masks`: class name → path, non-zero = class; classes must not overlap). Checks: same
    size, same spacing/origin/direction within `tolerance`, integer values, known labels. An empty
    mask is kept with a warning (the subject then only contributes background).
    """
    if class_masks:
        unknown = sorted(set(class_masks) - set(labels))
        if unknown:
            raise InputError(subject, None, f"mask classes {unknown} not in data.labels")
        combined = np.zeros(image.GetSize()[::-1], np.uint8)
        owner = np.full(combined.shape, "", dtype=object)
        for name, path in class_masks.items():
            part = read_image(path, subject)
            _check_grid(subject, image, part, path, tolerance, "mask", "image")
            array = sitk.GetArrayFromImage(part)
            values = _integer_values(subject, array, path)
            if not set(values) <= {0, 1}:
                raise InputError(
                    subject, str(path), f"class mask of '{name}' is not binary (values {values})"
                )
            inside = array != 0
            clash = inside & (combined != 0)
            if clash.any():
                other = owner[clash][0]
                raise InputError(
                    subject,
                    str(path),
                    f"class '{name}' overlaps class '{other}' in {int(clash.sum())} voxels",
                )
            combined[inside] = labels[name]
            owner[inside] = name
        mask = sitk.GetImageFromArray(combined)
        mask.CopyInformation(image)
        shown: str | Path = ", ".join(str(p) for p in class_masks.values())
    else:
        if not mask_path:
            raise InputError(subject, None, "no mask given")
        mask = read_image(mask_path, subject)
        _check_grid(subject, image, mask, mask_path, tolerance, "mask", "image")
        shown = mask_path
    array = sitk.GetArrayFromImage(mask)
    values = _integer_values(subject, array, shown)
    allowed = {0, *labels.values()}
    outside = [v for v in values if v not in allowed]
    if outside:
        raise InputError(
            subject,
            str(shown),
            f"label values {outside} not in data.labels {dict(labels)} (allowed {sorted(allowed)})",
        )
    found = []
    if not any(v in labels.values() for v in values):
        message = f"subject {subject}: {shown}: mask is empty (no labelled voxels)"
        log.warning(message)
        warnings.warn(message, stacklevel=2)
        found.append(f"{shown}: mask is empty (no labelled voxels)")
    out = sitk.Cast(mask, sitk.sitkUInt8)
    out.CopyInformation(image)
    return out, found


# ---------------------------------------------------------------------------------------------
# per-subject ingest


def _as_list(paths: str | Path | list[str | Path]) -> list[str | Path]:
    return list(paths) if isinstance(paths, (list, tuple)) else [paths]


def check_subject(
    subject: str,
    image_paths: str | Path | list[str | Path],
    labels: dict[str, int],
    mask_path: str | Path | None = None,
    class_masks: dict[str, str | Path] | None = None,
    roi_path: str | Path | None = None,
    source: str | None = None,
    perspective: str | None = None,
    extra: dict[str, str] | None = None,
    tolerance: float = 1e-3,
) -> dict[str, Any]:
    """Validate one subject (all channels, its mask) and return its ingest.json record.

    Raises InputError for the first problem found (a missing or unreadable file, a shape or
    geometry mismatch, non-finite voxels, an unknown label, …; each kind is exercised through the
    workflow in tests/test_data_workflow.py).
    """
    paths = _as_list(image_paths)
    image = read_channels(paths, subject)
    record = _record(subject, paths[0], source, perspective, mask_path or class_masks, roi_path)
    found: list[str] = []
    voxels = None
    if mask_path or class_masks:
        mask, found = read_label_map(subject, image, labels, mask_path, class_masks, tolerance)
        array = sitk.GetArrayViewFromImage(mask)
        voxels = {name: int(np.count_nonzero(array == v)) for name, v in labels.items()}
    return {
        **record,
        "content_hash": content_hash(image),
        "images": [str(p) for p in paths],
        "class_masks": {k: str(v) for k, v in (class_masks or {}).items()},
        "extra": dict(extra or {}),
        "original": geometry(image),
        "channels": image.GetNumberOfComponentsPerPixel(),
        "voxels": voxels,
        "warnings": found,
        "valid": True,
        "problem": None,
        "file": None,
    }


def examine_subject(
    subject: str,
    image_paths: list[str | Path],
    labels: dict[str, int],
    mask_path: str | Path | None = None,
    class_masks: dict[str, str | Path] | None = None,
    roi_path: str | Path | None = None,
    source: str | None = None,
    perspective: str | None = None,
    extra: dict[str, str] | None = None,
    tolerance: float = 1e-3,
    channels: int | None = None,
) -> dict[str, Any]:
    """One subject's ingest.json record with every problem found: each problem its headers
    show (`segsweep.data.headers`; `channels`: how many channels are named) and, where they
    show none, the first its voxels show (`check_subject`: truncated data, NaN/inf voxels,
    label values, ...). A subject with problems has `valid` false, `problem` and `file` of the
    first and `problems` ({file, problem}) listing them all."""
    row = {
        "images": [str(p) for p in image_paths],
        "mask": str(mask_path) if mask_path else "",
        "class_masks": {k: str(v) for k, v in (class_masks or {}).items()},
        "roi": str(roi_path) if roi_path else "",
    }
    problems = header_problems(subject, row, channels, tolerance)
    if not problems:
        try:
            return check_subject(
                subject,
                image_paths,
                labels,
                mask_path,
                class_masks,
                roi_path,
                source,
                perspective,
                extra,
                tolerance,
            )
        except InputError as error:
            problems = [Problem(subject, error.path or "", error.problem)]
    masks = mask_path or ";".join(row["class_masks"].values())
    record = invalid_record(
        subject,
        image_paths[0],
        problems[0].problem,
        source,
        perspective,
        masks,
        roi_path,
        file=problems[0].file,
    )
    record["problems"] = [{"file": p.file, "problem": p.problem} for p in problems]
    record["extra"] = dict(extra or {})
    return record


def content_hash(image: sitk.Image) -> str:
    """SHA-256 of the canonical voxels and grid size: equal for the same scan listed twice
    (under two ids, in two formats or orientations), so the split audit can catch it."""
    array = sitk.GetArrayFromImage(sitk.Cast(canonical(image), float_type(image)))
    digest = hashlib.sha256(str(array.shape).encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def ingest_image(
    subject: str,
    image_path: str | Path | list[str | Path],
    out_image: str | Path,
    out_json: str | Path | None = None,
    source: str | None = None,
    perspective: str | None = None,
    mask_path: str | Path | None = None,
    roi_path: str | Path | None = None,
) -> dict[str, Any]:
    """Validate one image (or its channels), write it canonical float32 NIfTI (+ a record).

    `mask_path`/`roi_path` are only recorded (the cohort manifest lists them; `labelled` means a
    mask was given); the mask itself is validated by `check_subject`/`ingest_mask`.
    """
    paths = _as_list(image_path)
    image = read_channels(paths, subject)
    original = geometry(image)
    out = sitk.Cast(canonical(image), float_type(image))
    write_image(out, out_image)
    record = {
        **_record(subject, paths[0], source, perspective, mask_path, roi_path),
        "original": original,
        "canonical": geometry(out),
        "output": str(out_image),
        "valid": True,
        "problem": None,
    }
    if out_json is not None:
        write_json(out_json, record)
    return record


def invalid_record(
    subject: str,
    image_path: str | Path,
    problem: str,
    source: str | None = None,
    perspective: str | None = None,
    mask_path: str | Path | None = None,
    roi_path: str | Path | None = None,
    file: str | None = None,
) -> dict[str, Any]:
    """The ingest.json record of a subject that failed validation (for `on_invalid: skip`)."""
    return {
        **_record(subject, image_path, source, perspective, mask_path, roi_path),
        "valid": False,
        "problem": problem,
        "file": file,
    }


def _record(subject, image_path, source, perspective, mask_path, roi_path) -> dict[str, Any]:
    """Identity part of an ingest.json record: paths as given (the data manifest lists them)."""
    if isinstance(mask_path, dict):  # one file per class: list them all
        mask_path = ";".join(str(p) for p in mask_path.values())
    return {
        "subject_id": subject,
        "image": str(image_path),
        "mask": str(mask_path) if mask_path else None,
        "roi": str(roi_path) if roi_path else None,
        "source": source,
        "perspective": perspective,
        "labelled": bool(mask_path),
    }


def ingest_mask(
    subject: str,
    image_path: str | Path | list[str | Path],
    mask_path: str | Path | None,
    out_mask: str | Path,
    labels: dict[str, int],
    tolerance: float = 1e-3,
    class_masks: dict[str, str | Path] | None = None,
) -> dict[str, Any]:
    """Validate a label map (or one file per class) against its image; write canonical uint8.

    Returns voxel counts per class name.
    """
    image = read_channels(_as_list(image_path), subject)
    mask, _ = read_label_map(subject, image, labels, mask_path, class_masks, tolerance)
    array = sitk.GetArrayViewFromImage(mask)
    counts = {name: int(np.count_nonzero(array == value)) for name, value in labels.items()}
    out = sitk.Cast(canonical(mask), sitk.sitkUInt8)
    write_image(out, out_mask)
    return {"subject_id": subject, "mask": str(mask_path), "voxels": counts}


def _list(values: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(f"{v:g}" for v in values[:limit])
    return f"[{shown}{', ...' if values.size > limit else ''}]"


# ---------------------------------------------------------------------------------------------
# cohort tables


DROPPED_COLUMNS = ["subject_id", "source", "file", "problem"]
# After the standard columns: non-fatal problems, and the voxel hash the split audit compares.
AUDIT_COLUMNS = ["warning", "content_hash"]


def write_data_manifest(records: list[dict[str, Any]], out_csv: str | Path) -> pd.DataFrame:
    """Cohort table results/data/manifest.csv from the ingest.json records.

    Paths given absolute stay absolute; relative ones (relative to the working directory) are
    rewritten relative to the CSV's folder so the table stays valid wherever it is read from.
    A subject's extra manifest columns (e.g. a stratum) follow the standard ones; `warning` holds
    non-fatal problems (an empty mask).
    """
    out_csv = Path(out_csv)
    folder = out_csv.parent.resolve()
    rows = []
    for record in records:
        row = {column: record.get(column) for column in MANIFEST_COLUMNS}
        for column in PATH_COLUMNS:
            row[column] = ";".join(
                _relative_to(part, folder) for part in (row[column] or "").split(";")
            )
        row["labelled"] = bool(row["labelled"])
        row["valid"] = bool(record.get("valid", True))
        row["warning"] = "; ".join(record.get("warnings") or [])
        row["content_hash"] = record.get("content_hash") or ""
        rows.append({**row, **(record.get("extra") or {})})
    extra = sorted({k for r in rows for k in r} - set(MANIFEST_COLUMNS) - set(AUDIT_COLUMNS))
    table = pd.DataFrame(rows, columns=[*MANIFEST_COLUMNS, *AUDIT_COLUMNS, *extra])
    table = table.sort_values("subject_id")
    write_csv(table, out_csv)
    return table


def write_dropped(
    records: list[dict[str, Any]],
    out_csv: str | Path,
    planned: list[dict[str, str]] | None = None,
) -> pd.DataFrame:
    """results/data/dropped.csv: subject_id, source, file, problem of every problem of an
    invalid subject: its listing's (`planned`: subject, file, problem; subject '' for a problem
    of the dataset's listing) and each one its ingest check found (a record's `problems`)."""
    rows = [
        {"subject_id": p["subject"], "source": "", "file": p["file"], "problem": p["problem"]}
        for p in planned or []
    ]
    rows += [
        {
            "subject_id": r["subject_id"],
            "source": r.get("source") or "",
            "file": p.get("file") or r.get("image") or "",
            "problem": p.get("problem") or "",
        }
        for r in records
        if not r.get("valid", True)
        for p in r.get("problems") or [{"file": r.get("file"), "problem": r.get("problem")}]
    ]
    table = pd.DataFrame(rows, columns=DROPPED_COLUMNS).sort_values("subject_id", kind="stable")
    write_csv(table, out_csv)
    return table


def check_classes(records: list[dict[str, Any]], labels: dict[str, int]) -> None:
    """InputError naming every declared class that has no voxel in any valid labelled
    subject (a class of another dataset's label map, or a wrong label value); nothing to
    check without valid labelled subjects."""
    counted = [r["voxels"] for r in records if r.get("valid", True) and r.get("voxels")]
    if not counted:
        return
    absent = [name for name in labels if not any(v.get(name) for v in counted)]
    if absent:
        named = ", ".join(f"'{name}' (label {labels[name]})" for name in absent)
        raise InputError(
            None,
            "data.labels",
            f"class {named} has no voxel in any of the {len(counted)} labelled subjects: "
            "leave it out of data.labels, or check its label value",
        )


def write_manifests(
    records: list[str | Path],
    out_csv: str | Path,
    dropped_csv: str | Path | None = None,
    planned: list[dict[str, str]] | None = None,
    description: str | Path | None = None,
    read: dict[str, Any] | None = None,
) -> None:
    """The data manifest (and, with `dropped_csv`, the table of invalid subjects, with those
    left out at planning: `planned`) from the subjects' ingest.json files; with `description`,
    what was read (`read`: layout, manifest, labels, channels) and the subjects' counts as
    JSON. Raises InputError when a declared class (`read["labels"]`) has no voxel at all."""
    loaded = [read_json(path) for path in records]
    table = write_data_manifest(loaded, out_csv)
    if dropped_csv:
        for row in write_dropped(loaded, dropped_csv, planned).itertuples():
            print(f"dropped subject {row.subject_id or '(dataset)'}: {row.file}: {row.problem}")
    if read is not None:
        check_classes(loaded, read["labels"])
    if description:
        valid = table[table["valid"]]
        counts = {
            "subjects": len(table),
            "labelled": int(valid["labelled"].sum()),
            "unlabelled": int((~valid["labelled"]).sum()),
            "left_out": len({p["subject"] for p in planned or [] if p["subject"]})
            + int((~table["valid"]).sum()),
        }
        write_json(description, {**(read or {}), **counts})


def _relative_to(value: str | None, folder: Path) -> str:
    if not value:
        return ""
    path = Path(value)
    return value if path.is_absolute() else os.path.relpath(path.resolve(), folder)


# ---------------------------------------------------------------------------------------------
# command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segsweep ingest", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check", help="validate one subject, write its ingest.json")
    image = commands.add_parser("image", help="validate and canonicalise one image")
    mask = commands.add_parser("mask", help="validate and canonicalise one label map")
    for command in (check, image, mask):
        command.add_argument("--subject", required=True)
        command.add_argument("--image", required=True, nargs="+", help="one path per channel")
    for command in (check, image):
        command.add_argument("--source")
        command.add_argument("--perspective")
        command.add_argument("--roi", help="roi path, only recorded in ingest.json")
        command.add_argument(
            "--on-invalid",
            choices=["error", "skip"],
            default="error",
            help="skip: record the problem in ingest.json (valid: false) instead of failing",
        )
    for command in (check, mask):
        command.add_argument("--class-mask", action="append", help="NAME=PATH, one per class")
        command.add_argument("--labels-json", required=True, help="e.g. '{\"femur\": 1}'")
        command.add_argument("--tolerance", type=float, default=1e-3)
    check.add_argument("--mask")
    check.add_argument("--channels", type=int, help="how many channels are named")
    check.add_argument("--extra-json", default="{}", help="other manifest columns to keep")
    check.add_argument("--out-json", required=True)
    image.add_argument("--mask", help="mask path, only recorded in ingest.json")
    image.add_argument("--out-image", required=True)
    image.add_argument("--out-json")
    mask.add_argument("--mask")
    mask.add_argument("--out-mask", required=True)

    manifest = commands.add_parser("manifest", help="cohort manifest from ingest.json records")
    manifest.add_argument("--records", nargs="*", default=[])
    manifest.add_argument("--records-file", help="file listing ingest.json paths, one per line")
    manifest.add_argument("--out", required=True)
    manifest.add_argument("--dropped", help="CSV of the invalid subjects and why")
    return parser


def _skip_or_raise(args: argparse.Namespace, error: InputError) -> None:
    """Under --on-invalid skip, record the problem in ingest.json instead of failing."""
    if args.on_invalid == "error":
        raise error
    log.warning(str(error))
    masks = args.mask or ";".join(
        named_paths(getattr(args, "class_mask", None), "--class-mask").values()
    )
    record = invalid_record(
        args.subject,
        args.image[0],
        error.problem,
        args.source,
        args.perspective,
        masks,
        args.roi,
        file=error.path,
    )
    record["extra"] = json.loads(getattr(args, "extra_json", "{}"))
    write_json(args.out_json, record)


def main(argv: list[str] | None = None) -> None:
    """Command line entry point (`python -m segsweep ingest check|image|mask|manifest ...`)."""
    args = _parser().parse_args(argv)
    if args.command == "check":
        record = examine_subject(
            args.subject,
            args.image,
            json.loads(args.labels_json),
            mask_path=args.mask,
            class_masks=named_paths(args.class_mask, "--class-mask"),
            roi_path=args.roi,
            source=args.source,
            perspective=args.perspective,
            extra=json.loads(args.extra_json),
            tolerance=args.tolerance,
            channels=args.channels,
        )
        for problem in record.get("problems", []):
            if args.on_invalid == "error":
                raise InputError(args.subject, problem["file"], problem["problem"])
            log.warning(f"subject {args.subject}: {problem['file']}: {problem['problem']}")
        write_json(args.out_json, record)
    elif args.command == "image":
        try:
            ingest_image(
                args.subject,
                args.image,
                args.out_image,
                args.out_json,
                source=args.source,
                perspective=args.perspective,
                mask_path=args.mask,
                roi_path=args.roi,
            )
        except InputError as error:
            if args.out_json is None:
                raise
            _skip_or_raise(args, error)
    elif args.command == "mask":
        ingest_mask(
            args.subject,
            args.image,
            args.mask,
            args.out_mask,
            json.loads(args.labels_json),
            tolerance=args.tolerance,
            class_masks=named_paths(args.class_mask, "--class-mask"),
        )
    else:
        paths = list(args.records)
        if args.records_file:
            lines = Path(args.records_file).read_text().splitlines()
            paths += [line.strip() for line in lines if line.strip()]
        write_manifests(paths, args.out, args.dropped)


if __name__ == "__main__":
    main()
