"""Brought datasets through the real Snakefile to the thesis report, by configuration alone.

Three manifests are built on the fly, each unlike the synthetic knee cohort in format, matrix
size, (anisotropic) spacing, orientation, label values and class names: all NIfTI (one label map
per subject), all MetaImage (.mhd with .raw or .zraw voxel files) and DICOM series folders with
one NIfTI mask file per class. Each has unlabelled subjects and a stratification column, and runs
one tiny training run (1 run, 2 epochs) to results/report/thesis.{html,pdf}. The tests check
what a researcher would: the report names the dataset's classes and its dataset table matches
the manifest, the per-patient tables hold those classes, and the final model's native-space
predictions overlay on the original images with label values of data.labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml
from runs import snakemake, succeeded
from test_data_workflow import write_dicom

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.workflow

CORONAL = (1, 0, 0, 0, 0, 1, 0, -1, 0)  # L, I, P: the canonical grid itself
SAGITTAL = (0, 0, -1, 1, 0, 0, 0, -1, 0)  # P, I, R: a proper rotation, as DICOM needs
AXIAL = (1, 0, 0, 0, 1, 0, 0, 0, 1)  # L, P, S


@dataclass(frozen=True)
class Brought:
    """One brought dataset: its format, grid, classes and subjects (source, labelled)."""

    name: str
    fmt: str  # nifti | mhd | dicom
    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    direction: tuple[float, ...]
    labels: dict[str, int]
    subjects: tuple[tuple[str, bool], ...]  # (stratum, labelled) per subject
    stratify: str
    centre: str


DATASETS = [
    Brought(
        "nifti",
        "nifti",
        (48, 40, 12),
        (0.8, 0.9, 3.5),
        AXIAL,
        {"femur": 3, "patella": 9},
        (("siteA", True),) * 3 + (("siteB", True),) * 2 + (("siteB", False),),
        "source",
        "foreground",
    ),
    Brought(
        "mhd",
        "mhd",
        (36, 30, 9),
        (1.5, 1.2, 5.0),
        CORONAL,
        {"liver": 1},
        (("ge", True),) * 3 + (("siemens", True),) * 2 + (("ge", False), ("siemens", False)),
        "scanner",
        "image",
    ),
    Brought(
        "dicom",
        "dicom",
        (40, 40, 8),
        (0.7, 0.7, 4.0),
        SAGITTAL,
        {"vertebra": 2, "disc": 5, "canal": 7},
        (("north", True),) * 3 + (("south", True),) * 2 + (("north", False),),
        "source",
        "foreground",
    ),
]
INTENSITY = (180.0, 260.0, 30.0)  # of the first, second and third class; tissue is 90


# ---------------------------------------------------------------------------------------------
# building the datasets


def phantom(data: Brought, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A tissue cylinder holding one blob per class side by side (image, label map), [z, y, x],
    off-centre along every axis."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = data.size
    z, y, x = np.meshgrid(
        np.linspace(-1, 1, nz), np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij"
    )
    image = np.where((x / 0.9) ** 2 + (y / 0.85) ** 2 < 1, 90.0, 5.0)
    labels = np.zeros(image.shape, np.uint8)
    n = len(data.labels)
    for k, value in enumerate(data.labels.values()):
        cx = (k - (n - 1) / 2) * 0.5 + 0.1 + rng.uniform(-0.05, 0.05)
        blob = ((x - cx) / 0.22) ** 2 + ((y - 0.25) / 0.35) ** 2 + ((z - 0.3) / 0.7) ** 2 < 1
        image[blob] = INTENSITY[k]
        labels[blob] = value
    image = image * np.exp(0.15 * x) + rng.normal(0, 3.0, image.shape)
    return np.abs(image).astype(np.float32), labels


def _with_geometry(array: np.ndarray, data: Brought, seed: int) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(data.spacing)
    image.SetOrigin((-30.0 + seed, 12.5, -7.25))
    image.SetDirection(data.direction)
    return image


def read_original(path: Path) -> sitk.Image:
    """An original image as a researcher reads it: a file, or the DICOM series of a folder."""
    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path)))
        return reader.Execute()
    return sitk.ReadImage(str(path))


def _write_subject(data: Brought, folder: Path, sid: str, seed: int, labelled: bool) -> dict:
    """Write one subject's files; returns its manifest cells (paths relative to the folder)."""
    array, labels = phantom(data, seed)
    image = _with_geometry(array, data, seed)
    if data.fmt == "nifti":
        suffix = ".nii.gz" if seed % 2 else ".nii"
        sitk.WriteImage(image, str(folder / f"{sid}{suffix}"))
        row = {"image": f"{sid}{suffix}"}
    elif data.fmt == "mhd":  # .zraw (compressed) and .raw voxel files alternate
        sitk.WriteImage(image, str(folder / f"{sid}.mhd"), useCompression=bool(seed % 2))
        suffix, row = ".mhd", {"image": f"{sid}.mhd"}
    else:
        write_dicom(
            sitk.Cast(image, sitk.sitkInt16), folder / sid, uid=f"1.2.826.0.1.3680043.9.{seed}"
        )
        image = read_original(folder / sid)  # the masks must match the series as read
        suffix, row = ".nii.gz", {"image": sid}
    if not labelled:
        return row
    mask = sitk.GetImageFromArray(labels)
    mask.CopyInformation(image)
    if data.fmt == "dicom":  # one binary file per class
        for name, value in data.labels.items():
            sitk.WriteImage(mask == value, str(folder / f"{sid}_{name}.nii.gz"))
            row[f"mask_{name}"] = f"{sid}_{name}.nii.gz"
    else:
        sitk.WriteImage(mask, str(folder / f"{sid}_seg{suffix}"), useCompression=bool(seed % 2))
        row["mask"] = f"{sid}_seg{suffix}"
    return row


