"""A finished run's final models leave the workflow as packages (the session's tiny run): a fresh
install of segsweep segments new scans with them in NIfTI, MHA and DICOM, each label map in its
scan's geometry, flags scans unlike the training data, and gives every test patient exactly the
workflow's native prediction; the ONNX networks match PyTorch."""

from __future__ import annotations

import hashlib
import json
import locale
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch
from onnx_runtime import run_onnx
from runs import REPO

from segsweep import layout
from segsweep.deploy import qc
from segsweep.deploy.archive import open_archive
from segsweep.deploy.predictor import Predictor, SubjectFiles
from segsweep.model.tensors import to_tensor
from segsweep.preprocess.normalise import normalised_volume

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def workdir(tiny_run) -> Path:
    """The session's tiny run (tests/conftest.py), through SLURM where it is installed."""
    return tiny_run.root


def _final_models(workdir: Path) -> list[str]:
    return pd.read_csv(workdir / layout.FINAL)["run_id"].tolist()


def _test_patients(workdir: Path) -> list[str]:
    splits = pd.read_csv(workdir / layout.SPLITS, dtype={"subject_id": str})
    return sorted(splits.loc[splits["split"] == "test", "subject_id"])


def _raw(workdir: Path, subject: str) -> Path:
    return workdir / "results/cohort" / subject / "image.mhd"


