"""Image files: reading and checking them, their headers, canonical orientation, geometry
records and writing (SimpleITK, with nibabel as a second reader of NIfTI voxels).

Two readers, by where a file comes from:
- `read_image` for the files a user brings (.mhd/.mha/.nii/.nii.gz or a DICOM series folder):
  every problem becomes one InputError naming the subject, the file and what is wrong (missing
  or truncated file, unreadable header, unsupported format, not 3D, NaN/inf voxels); a 4D
  file (Decathlon's multi-modal images: channels last) is read whole where channels may be;
- `brought_header` for the header of such a file alone (`segsweep validate`);
- `read_volume` for the workflow's own intermediate files (canonical NIfTI under results/),
  which only need a clear error when they are missing or unreadable.

Conventions: the canonical orientation is DICOM "LIP" (array [z, y, x]: slice z is a coronal
plane, superior at the top, viewed from the front); geometry records (`geometry`) are
JSON-ready lists of size, spacing (mm), origin (mm), direction cosines and orientation code.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nibabel
import numpy as np
import SimpleITK as sitk

from segsweep.errors import InputError

CANONICAL = "LIP"
SUFFIXES = (".mhd", ".mha", ".nii", ".nii.gz")


# ---------------------------------------------------------------------------------------------
# reading brought files


def _itk_reason(error: RuntimeError) -> str:
    """The useful last part of a SimpleITK exception, without the C++ file/line preamble."""
    text = str(error)
    if "ERROR: " in text:
        text = text.rsplit("ERROR: ", 1)[1]
    text = re.sub(r"\w+IO\(0x[0-9a-f]+\): ", "", text)
    text = re.sub(r' for "[^"]*"', "", text)  # the path: the message names it already
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


def _one_series(folder: Path, subject: str | None) -> str:
    """The id of the single DICOM series in a folder; several series are ambiguous, so refuse
    them (as no series)."""
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputError(subject, str(folder), "folder holds no DICOM series")
    if len(series) > 1:
        raise InputError(
            subject,
            str(folder),
            f"folder holds {len(series)} DICOM series ({', '.join(series)}); expected one",
        )
    return series[0]


def _read_dicom_series(folder: Path, subject: str | None) -> sitk.Image:
    """Read the single DICOM series in a folder."""
    reader = sitk.ImageSeriesReader()
    series = _one_series(folder, subject)
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), series))
    try:
        return reader.Execute()
    except RuntimeError as error:
        raise InputError(
            subject, str(folder), f"unreadable DICOM series: {_itk_reason(error)}"
        ) from None


def read_image(
    path: str | Path, subject: str | None = None, channels_last: bool = False
) -> sitk.Image:
    """Read a 3D image (.mhd/.mha/.nii/.nii.gz or a DICOM series folder) and check its voxels;
    with `channels_last`, a 4D image (its fourth axis: channels) is returned as read.

    Raises InputError for a missing file, an unsupported format, an unreadable header, truncated
    or corrupt voxel data, a non-3D image and NaN/inf voxels (they would silently poison N4,
    normalisation and the loss).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(subject, str(path), "file not found")
    image = _read_dicom_series(path, subject) if path.is_dir() else _read_file(path, subject)
    if image.GetDimension() != 3 and not (channels_last and image.GetDimension() == 4):
        raise InputError(subject, str(path), f"expected a 3D image, got {image.GetDimension()}D")
    bad = _non_finite(sitk.GetArrayViewFromImage(image))
    if path.name.lower().endswith((".nii", ".nii.gz")):
        bad = max(bad, _non_finite(_nifti_voxels(path, subject)))
    if bad:
        raise InputError(subject, str(path), f"{bad} NaN/inf voxels")
    return image


def _read_file(path: Path, subject: str | None) -> sitk.Image:
    """Read the header first, then the voxels, so the message says which of the two is broken."""
    reader, data = _open_header(path, subject)
    try:
        return reader.Execute()
    except RuntimeError:
        part = f"MetaImage data file {data.name}" if data is not None else "voxel data"
        raise InputError(subject, str(path), f"{part} is truncated or corrupt") from None


def _open_header(path: Path, subject: str | None) -> tuple[sitk.ImageFileReader, Path | None]:
    """A reader with the header of a brought file read, and its MetaImage data file (None
    for other formats); InputError for an unsupported format, a missing data file and an
    unreadable header."""
    if not path.name.lower().endswith(SUFFIXES):
        raise InputError(
            subject, str(path), f"unsupported format; expected one of {', '.join(SUFFIXES)}"
        )
    data = _mhd_data_file(path) if path.suffix.lower() == ".mhd" else None
    if data is not None and not data.exists():
        raise InputError(subject, str(path), f"MetaImage data file {data.name} not found")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        reason = _itk_reason(error)
        if "No such file" in reason:  # MetaImage's errno for a header it cannot parse
            reason = "not a valid header of its format"
        raise InputError(subject, str(path), f"unreadable header: {reason}") from None
    return reader, data