def build(data: Brought, root: Path) -> Path:
    """The dataset's files and manifest.csv under root/data."""
    folder = root / "data"
    folder.mkdir()
    rows = []
    for i, (stratum, labelled) in enumerate(data.subjects):
        sid = f"{data.name}{i:02d}"
        row = {"subject_id": sid, **_write_subject(data, folder, sid, i, labelled)}
        row["source"] = stratum if data.stratify == "source" else f"hospital{i % 2}"
        if data.stratify != "source":
            row[data.stratify] = stratum
        rows.append(row)
    manifest = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def configure(data: Brought, root: Path, manifest: Path) -> Path:
    """config.yaml and config/sweep.yaml: only configuration, the smallest run that reports."""
    window = max(n * s for n, s in zip(data.size, data.spacing, strict=True)) + 4
    config = {
        "data": {"source": "manifest", "manifest": str(manifest), "labels": data.labels},
        "preprocess": {
            "n4": {"iterations": [10]},
            "crop": {"centre": data.centre, "window_mm": window, "size": 24, "slices": 8},
        },
        "split": {"stratify": data.stratify},
        "train": {
            "depth": 2,
            "base_channels": 4,
            "epochs": 2,
            "checkpoint_every": 1,
            "batch_size": 4,
            "lr": 0.01,  # so two epochs already predict the classes
        },
        "report": {"title": f"A brought {data.fmt} dataset", "pairs": []},
        "threads": 1,
    }
    (root / "config").mkdir()
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    sweep = {"grids": {"one": {"labels": ["separate"]}}}
    (root / "config" / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    return root / "config.yaml"


@pytest.fixture(scope="module", params=DATASETS, ids=[d.name for d in DATASETS])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    data: Brought = request.param
    work = tmp_path_factory.mktemp(data.name)
    manifest = build(data, work)
    configure(data, work, manifest)
    succeeded(snakemake(work))
    return data, work, manifest


# ---------------------------------------------------------------------------------------------
# reading the report


class _Tables(HTMLParser):
    """Every <figure class="table"> of the report: caption text and rows of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "figure" and "table" in (dict(attrs).get("class") or "").split():
            self.tables.append({"caption": "", "rows": []})
        elif self.tables and tag == "figcaption":
            self._in = "caption"
        elif self.tables and tag == "tr":
            self.tables[-1]["rows"].append([])
        elif self.tables and tag in ("td", "th"):
            self._in = "cell"
            self.tables[-1]["rows"][-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("figcaption", "td", "th"):
            self._in = None

    def handle_data(self, text: str) -> None:
        if self._in == "caption":
            self.tables[-1]["caption"] += text
        elif self._in == "cell":
            self.tables[-1]["rows"][-1][-1] += text.strip()


def report_table(html: str, caption_start: str) -> pd.DataFrame:
    parser = _Tables()
    parser.feed(html)
    found = [t for t in parser.tables if caption_start in t["caption"]]
    assert len(found) == 1, [t["caption"] for t in parser.tables]
    header, *rows = found[0]["rows"]
    return pd.DataFrame(rows, columns=header)


# ---------------------------------------------------------------------------------------------
# the tests


def test_report_exists_and_names_the_classes(run) -> None:
    data, work, _ = run
    html = (work / "results/report/thesis.html").read_text()
    assert (work / "results/report/thesis.pdf").read_bytes().startswith(b"%PDF")
    for name, value in data.labels.items():
        assert f"{name} ({value})" in html, name
    kept = report_table(html, "inside the crop window")
    assert set(kept.columns) == {"Subject", *(name.capitalize() for name in data.labels)}
    for default in ("tibia", "fibula"):
        assert default not in html.lower(), default


def test_dataset_table_matches_the_manifest(run) -> None:
    data, work, manifest = run
    html = (work / "results/report/thesis.html").read_text()
    table = report_table(html, "Subjects per source").set_index("Source")
    rows = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    rows["labelled"] = (rows.filter(like="mask") != "").any(axis=1)
    for source, group in rows.groupby("source"):
        shown = table.loc[source]
        assert shown[["Subjects", "Labelled", "Valid"]].tolist() == [
            str(len(group)),
            str(int(group["labelled"].sum())),
            str(len(group)),
        ], source
        assert " × ".join(str(n) for n in data.size) in shown["Resolution"]
    assert table.loc["Total", "Subjects"] == str(len(rows))


def test_per_patient_tables_hold_the_classes(run) -> None:
    data, work, _ = run
    splits = pd.read_csv(work / "results/splits/splits.csv")
    test = set(splits.loc[splits["split"] == "test", "subject_id"])
    val = set(splits.loc[splits["split"] == "val", "subject_id"])
    classes = {*data.labels, "foreground"}
    final = pd.read_csv(work / "results/summary/final.csv")["run_id"]
    for run_id in final:
        table = pd.read_csv(work / "results/final" / run_id / "test/per_patient.csv")
        assert set(table["space"]) == {"processed", "native"}
        for space, rows in table.groupby("space"):
            assert set(rows["class"]) == classes, space
            assert set(rows["patient_id"]) == test, space
        # against the original masks the exported predictions score about as well as in the
        # processed space (slice decimation costs some): they overlay on the original images
        dice = table[table["class"] == "foreground"].pivot(
            index="patient_id", columns="space", values="dice"
        )
        assert (dice["native"] >= 0.5 * dice["processed"]).all(), dice
        validation = pd.read_csv(work / "results/runs" / run_id / "val/per_patient.csv")
        assert set(validation["class"]) == classes
        assert set(validation["patient_id"]) == val


def test_native_predictions_overlay_on_the_original_images(run) -> None:
    data, work, manifest = run
    rows = pd.read_csv(manifest, dtype=str, keep_default_na=False).set_index("subject_id")
    splits = pd.read_csv(work / "results/splits/splits.csv").set_index("subject_id")["split"]
    allowed = {0, *data.labels.values()}
    final = pd.read_csv(work / "results/summary/final.csv")["run_id"]
    predicted = set()
    for run_id in final:
        folder = work / "results/final" / run_id
        expected = {s: "predictions_native" for s in splits.index[splits == "test"]}
        expected |= {s: "unlabelled" for s in splits.index[splits == "unlabelled"]}
        assert "unlabelled" in expected.values()
        for subject, where in expected.items():
            prediction = sitk.ReadImage(str(folder / where / f"{subject}.nii.gz"))
            original = read_original(manifest.parent / rows.loc[subject, "image"])
            assert prediction.GetSize() == original.GetSize(), subject
            for name in ("GetSpacing", "GetOrigin", "GetDirection"):
                got, want = getattr(prediction, name)(), getattr(original, name)()
                np.testing.assert_allclose(got, want, atol=1e-4, err_msg=f"{subject}: {name}")
            values = set(np.unique(sitk.GetArrayViewFromImage(prediction)).tolist())
            assert values <= allowed, (subject, values)
            predicted |= values
    assert predicted - {0}, "the final model predicts no class at all"