def _native(workdir: Path, run: str, subject: str) -> np.ndarray:
    path = workdir / layout.path(layout.PREDICTIONS_NATIVE, run=run) / f"{subject}.nii.gz"
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_the_index_lists_each_final_models_package(workdir: Path) -> None:
    index = json.loads((workdir / layout.PACKAGE_INDEX).read_text())
    assert [entry["configuration"] for entry in index["packages"]] == _final_models(workdir)
    for entry in index["packages"]:
        data = (workdir / "results/package" / entry["file"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["bytes"] == len(data)


def test_each_package_gives_every_test_patient_the_workflows_native_prediction(workdir: Path):
    """From the raw scan, as a user would run it: the workflow's crop, voxel for voxel, hence
    the same probabilities (the uncertainty map, exactly), labels and QC as the workflow's."""
    for run in _final_models(workdir):
        predictor = Predictor.load(workdir / layout.path(layout.PACKAGE, run=run), "cpu")
        recorded = pd.read_csv(workdir / layout.path(layout.FINAL_QC, run=run), dtype={"case": str})
        for subject in _test_patients(workdir):
            raw = predictor.read([_raw(workdir, subject)], subject)
            prepared = predictor.prepare(raw)
            crop = workdir / layout.path(layout.CROP_IMAGE, subject=subject)
            np.testing.assert_array_equal(
                sitk.GetArrayFromImage(prepared.cropped),
                sitk.GetArrayFromImage(sitk.ReadImage(str(crop))),
            )
            from_raw = predictor.predict_prepared(prepared)
            files = SubjectFiles(
                {subject: crop},
                {subject: workdir / layout.path(layout.CROP_RECORD, subject=subject)},
                {subject: workdir / layout.path(layout.INGEST_RECORD, subject=subject)},
            )
            from_workflow = predictor.predict_prepared(files.prepared(subject))
            uncertainty = sitk.GetArrayFromImage(from_raw.uncertainty)
            assert uncertainty.max() > 0, (run, subject)  # the networks' probabilities show
            np.testing.assert_array_equal(
                uncertainty, sitk.GetArrayFromImage(from_workflow.uncertainty)
            )
            np.testing.assert_array_equal(
                sitk.GetArrayFromImage(from_raw.labels), _native(workdir, run, subject)
            )
            row = recorded.set_index("case").loc[subject]
            assert from_raw.qc["intensity_distance"] == row["intensity_distance"]
            assert from_raw.qc["uncertainty"] == row["uncertainty"]


def test_the_onnx_networks_give_pytorchs_logits(workdir: Path, tmp_path: Path) -> None:
    run = _final_models(workdir)[0]
    path = workdir / layout.path(layout.PACKAGE, run=run)
    predictor, archive = Predictor.load(path, "cpu"), open_archive(path)
    subject = _test_patients(workdir)[0]
    prepared = predictor.prepare(predictor.read([_raw(workdir, subject)], subject))
    slices = to_tensor(normalised_volume(prepared.cropped, archive.manifest["normalisation"]))
    for network, entry in zip(predictor.networks, archive.manifest["networks"], strict=True):
        assert entry["onnx"]["opset"] == 18
        onnx_file = tmp_path / Path(entry["onnx"]["file"]).name
        onnx_file.write_bytes(archive.read(entry["onnx"]["file"]))
        with torch.no_grad():
            expected = network(slices).numpy()
        assert np.abs(run_onnx(onnx_file, slices.numpy()) - expected).max() < 1e-4


def test_the_test_patients_qc_is_recorded(workdir: Path) -> None:
    for run in _final_models(workdir):
        table = pd.read_csv(workdir / layout.path(layout.FINAL_QC, run=run), dtype={"case": str})
        manifest = Predictor.load(workdir / layout.path(layout.PACKAGE, run=run), "cpu").manifest
        assert list(table.columns) == qc.columns(manifest["classes"])
        assert sorted(table["case"]) == _test_patients(workdir)
        assert table["intensity_distance"].notna().all()
        assert manifest["qc"]["calibration"]["patients"] >= 1
    html = (workdir / layout.THESIS_HTML).read_text()
    assert "Quality control of predictions" in html


# -- a fresh install on new scans ----------------------------------------------------------------


@pytest.fixture(scope="module")
def fresh_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with segsweep pip-installed from the repository, not editable. Its
    dependencies are the test environment's (a .pth file names its site-packages: no torch
    download), so `segsweep` itself comes from the venv alone."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    (site,) = (venv / "lib").glob("python*/site-packages")
    dependencies = [p for p in sys.path if p.endswith("site-packages")]
    (site / "test-environment.pth").write_text("\n".join(dependencies) + "\n")
    pip = [str(venv / "bin/python"), "-m", "pip", "install", "-q", "--no-deps", str(REPO)]
    result = subprocess.run(pip, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return venv


def _write_dicom(image: sitk.Image, folder: Path) -> None:
    """The scan as a DICOM series (its intensities rounded to int16 slices, with their
    position and orientation)."""
    saved = locale.setlocale(locale.LC_ALL)  # GDCM's writer switches the process locale to C
    folder.mkdir(parents=True)
    image = sitk.Cast(sitk.Round(image), sitk.sitkInt16)
    direction = image.GetDirection()
    orientation = "\\".join(
        f"{v:g}"
        for v in (
            direction[0],
            direction[3],
            direction[6],
            direction[1],
            direction[4],
            direction[7],
        )
    )
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    try:
        for k in range(image.GetSize()[2]):
            plane = image[:, :, k]
            position = image.TransformIndexToPhysicalPoint((0, 0, k))
            tags = {
                "0008|0060": "MR",
                "0020|000d": "1.2.826.0.1.3680043.2.1125.7",
                "0020|000e": "1.2.826.0.1.3680043.2.1125.7.1",
                "0020|0013": str(k + 1),
                "0020|0032": "\\".join(f"{v:.6f}" for v in position),
                "0020|0037": orientation,
                "0028|0030": f"{image.GetSpacing()[1]:g}\\{image.GetSpacing()[0]:g}",
                "0018|0050": f"{image.GetSpacing()[2]:g}",
                "0008|0018": f"1.2.826.0.1.3680043.2.1125.7.1.{k + 1}",
            }
            for tag, value in tags.items():
                plane.SetMetaData(tag, value)
            writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
            writer.Execute(plane)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _like(image: sitk.Image, array: np.ndarray) -> sitk.Image:
    out = sitk.GetImageFromArray(array.astype(np.float32))
    out.CopyInformation(image)
    return out


def test_a_fresh_install_segments_new_scans_in_their_own_geometry(
    workdir: Path, fresh_install: Path, tmp_path: Path
) -> None:
    run = _final_models(workdir)[0]
    package = workdir / layout.path(layout.PACKAGE, run=run)
    first, second = (_test_patients(workdir) * 2)[:2]
    scan = sitk.ReadImage(str(_raw(workdir, first)))
    voxels = sitk.GetArrayFromImage(scan).astype(np.float32)
    scans = tmp_path / "scans"
    scans.mkdir()
    raw = _raw(workdir, first)  # the scan the workflow read: case "image"
    sitk.WriteImage(sitk.DICOMOrient(scan, "RAS"), str(scans / "reoriented.nii.gz"))
    sitk.WriteImage(sitk.ReadImage(str(_raw(workdir, second))), str(scans / "other.mha"))
    _write_dicom(scan, scans / "dicom")
    sitk.WriteImage(_like(scan, voxels.max() - voxels), str(scans / "inverted.nii.gz"))
    noise = np.random.default_rng(0).uniform(voxels.min(), voxels.max(), voxels.shape)
    sitk.WriteImage(_like(scan, noise), str(scans / "noise.nii.gz"))
    (scans / "broken.nii.gz").write_bytes(b"not an image")

    empty = tmp_path / "elsewhere"
    empty.mkdir()
    out = tmp_path / "out"
    command = [str(fresh_install / "bin/segsweep"), "predict", "--model", str(package)]
    command += ["--input", str(raw), *(str(p) for p in sorted(scans.iterdir()) if p.is_file())]
    command += [str(scans / "dicom"), "--output", str(out), "--device", "cpu"]
    found = subprocess.run(
        [str(fresh_install / "bin/python"), "-c", "import segsweep; print(segsweep.__file__)"],
        cwd=empty,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert found.stdout.startswith(str(fresh_install)), found.stdout + found.stderr
    result = subprocess.run(command, cwd=empty, capture_output=True, text=True, timeout=900)
    assert result.returncode == 1, result.stderr[-3000:]  # the broken file failed, alone
    errors = re.findall(r"^error: .*$", result.stderr, re.MULTILINE)
    assert len(errors) == 1 and errors[0].startswith("error: broken"), result.stderr[-3000:]

    inputs = {
        "image": raw,
        "reoriented": scans / "reoriented.nii.gz",
        "other": scans / "other.mha",
        "dicom": scans / "dicom",
        "inverted": scans / "inverted.nii.gz",
        "noise": scans / "noise.nii.gz",
    }
    for case, path in inputs.items():
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path)))
            source = reader.Execute()
        else:
            source = sitk.ReadImage(str(path))
        labels = sitk.ReadImage(str(out / f"{case}.nii.gz"))
        uncertainty = sitk.ReadImage(str(out / f"{case}_uncertainty.nii.gz"))
        for image in (labels, uncertainty):
            assert image.GetSize() == source.GetSize(), case
            np.testing.assert_allclose(image.GetSpacing(), source.GetSpacing(), atol=1e-4)
            np.testing.assert_allclose(image.GetOrigin(), source.GetOrigin(), atol=1e-3)
            np.testing.assert_allclose(image.GetDirection(), source.GetDirection(), atol=1e-5)
    expected = _native(workdir, run, first)
    predicted = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "image.nii.gz")))
    np.testing.assert_array_equal(predicted, expected)
    back = sitk.DICOMOrient(sitk.ReadImage(str(out / "reoriented.nii.gz")), "LIP")
    assert (sitk.GetArrayFromImage(back) == expected).mean() > 0.999

    table = pd.read_csv(out / "qc.csv").set_index("case")
    assert set(table.index) == {*inputs, "broken"}
    assert table.loc[["inverted", "noise", "broken"], "flag"].all(), table.to_string()
    distance = table["intensity_distance"]
    assert distance["inverted"] > distance["image"], table.to_string()
    assert abs(distance["dicom"] - distance["image"]) < 0.05, table.to_string()
    assert table.loc["broken", "reason"].startswith("not predicted")