def brought_header(path: str | Path, subject: str | None = None) -> dict[str, Any]:
    """The header of a brought image, without its voxels: size, spacing, origin and direction
    of its first three axes (a 3 × 3 direction), `channels` (components per voxel, or the
    length of a fourth axis) and `dimension`. A DICOM folder gives only `dimension` 3 and
    `channels` 1 (its grid needs every file: ingest checks it). InputError as `read_image`
    for a missing file, an unsupported format and an unreadable header."""
    path = Path(path)
    if not path.exists():
        raise InputError(subject, str(path), "file not found")
    if path.is_dir():
        _one_series(path, subject)
        return {"dimension": 3, "channels": 1, "size": None}
    reader, _ = _open_header(path, subject)
    dimension = reader.GetDimension()
    direction = np.reshape(reader.GetDirection(), (dimension, dimension))[:3, :3]
    return {
        "dimension": dimension,
        "channels": reader.GetSize()[3] if dimension == 4 else reader.GetNumberOfComponents(),
        "size": list(reader.GetSize()[:3]),
        "spacing": list(reader.GetSpacing()[:3]),
        "origin": list(reader.GetOrigin()[:3]),
        "direction": direction.ravel().tolist(),
    }


def _nifti_voxels(path: Path, subject: str | None) -> np.ndarray:
    """The voxels as stored: ITK's NIfTI reader silently turns NaN/inf into 0 and zero-fills a
    truncated file, so read them again with nibabel, which notices both."""
    try:
        return np.asanyarray(nibabel.load(path).dataobj)
    except (nibabel.filebasedimages.ImageFileError, OSError, EOFError, ValueError) as error:
        reason = " ".join(str(error).replace(str(path), path.name).split())
        raise InputError(
            subject, str(path), f"voxel data is truncated or corrupt (nibabel: {reason})"
        ) from None


def _non_finite(array: np.ndarray) -> int:
    if not np.issubdtype(array.dtype, np.floating):
        return 0
    return int(np.count_nonzero(~np.isfinite(array)))


def read_volume(path: str | Path, subject: str | None = None) -> sitk.Image:
    """A 3D image the workflow wrote, or an InputError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(subject, str(path), "file not found")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise InputError(subject, str(path), f"unreadable image ({err})") from err
    if image.GetDimension() != 3:
        raise InputError(subject, str(path), f"expected a 3D image, got {image.GetDimension()}D")
    return image


def read_header(path: str | Path, subject: str | None = None) -> sitk.ImageFileReader:
    """Size, spacing and channels of a 3D image without reading its voxels."""
    path = Path(path)
    if not path.is_file():
        raise InputError(subject, str(path), "file not found")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise InputError(subject, str(path), f"unreadable image header ({err})") from err
    if reader.GetDimension() != 3:
        raise InputError(subject, str(path), f"expected a 3D image, got {reader.GetDimension()}D")
    return reader


def data_files(path: str) -> list[str]:
    """The files an image path stands for: a MetaImage header and the ZRAW voxel file it
    points to, else the path itself."""
    return [path, path[: -len(".mhd")] + ".zraw"] if path.endswith(".mhd") else [path]


def write_image(image: sitk.Image, path: str | Path) -> None:
    """Write an image (compressed), creating its folder."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)


def channels_last(image: sitk.Image) -> np.ndarray:
    """Voxels as float64 [z, y, x, c] (scalar images get c = 1)."""
    array = sitk.GetArrayFromImage(image).astype(np.float64, copy=False)
    return array if image.GetNumberOfComponentsPerPixel() > 1 else array[..., np.newaxis]


def float_type(image: sitk.Image) -> int:
    """float32 pixels of the image's kind: one component per channel."""
    multi = image.GetNumberOfComponentsPerPixel() > 1
    return sitk.sitkVectorFloat32 if multi else sitk.sitkFloat32


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


def blank(
    grid: dict[str, Any], pixel_type: int = sitk.sitkUInt8, components: int = 1
) -> sitk.Image:
    """An empty image (sitk.Image) on the grid of a geometry record (size, spacing, origin,
    direction): the reference grid to resample onto."""
    image = sitk.Image([int(s) for s in grid["size"]], pixel_type, components)
    image.SetOrigin([float(v) for v in grid["origin"]])
    image.SetSpacing([float(v) for v in grid["spacing"]])
    image.SetDirection([float(v) for v in grid["direction"]])
    return image
