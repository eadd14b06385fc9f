"""Ingest: read and validate one subject, reorient it to the canonical "LIP" grid, record geometry.

Everything downstream assumes one orientation (slice arr[k] is a coronal plane, superior at the
top), float32 images and uint8 label maps, so these checks happen once, here, and a bad subject
stops with one message naming the subject, the file and the problem (see `InputError`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any

import nibabel
import numpy as np
import pandas as pd
import SimpleITK as sitk

from segsweep.errors import InputError

log = logging.getLogger(__name__)

CANONICAL = "LIP"
SUFFIXES = (".mhd", ".mha", ".nii", ".nii.gz")
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
# reading


def _itk_reason(error: RuntimeError) -> str:
    """The useful last part of a SimpleITK exception, without the C++ file/line preamble."""
    text = str(error)
    if "ERROR: " in text:
        text = text.rsplit("ERROR: ", 1)[1]
    text = re.sub(r"\w+IO\(0x[0-9a-f]+\): ", "", text)
    return " ".join(text.split())


def _mhd_data_file(path: Path) -> Path | None:
    """The ElementDataFile named in a MetaImage header (None if inline or not stated)."""
    try:
        with path.open("rb") as handle:  # the header is short; LOCAL data may follow it
            header = handle.read(65536).decode("latin-1")
    except OSError:
        return None
    match = re.search(r"^\s*ElementDataFile\s*=\s*(.+?)\s*$", header, re.MULTILINE)
    if not match or match.group(1).upper() in {"LOCAL", "LIST"}:
        return None
    return path.parent / match.group(1)


def _read_dicom_series(folder: Path, subject: str | None) -> sitk.Image:
    """Read the single DICOM series in a folder; several series are ambiguous, so refuse them."""
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputError(subject, str(folder), "folder holds no DICOM series")
    if len(series) > 1:
        raise InputError(
            subject,
            str(folder),
            f"folder holds {len(series)} DICOM series ({', '.join(series)}); expected one",
        )
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), series[0]))
    try:
        return reader.Execute()
    except RuntimeError as error:
        raise InputError(
            subject, str(folder), f"unreadable DICOM series: {_itk_reason(error)}"
        ) from None


def read_image(path: str | Path, subject: str | None = None) -> sitk.Image:
    """Read a 3D image (.mhd/.mha/.nii/.nii.gz or a DICOM series folder) and check its voxels.

    Raises InputError for a missing or unreadable file, an unsupported format, a non-3D image and
    NaN/inf voxels (they would silently poison N4, normalisation and the loss).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(subject, str(path), "file not found")
    if path.is_dir():
        image = _read_dicom_series(path, subject)
    else:
        if not path.name.lower().endswith(SUFFIXES):
            raise InputError(
                subject, str(path), f"unsupported format; expected one of {', '.join(SUFFIXES)}"
            )
        data = _mhd_data_file(path) if path.suffix.lower() == ".mhd" else None
        if data is not None and not data.exists():
            raise InputError(subject, str(path), f"MetaImage data file {data.name} not found")
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as error:
            if data is not None:  # ITK reports a short data file as "No such file": say what it is
                problem = f"MetaImage data file {data.name} is truncated or corrupt"
            else:
                problem = f"unreadable file: {_itk_reason(error)}"
            raise InputError(subject, str(path), problem) from None
    if image.GetDimension() != 3:
        raise InputError(subject, str(path), f"expected a 3D image, got {image.GetDimension()}D")
    bad = _non_finite(sitk.GetArrayViewFromImage(image))
    if path.name.lower().endswith((".nii", ".nii.gz")):
        # ITK's NIfTI reader silently turns NaN/inf into 0, so look at the stored values.
        try:
            bad = max(bad, _non_finite(np.asanyarray(nibabel.load(path).dataobj)))
        except (nibabel.filebasedimages.ImageFileError, OSError, ValueError) as error:
            log.warning("subject %s: %s: NaN check skipped, nibabel: %s", subject, path, error)
    if bad:
        raise InputError(subject, str(path), f"{bad} NaN/inf voxels")
    return image


def _non_finite(array: np.ndarray) -> int:
    if not np.issubdtype(array.dtype, np.floating):
        return 0
    return int(np.count_nonzero(~np.isfinite(array)))


# ---------------------------------------------------------------------------------------------
# geometry


def orientation(image: sitk.Image) -> str:
    """Three-letter DICOM orientation code of the image axes (e.g. "LIP", "PIR")."""
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())


def geometry(image: sitk.Image) -> dict[str, Any]:
    """Size, spacing, origin, direction and orientation code, JSON-ready."""
    return {
        "size": list(image.GetSize()),
        "spacing": list(image.GetSpacing()),
        "origin": list(image.GetOrigin()),
        "direction": list(image.GetDirection()),
        "orientation": orientation(image),
    }


