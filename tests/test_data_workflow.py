"""The real Snakefile on a brought dataset (data.manifest): formats, labels and sizes unlike the
synthetic cohort, and the validation catalogue's behaviour at workflow level — every subject is
checked, headers and voxels, and one table names every problem of every subject in one run: by
default it stops the workflow before any subject's data is made; with `data.on_invalid: skip`
the bad subjects are dropped, listed in results/data/dropped.csv and in the report, and the rest
goes through one tiny training run (one epoch) to the report.
"""

from __future__ import annotations

import json
import locale
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml
from runs import snakemake

LABELS = {"bone": 4, "muscle": 7}

pytestmark = pytest.mark.workflow


def _subject(seed: int, size=(40, 36, 10)) -> tuple[sitk.Image, sitk.Image]:
    """A bright ellipsoid in air with a smooth bias, and its two-class label map."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = size
    z, y, x = np.meshgrid(
        np.linspace(-1, 1, nz), np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij"
    )
    body = (x / 0.8) ** 2 + (y / 0.7) ** 2 < 1
    core = (x / 0.3) ** 2 + (y / 0.3) ** 2 < 1
    array = np.where(body, 100.0, 5.0) + np.where(core, 60.0, 0.0)
    array = array * np.exp(0.2 * x) + rng.normal(0, 2.0, array.shape)
    image = sitk.GetImageFromArray(np.abs(array).astype(np.float32))
    image.SetSpacing((1.2, 1.1, 3.0))
    image.SetOrigin((-20.0, 10.0, 5.0))
    image.SetDirection((1, 0, 0, 0, 0, -1, 0, 1, 0))  # coronal LIP, as the canonical grid
    labels = np.where(core, LABELS["bone"], np.where(body, LABELS["muscle"], 0)).astype(np.uint8)
    mask = sitk.GetImageFromArray(labels)
    mask.CopyInformation(image)
    return image, mask


def write_dicom(image: sitk.Image, folder: Path, uid: str = "1.2.826.0.1.3680043.2.1125.9") -> None:
    """One int16 DICOM file per slice of `image`, with its geometry in the position and
    orientation tags (the direction must be a proper rotation, as DICOM's slice normal is)."""
    saved = locale.setlocale(locale.LC_ALL)  # GDCM's writer switches the process locale to C
    try:
        _write_dicom_slices(image, folder, uid)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _write_dicom_slices(image: sitk.Image, folder: Path, uid: str) -> None:
    folder.mkdir(parents=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    array = sitk.GetArrayFromImage(image).astype(np.int16)
    d = image.GetDirection()
    orientation = (d[0], d[3], d[6], d[1], d[4], d[7])  # the row and column directions
    for k in range(array.shape[0]):
        slice_ = sitk.GetImageFromArray(array[k : k + 1])
        origin = image.TransformIndexToPhysicalPoint((0, 0, k))
        slice_.SetSpacing(image.GetSpacing())
        slice_.SetOrigin(origin)
        slice_.SetDirection(d)
        tags = {
            "0008|0060": "MR",
            "0020|000d": uid,
            "0020|000e": f"{uid}.1",
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:g}" for v in origin),
            "0020|0037": "\\".join(f"{v:g}" for v in orientation),
            "0008|0018": f"{uid}.1.{k + 1}",
        }
        for tag, value in tags.items():
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{k:03d}.dcm"))
        writer.Execute(slice_)


def _dataset(root: Path) -> Path:
    """Labelled NIfTI, MHA, MHD subjects, one with one mask file per class, an unlabelled DICOM
    series and a subject whose mask holds a label value outside data.labels."""
    data = root / "brought"
    data.mkdir()
    rows = []
    for i, (name, suffix) in enumerate(
        [("nii1", ".nii.gz"), ("nii2", ".nii"), ("mha1", ".mha"), ("mhd1", ".mhd")]
    ):
        image, mask = _subject(i)
        sitk.WriteImage(image, str(data / f"{name}_img{suffix}"))
        sitk.WriteImage(mask, str(data / f"{name}_seg{suffix}"))
        rows.append(f"{name},{name}_img{suffix},{name}_seg{suffix},,,site{i % 2}")
    image, mask = _subject(10)
    sitk.WriteImage(image, str(data / "cls_img.nii.gz"))
    for cls, value in LABELS.items():
        sitk.WriteImage(mask == value, str(data / f"cls_{cls}.nii.gz"))
    rows.append("cls,cls_img.nii.gz,,cls_bone.nii.gz,cls_muscle.nii.gz,site0")
    image, _ = _subject(20)
    write_dicom(image, data / "dicom")
    rows.append("dcm,dicom,,,,site1")
    image, mask = _subject(30)
    sitk.WriteImage(image, str(data / "bad_img.nii.gz"))
    sitk.WriteImage(mask + (mask == 4) * 5, str(data / "bad_seg.nii.gz"))  # 4 -> 9: unknown
    rows.append("bad,bad_img.nii.gz,bad_seg.nii.gz,,,site1")
    manifest = data / "manifest.csv"
    manifest.write_text("subject_id,image,mask,mask_bone,mask_muscle,site\n" + "\n".join(rows))
    return manifest


def _workdir(root: Path, manifest: Path, on_invalid: str) -> Path:
    work = root / on_invalid
    (work / "config").mkdir(parents=True)
    config = {
        "data": {
            "source": "manifest",
            "manifest": str(manifest),
            "labels": LABELS,
            "on_invalid": on_invalid,
        },
        "preprocess": {
            "n4": {"iterations": [10]},
            "crop": {"centre": "foreground", "window_mm": 40, "size": 16, "slices": 8},
        },
        "split": {"stratify": "site"},
        "train": {"depth": 2, "base_channels": 4, "epochs": 1, "checkpoint_every": 1},
        "threads": 1,
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    (work / "config" / "sweep.yaml").write_text(yaml.safe_dump({"grids": {"g": {"lr": [0.001]}}}))
    return work


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _dataset(tmp_path_factory.mktemp("brought"))


def test_bad_subject_stops_the_workflow_once_every_subject_is_checked(manifest: Path) -> None:
    work = _workdir(manifest.parent.parent, manifest, "error")
    subjects = ["nii1", "nii2", "mha1", "mhd1", "cls", "dcm"]
    targets = [f"results/data/{s}/image.nii.gz" for s in subjects]
    result = snakemake(work, "--keep-going", "results/splits/splits.csv", *targets)
    assert result.returncode != 0
    assert f"{manifest}: 1 problem (data.on_invalid: skip" in result.stderr
    table = result.stderr.split("Traceback")[0]  # the job's error, not its traceback
    (row,) = [line for line in table.splitlines() if line.startswith("bad ")]
    assert str(manifest.parent / "bad_seg.nii.gz") in row and "label values [9] not in" in row
    for subject in subjects:  # every other subject is checked; none is ingested before the table
        assert (work / "results/data" / subject / "ingest.json").exists(), subject
        assert not (work / "results/data" / subject / "image.nii.gz").exists(), subject
    assert not (work / "results/splits/splits.csv").exists()


def test_skip_drops_the_bad_subject_and_the_rest_reaches_the_report(manifest: Path) -> None:
    work = _workdir(manifest.parent.parent, manifest, "skip")
    result = snakemake(work)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    html = (work / "results/report/thesis.html").read_text()
    assert "1 subject dropped as invalid" in html
    assert "<td>bad</td>" in html and "label values [9] not in data.labels" in html
    final = pd.read_csv(work / "results/summary/final.csv")["run_id"]
    for run in final:
        assert not (work / "results/final" / run / "predictions_native/bad.nii.gz").exists()
        assert (work / "results/final" / run / "unlabelled/dcm.nii.gz").is_file()
    dropped = pd.read_csv(work / "results/data/dropped.csv")
    assert dropped["subject_id"].tolist() == ["bad"]
    assert dropped["file"].tolist() == [str(manifest.parent / "bad_seg.nii.gz")]
    assert dropped["problem"].iloc[0].startswith("label values [9] not in data.labels")
    data = pd.read_csv(work / "results/data/manifest.csv", dtype={"site": str})
    assert set(data["site"]) == {"site0", "site1"}
    splits = pd.read_csv(work / "results/splits/splits.csv")
    assert "bad" not in set(splits["subject_id"])
    assert splits.set_index("subject_id").loc["dcm", "split"] == "unlabelled"
    stats = json.loads((work / "results/datasets/normalisation.json").read_text())
    assert set(stats["subjects"]) <= {"nii1", "nii2", "mha1", "mhd1", "cls"}
    combined = sitk.ReadImage(str(work / "results/data/cls/mask.nii.gz"))
    assert sorted(np.unique(sitk.GetArrayFromImage(combined)).tolist()) == [0, 4, 7]
    dicom = json.loads((work / "results/data/dcm/ingest.json").read_text())
    assert dicom["original"]["size"] == [40, 36, 10]
    checks = pd.read_csv(work / "results/splits/splits_checks.csv")
    assert checks["passed"].all()
    centre = pd.read_csv(work / "results/crop/centre_error.csv")
    assert sorted(centre["subject_id"]) == ["cls", "mha1", "mhd1", "nii1", "nii2"]
    assert (centre["error_mm"] < 10).all()  # the ellipsoid's core: both classes meet around it
    kept = pd.read_csv(work / "results/crop/kept_fraction.csv")
    assert kept.columns.tolist() == ["subject_id", "bone", "muscle"]
    assert (kept["bone"] == 1.0).all()  # the 40 mm window holds the whole 24 mm core


# --- the validation catalogue at workflow level -----------------------------------------------


def _write_pair(data: Path, name: str, image: sitk.Image, mask: sitk.Image) -> tuple[str, str]:
    """A subject as NIfTI image and mask files; returns the manifest's (image, mask) cells."""
    sitk.WriteImage(image, str(data / f"{name}_img.nii.gz"))
    sitk.WriteImage(mask, str(data / f"{name}_seg.nii.gz"))
    return f"{name}_img.nii.gz", f"{name}_seg.nii.gz"


def _missing(data: Path, name: str) -> tuple[str, str]:
    cells = _write_pair(data, name, *_subject(40))
    (data / cells[0]).unlink()
    return cells


def _truncated(data: Path, name: str) -> tuple[str, str]:
    image, mask = _subject(41)
    sitk.WriteImage(image, str(data / f"{name}_img.mhd"), useCompression=True)
    raw = data / f"{name}_img.zraw"
    raw.write_bytes(raw.read_bytes()[: raw.stat().st_size // 2])
    sitk.WriteImage(mask, str(data / f"{name}_seg.nii.gz"))
    return f"{name}_img.mhd", f"{name}_seg.nii.gz"


def _truncated_nifti(data: Path, name: str) -> tuple[str, str]:
    cells = _write_pair(data, name, *_subject(49))
    path = data / cells[0]
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 6 // 10])
    return cells


def _corrupt_header(data: Path, name: str) -> tuple[str, str]:
    cells = _write_pair(data, name, *_subject(42))
    path = data / cells[0]
    path.write_bytes(b"\x00" * 64 + path.read_bytes()[64:])  # gzip magic and NIfTI header gone
    return cells


def _shape(data: Path, name: str) -> tuple[str, str]:
    image, _ = _subject(43)
    _, mask = _subject(43, size=(40, 36, 12))
    return _write_pair(data, name, image, mask)


def _geometry(data: Path, name: str) -> tuple[str, str]:
    image, mask = _subject(44)
    mask.SetOrigin((-20.0, 12.0, 5.0))  # 2 mm off, tolerance 1e-3
    return _write_pair(data, name, image, mask)


def _nan(data: Path, name: str) -> tuple[str, str]:
    image, mask = _subject(45)
    array = sitk.GetArrayFromImage(image)
    array[0, 0, :2] = [np.nan, np.inf]
    broken = sitk.GetImageFromArray(array)
    broken.CopyInformation(image)
    return _write_pair(data, name, broken, mask)


def _labels(data: Path, name: str) -> tuple[str, str]:
    image, mask = _subject(46)
    return _write_pair(data, name, image, mask + (mask == 4) * 5)  # 4 -> 9: unknown


def _two_series(data: Path, name: str) -> tuple[str, str]:
    image, _ = _subject(47)
    folder = data / f"{name}_dicom"
    folder.mkdir()
    for uid in ("1.2.826.0.1.3680043.2.1125.71", "1.2.826.0.1.3680043.2.1125.72"):
        write_dicom(image, data / uid, uid)
        for path in (data / uid).iterdir():
            path.rename(folder / f"{uid}_{path.name}")
    return f"{name}_dicom", ""


def _no_raw(data: Path, name: str) -> tuple[str, str]:
    image, mask = _subject(50)
    sitk.WriteImage(image, str(data / f"{name}_img.mhd"))
    (data / f"{name}_img.raw").unlink()
    sitk.WriteImage(mask, str(data / f"{name}_seg.nii.gz"))
    return f"{name}_img.mhd", f"{name}_seg.nii.gz"


def _empty(data: Path, name: str) -> tuple[str, str]:
    image, mask = _subject(48)
    return _write_pair(data, name, image, mask * 0)


# (subject, how to break it, file named in the message, problem) for every per-subject item.
CATALOGUE = [
    ("missing", _missing, "missing_img.nii.gz", "file not found"),
    ("noraw", _no_raw, "noraw_img.mhd", "MetaImage data file noraw_img.raw not found"),
    (
        "truncated",
        _truncated,
        "truncated_img.mhd",
        "MetaImage data file truncated_img.zraw is truncated",
    ),
    ("short", _truncated_nifti, "short_img.nii.gz", "voxel data is truncated or corrupt"),
    ("header", _corrupt_header, "header_img.nii.gz", "unreadable header: Unable to determine"),
    ("shape", _shape, "shape_seg.nii.gz", "shape mismatch: mask size [40, 36, 12] != image"),
    ("geometry", _geometry, "geometry_seg.nii.gz", "geometry mismatch: origin differs by 2 "),
    ("nan", _nan, "nan_img.nii.gz", "2 NaN/inf voxels"),
    ("labels", _labels, "labels_seg.nii.gz", "label values [9] not in data.labels"),
    ("series", _two_series, "series_dicom", "folder holds 2 DICOM series"),
]


def _catalogue_dataset(root: Path, items: list[tuple] = CATALOGUE) -> Path:
    """Two good subjects, one with an empty mask, one broken subject per catalogue item and a
    duplicated id (manifest lines 4 and 5, planning's item)."""
    data = root / "catalogue"
    data.mkdir()
    rows = [f"good{i},{','.join(_write_pair(data, f'good{i}', *_subject(i)))}" for i in (1, 2)]
    rows += ["dup,good1_img.nii.gz,", "dup,good2_img.nii.gz,"]
    rows.append(f"empty,{','.join(_empty(data, 'empty'))}")
    rows += [f"{name},{','.join(breaker(data, name))}" for name, breaker, _, _ in items]
    manifest = data / "manifest.csv"
    manifest.write_text("subject_id,image,mask\n" + "\n".join(rows) + "\n")
    return manifest


def _named_once(output: str, manifest: Path) -> None:
    """Every catalogue item, and the duplicated id, is one row of the table in `output`."""
    expected = [(subject, file, problem) for subject, _, file, problem in CATALOGUE]
    expected.append(("dup", "manifest.csv", "duplicate subject id (lines 4, 5)"))
    for subject, file, problem in expected:
        rows = [line for line in output.splitlines() if line.startswith(f"{subject} ")]
        assert len(rows) == 1 and str(manifest.parent / file) in rows[0], (subject, rows)
        assert problem in rows[0], (problem, rows[0])


def test_one_run_names_every_problem_of_every_subject_headers_and_voxels(tmp_path: Path) -> None:
    """Planning reads only the listing; each subject's job checks its headers and voxels and
    the data_manifest checkpoint stops with one table of every problem, without --keep-going."""
    manifest = _catalogue_dataset(tmp_path)
    work = _workdir(tmp_path, manifest, "error")
    result = snakemake(work, "results/data/manifest.csv")
    assert result.returncode != 0
    assert f"{manifest}: {len(CATALOGUE) + 1} problems" in result.stderr
    _named_once(result.stderr.split("Traceback")[0], manifest)  # the job's error, not again
    assert not (work / "results/data/manifest.csv").exists()
    for subject in ("good1", "good2", "empty"):
        assert not (work / "results/data" / subject / "image.nii.gz").exists(), subject
    warning = f"subject empty: {manifest.parent / 'empty_seg.nii.gz'}: mask is empty"
    assert warning in (work / "logs/ingest_check/empty.log").read_text()


def test_skip_lists_every_problem_of_every_subject_in_dropped_csv(tmp_path: Path) -> None:
    """With `skip` (and --keep-going) the same table is dropped.csv and the data manifest keeps
    only the subjects without problems."""
    manifest = _catalogue_dataset(tmp_path)
    work = _workdir(tmp_path, manifest, "skip")
    result = snakemake(work, "--keep-going", "results/data/dropped.csv")
    assert result.returncode == 0, result.stderr[-3000:]
    dropped = pd.read_csv(work / "results/data/dropped.csv", keep_default_na=False)
    table = [
        f"{row.subject_id} {row.file} {row.problem}" for row in dropped.itertuples(index=False)
    ]
    _named_once("\n".join(table), manifest)
    assert len(dropped) == len(CATALOGUE) + 1
    data = pd.read_csv(work / "results/data/manifest.csv")
    assert sorted(data.loc[data["valid"], "subject_id"]) == ["empty", "good1", "good2"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("subject_id,image\na,a.nii\nb,b.nii\na,c.nii\n", "duplicate subject id (lines 2, 4)"),
        ("subject_id,scan\na,a.nii\n", "manifest lacks required column 'image'"),
    ],
    ids=["duplicate-ids", "missing-column"],
)
def test_manifest_problems_stop_planning_with_one_message(
    tmp_path: Path, text: str, problem: str
) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(text)
    work = _workdir(tmp_path, manifest, "error")
    result = snakemake(work, "results/splits/splits.csv")
    assert result.returncode != 0
    assert problem in result.stderr and str(manifest) in result.stderr, result.stderr[-3000:]
    assert not (work / "results/data/manifest.csv").exists()  # nothing past the table
