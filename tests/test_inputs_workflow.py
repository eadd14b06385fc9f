"""The `inputs` dimension through the real Snakefile: a PET/CT-like two-channel dataset (CT in HU,
PET uptake) swept over PET/CT, PET only and a CT window made on the fly, to the report; and an
unknown channel name stopping planning with the list of packed channels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch
import yaml
from runs import snakemake
from test_brought_datasets import report_table

pytestmark = pytest.mark.workflow

SIZE = (40, 40, 10)  # x, y, z
RUNS = {"inputs-ct+pet": ["ct", "pet"], "inputs-pet": ["pet"], "inputs-ct-0-200-": ["ct[0,200]"]}


def _subject(folder: Path, sid: str, seed: int) -> dict:
    """CT (air −1000 HU, tissue 40 HU, lesion 120 HU), PET (uptake 1, lesion 8) and the lesion
    mask, sharing one grid."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = SIZE
    z, y, x = np.meshgrid(
        np.linspace(-1, 1, nz), np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij"
    )
    body = x**2 + y**2 < 0.8
    cx, cy = rng.uniform(-0.3, 0.3, 2)
    lesion = ((x - cx) / 0.25) ** 2 + ((y - cy) / 0.25) ** 2 + (z / 0.8) ** 2 < 1
    ct = np.where(body, 40.0, -1000.0) + np.where(lesion, 80.0, 0.0)
    pet = np.where(body, 1.0, 0.1) + np.where(lesion, 7.0, 0.0)
    row = {"subject_id": sid, "source": "scanner"}
    for name, array in (
        ("ct", ct + rng.normal(0, 15, ct.shape)),
        ("pet", np.abs(pet + rng.normal(0, 0.3, pet.shape))),
        ("mask", lesion.astype(np.uint8)),
    ):
        image = sitk.GetImageFromArray(array.astype(np.uint8 if name == "mask" else np.float32))
        image.SetSpacing((1.0, 1.0, 3.0))
        sitk.WriteImage(image, str(folder / f"{sid}_{name}.nii.gz"))
        row[name] = f"{sid}_{name}.nii.gz"
    return row


def _configure(work: Path, grid: list[list[str]]) -> None:
    folder = work / "data"
    folder.mkdir(exist_ok=True)
    manifest = folder / "manifest.csv"
    if not manifest.exists():
        pd.DataFrame([_subject(folder, f"pc{i}", i) for i in range(6)]).to_csv(
            manifest, index=False
        )
    config = {
        "data": {
            "source": "manifest",
            "manifest": str(manifest),
            "labels": {"tumour": 1},
            "channels": ["ct", "pet"],
        },
        "preprocess": {
            "n4": {"enabled": False},
            "crop": {"centre": "image", "window_mm": 44, "size": 24, "slices": 8},
            "normalise": "zscore",
        },
        "split": {"stratify": None},
        "train": {"depth": 2, "base_channels": 4, "epochs": 2, "checkpoint_every": 1},
        "final": {"group_by": ["inputs"]},  # the PET/CT thesis's best model per modality
        "report": {"title": "PET/CT inputs", "pairs": []},
        "threads": 1,
    }
    config["train"] |= {"batch_size": 4, "lr": 0.01}
    (work / "config").mkdir(exist_ok=True)
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    sweep = {"grids": {"channels_and_windows": {"inputs": grid}}}
    (work / "config" / "sweep.yaml").write_text(yaml.safe_dump(sweep))


def test_unknown_channels_stop_planning_with_the_packed_names(tmp_path):
    _configure(tmp_path, [["ct", "mri"]])
    result = snakemake(tmp_path, "-n")
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "config key 'sweep: run inputs-ct+mri: inputs': invalid value 'mri'" in message
    assert "a packed channel: ct, pet; or a window" in message


def test_a_sweep_over_channels_and_a_window_reaches_the_report(tmp_path):
    _configure(tmp_path, list(RUNS.values()))
    result = snakemake(tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    runs = pd.read_csv(tmp_path / "results/summary/runs.csv", dtype=str)
    assert set(runs["inputs"]) == {"ct+pet", "pet", "ct[0,200]"}
    assert (runs["status"] == "ok").all()
    for run, names in RUNS.items():
        index = tmp_path / "results/runs" / run / "checkpoints"
        meta = torch.load(next(index.glob("*.pt")), weights_only=True)
        assert meta["in_channels"] == len(names) and meta["inputs"]["names"] == names, run
        assert meta["inputs"]["clip"] == ["[" in name for name in names], run
    final = pd.read_csv(tmp_path / "results/summary/final.csv")
    groups = {g for entry in final["group"] for g in entry.split("; ")}
    assert groups == {"overall", "inputs=ct+pet", "inputs=pet", "inputs=ct[0,200]"}
    for run in final["run_id"]:
        assert (tmp_path / "results/final" / run / "test/per_patient.csv").is_file(), run
    html = (tmp_path / "results/report/thesis.html").read_text()
    swept = report_table(html, "Swept hyperparameters").set_index("Hyperparameter")
    assert swept.loc["inputs", "Levels"] == "ct+pet, ct[0,200], pet"
    assert swept.loc["inputs", "Base value"] == "none"
    assert "The packed images have the channels “ct”, “pet”." in html
    assert (tmp_path / "results/report/thesis.pdf").read_bytes().startswith(b"%PDF")