def canonical(image: sitk.Image) -> sitk.Image:
    """Reorient (axis permutation/flip only, no resampling) to the canonical LIP orientation."""
    return sitk.DICOMOrient(image, CANONICAL)


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
# per-subject ingest


def ingest_image(
    subject: str,
    image_path: str | Path,
    out_image: str | Path,
    out_json: str | Path,
    source: str | None = None,
    perspective: str | None = None,
    mask_path: str | Path | None = None,
    roi_path: str | Path | None = None,
) -> dict[str, Any]:
    """Validate one image, write it canonical float32 NIfTI and its ingest.json record.

    `mask_path`/`roi_path` are only recorded (the cohort manifest lists them; `labelled` means a
    mask was given); the mask itself is validated by `ingest_mask`.
    """
    image = read_image(image_path, subject)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(subject, str(image_path), "multi-component voxels are not supported")
    original = geometry(image)
    out = sitk.Cast(canonical(image), sitk.sitkFloat32)
    Path(out_image).parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(out, str(out_image), useCompression=True)
    record = {
        **_record(subject, image_path, source, perspective, mask_path, roi_path),
        "original": original,
        "canonical": geometry(out),
        "output": str(out_image),
        "valid": True,
        "problem": None,
    }
    _write_json(record, out_json)
    return record


def invalid_record(
    subject: str,
    image_path: str | Path,
    problem: str,
    source: str | None = None,
    perspective: str | None = None,
    mask_path: str | Path | None = None,
    roi_path: str | Path | None = None,
) -> dict[str, Any]:
    """The ingest.json record of a subject that failed validation (for `on_invalid: skip`)."""
    return {
        **_record(subject, image_path, source, perspective, mask_path, roi_path),
        "valid": False,
        "problem": problem,
    }


def _record(subject, image_path, source, perspective, mask_path, roi_path) -> dict[str, Any]:
    """Identity part of an ingest.json record: paths as given (the data manifest lists them)."""
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
    image_path: str | Path,
    mask_path: str | Path,
    out_mask: str | Path,
    labels: dict[str, int],
    tolerance: float = 1e-3,
) -> dict[str, Any]:
    """Validate a label map against its image and write it canonical uint8 NIfTI.

    Checks: same size, same spacing/origin/direction within `tolerance` (mm for spacing/origin),
    integer values within {0} ∪ labels. An empty mask is kept with a warning (the subject then
    only contributes background). Returns voxel counts per class name.
    """
    image = read_image(image_path, subject)
    mask = read_image(mask_path, subject)
    if mask.GetSize() != image.GetSize():
        raise InputError(
            subject,
            str(mask_path),
            f"shape mismatch: mask size {list(mask.GetSize())} != image size "
            f"{list(image.GetSize())}",
        )
    differences = _geometry_differences(image, mask, tolerance)
    if differences:
        raise InputError(subject, str(mask_path), "geometry mismatch: " + "; ".join(differences))
    array = sitk.GetArrayFromImage(mask)
    values = np.unique(array)
    non_integer = values[values != np.round(values)]
    if non_integer.size:
        raise InputError(
            subject,
            str(mask_path),
            f"non-integer label values {_list(non_integer)} (not a label map)",
        )
    allowed = {0, *labels.values()}
    outside = [v for v in values.astype(np.int64).tolist() if v not in allowed]
    if outside:
        raise InputError(
            subject,
            str(mask_path),
            f"label values {outside} not in data.labels {dict(labels)} (allowed {sorted(allowed)})",
        )
    counts = {name: int(np.count_nonzero(array == value)) for name, value in labels.items()}
    if not any(counts.values()):
        message = f"subject {subject}: {mask_path}: mask is empty (no labelled voxels)"
        log.warning(message)
        warnings.warn(message, stacklevel=2)
    out = sitk.Cast(canonical(mask), sitk.sitkUInt8)
    Path(out_mask).parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(out, str(out_mask), useCompression=True)
    return {"subject_id": subject, "mask": str(mask_path), "voxels": counts}


def _list(values: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(f"{v:g}" for v in values[:limit])
    return f"[{shown}{', ...' if values.size > limit else ''}]"


# ---------------------------------------------------------------------------------------------
# manifests


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a user manifest CSV: required subject_id and image, unique ids, absolute paths.

    Paths in image/mask/roi are relative to the CSV's folder; `labelled` is True where a mask is
    given.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(None, str(path), "manifest not found")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise InputError(None, str(path), f"unreadable manifest: {error}") from None
    table.columns = [c.strip() for c in table.columns]
    for column in ("subject_id", "image"):
        if column not in table.columns:
            raise InputError(
                None,
                str(path),
                f"manifest lacks required column '{column}' (columns: {', '.join(table.columns)})",
            )
    table["subject_id"] = table["subject_id"].str.strip()
    if (table["subject_id"] == "").any():
        rows = (table.index[table["subject_id"] == ""] + 2).tolist()
        raise InputError(None, str(path), f"empty subject_id on line(s) {rows}")
    duplicated = sorted(set(table.loc[table["subject_id"].duplicated(), "subject_id"]))
    if duplicated:
        raise InputError(None, str(path), f"duplicate subject ids: {', '.join(duplicated)}")
    for column in PATH_COLUMNS:
        if column not in table.columns:
            table[column] = ""
        table[column] = [_resolve(value, path.parent) for value in table[column]]
    missing_image = table.loc[table["image"] == "", "subject_id"].tolist()
    if missing_image:
        raise InputError(None, str(path), f"no image given for: {', '.join(missing_image)}")
    table["labelled"] = table["mask"] != ""
    return table


def _resolve(value: str, folder: Path) -> str:
    value = value.strip()
    if not value:
        return ""
    candidate = Path(value)
    return str(candidate if candidate.is_absolute() else (folder / candidate).resolve())


def write_data_manifest(records: list[dict[str, Any]], out_csv: str | Path) -> pd.DataFrame:
    """Cohort table results/data/manifest.csv from the ingest.json records.

    Paths given absolute stay absolute; relative ones (relative to the working directory) are
    rewritten relative to the CSV's folder so the table stays valid wherever it is read from.
    """
    out_csv = Path(out_csv)
    folder = out_csv.parent.resolve()
    rows = []
    for record in records:
        row = {column: record.get(column) for column in MANIFEST_COLUMNS}
        for column in PATH_COLUMNS:
            row[column] = _relative_to(row[column], folder)
        row["labelled"] = bool(row["labelled"])
        row["valid"] = bool(record.get("valid", True))
        rows.append(row)
    table = pd.DataFrame(rows, columns=MANIFEST_COLUMNS).sort_values("subject_id")
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_csv, index=False)
    return table


def _relative_to(value: str | None, folder: Path) -> str:
    if not value:
        return ""
    path = Path(value)
    return value if path.is_absolute() else os.path.relpath(path.resolve(), folder)


def _write_json(data: dict[str, Any], path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------
# command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segsweep ingest", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    image = commands.add_parser("image", help="validate and canonicalise one image")
    image.add_argument("--subject", required=True)
    image.add_argument("--image", required=True)
    image.add_argument("--source")
    image.add_argument("--perspective")
    image.add_argument("--mask", help="mask path, only recorded in ingest.json")
    image.add_argument("--roi", help="roi path, only recorded in ingest.json")
    image.add_argument("--out-image", required=True)
    image.add_argument("--out-json", required=True)
    image.add_argument(
        "--on-invalid",
        choices=["error", "skip"],
        default="error",
        help="skip: record the problem in ingest.json (valid: false) instead of failing",
    )

    mask = commands.add_parser("mask", help="validate and canonicalise one label map")
    mask.add_argument("--subject", required=True)
    mask.add_argument("--image", required=True)
    mask.add_argument("--mask", required=True)
    mask.add_argument("--labels-json", required=True, help='e.g. \'{"femur": 1, "tibia": 2}\'')
    mask.add_argument("--out-mask", required=True)
    mask.add_argument("--tolerance", type=float, default=1e-3)

    manifest = commands.add_parser("manifest", help="cohort manifest from ingest.json records")
    manifest.add_argument("--records", nargs="*", default=[])
    manifest.add_argument("--records-file", help="file listing ingest.json paths, one per line")
    manifest.add_argument("--out", required=True)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Command line entry point (`python -m segsweep ingest image|mask|manifest ...`)."""
    args = _parser().parse_args(argv)
    if args.command == "image":
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
            if args.on_invalid == "error":
                raise
            log.warning(str(error))
            record = invalid_record(
                args.subject,
                args.image,
                error.problem,
                args.source,
                args.perspective,
                args.mask,
                args.roi,
            )
            _write_json(record, args.out_json)
    elif args.command == "mask":
        labels = json.loads(args.labels_json)
        ingest_mask(
            args.subject, args.image, args.mask, args.out_mask, labels, tolerance=args.tolerance
        )
    else:
        paths = list(args.records)
        if args.records_file:
            lines = Path(args.records_file).read_text().splitlines()
            paths += [line.strip() for line in lines if line.strip()]
        records = [json.loads(Path(p).read_text()) for p in paths]
        write_data_manifest(records, args.out)


if __name__ == "__main__":
    main()
