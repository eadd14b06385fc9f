"""Tiny datasets in the field's layouts, written as they come (for test_public_layouts.py):

- a Medical Segmentation Decathlon v1 folder: 4D NIfTI images with two modalities channels
  last, `dataset.json` with the misspelt key `relase` real archives carry, AppleDouble `._*`
  files beside the images and labels, and `imagesTs`;
- an nnU-Net v2 raw folder: `{case}_0000`/`{case}_0001` channel files, `labelsTr`, `imagesTs`,
  `dataset.json` with `channel_names`, `labels` (name → value), `numTraining`, `file_ending`,
  and `._` and `.DS_Store` files;
- a MONAI datalist JSON with `fold`s, channel lists, `testing` entries, classes and modalities.

Each subject is a tissue cylinder holding one blob per class (the second channel with the
contrast inverted), off-centre and of its own size, so that a model trained for two epochs
already finds the classes.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel
import numpy as np

SIZE = (28, 24, 6)  # x, y, z voxels
SPACING = (1.5, 1.5, 4.0)  # mm
CLASSES = {"cyst": 1, "nodule": 2}  # the datasets' own names and values
CHANNELS = ["T2", "ADC"]
N_LABELLED, N_UNLABELLED = 6, 1


def phantom(seed: int, classes: dict[str, int] = CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """(image [x, y, z, 2] float32: two channels, label map [x, y, z] uint8) of one subject."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = SIZE
    x, y, z = np.meshgrid(
        np.linspace(-1, 1, nx), np.linspace(-1, 1, ny), np.linspace(-1, 1, nz), indexing="ij"
    )
    image = np.where(x**2 + (y / 0.9) ** 2 < 0.85, 100.0, 5.0)
    labels = np.zeros(image.shape, np.uint8)
    for k, value in enumerate(classes.values()):
        cx = (k - 0.5) * 0.7 + rng.uniform(-0.08, 0.08)
        radius = 0.25 + rng.uniform(-0.03, 0.03)
        blob = ((x - cx) / radius) ** 2 + ((y - 0.1) / 0.4) ** 2 + (z / 0.8) ** 2 < 1
        image[blob] = (220.0, 30.0)[k]
        labels[blob] = value
    image = image + rng.normal(0, 2.0, image.shape)
    second = 250.0 - image
    return np.stack([image, second], axis=-1).astype(np.float32), labels


def _affine(seed: int) -> np.ndarray:
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = (-20.0 + seed, 10.0, -12.0)
    return affine


def _save(array: np.ndarray, path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nibabel.save(nibabel.Nifti1Image(array, _affine(seed)), path)


def _apple_double(folder: Path, name: str) -> None:
    """The resource-fork file macOS leaves beside `name` in an archive: not an image."""
    (folder / f"._{name}").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 60)


def build_decathlon(root: Path, name: str = "Task09_Tiny") -> Path:
    """A Decathlon v1 folder under root; returns it."""
    folder = root / name
    training, test = [], []
    for i in range(N_LABELLED + N_UNLABELLED):
        case = f"tiny_{i:03d}"
        image, labels = phantom(i)
        if i < N_LABELLED:
            _save(image, folder / "imagesTr" / f"{case}.nii.gz", i)
            _save(labels, folder / "labelsTr" / f"{case}.nii.gz", i)
            for sub in ("imagesTr", "labelsTr"):
                _apple_double(folder / sub, f"{case}.nii.gz")
            training.append(
                {"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"}
            )
        else:
            _save(image, folder / "imagesTs" / f"{case}.nii.gz", i)
            test.append(f"./imagesTs/{case}.nii.gz")
    description = {
        "name": "Tiny",
        "description": "two-modality phantoms",
        "reference": "segsweep tests",
        "licence": "CC-BY-SA 4.0",
        "relase": "1.0 04/05/2018",  # sic: as in the real archives
        "tensorImageSize": "4D",
        "modality": {str(i): name for i, name in enumerate(CHANNELS)},
        "labels": {"0": "background", **{str(v): k for k, v in CLASSES.items()}},
        "numTraining": N_LABELLED,
        "numTest": N_UNLABELLED,
        "training": training,
        "test": test,
    }
    (folder / "dataset.json").write_text(json.dumps(description, indent=4))
    return folder


def build_nnunet(root: Path, name: str = "Dataset901_Tiny") -> Path:
    """An nnU-Net v2 raw dataset folder under root; returns it."""
    folder = root / name
    for i in range(N_LABELLED + N_UNLABELLED):
        case = f"case{i:02d}"
        image, labels = phantom(i)
        images = folder / ("imagesTr" if i < N_LABELLED else "imagesTs")
        for channel in range(len(CHANNELS)):
            _save(image[..., channel], images / f"{case}_{channel:04d}.nii.gz", i)
        _apple_double(images, f"{case}_0000.nii.gz")
        if i < N_LABELLED:
            _save(labels, folder / "labelsTr" / f"{case}.nii.gz", i)
    (folder / "imagesTr" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    description = {
        "channel_names": {str(i): name for i, name in enumerate(CHANNELS)},
        "labels": {"background": 0, **CLASSES},
        "numTraining": N_LABELLED,
        "file_ending": ".nii.gz",
        "name": "Tiny",
    }
    (folder / "dataset.json").write_text(json.dumps(description, indent=4))
    return folder


def build_datalist(root: Path, folds: int = 2) -> Path:
    """A MONAI datalist (with `fold`s) and its files under root; returns the JSON's path."""
    folder = root / "monai"
    training, testing = [], []
    for i in range(N_LABELLED + N_UNLABELLED):
        image, labels = phantom(i)
        channels = [f"images/s{i}_{c:04d}.nii.gz" for c in range(len(CHANNELS))]
        for channel, path in enumerate(channels):
            _save(image[..., channel], folder / path, i)
        if i < N_LABELLED:
            _save(labels, folder / "labels" / f"s{i}.nii.gz", i)
            training.append({"image": channels, "label": f"labels/s{i}.nii.gz", "fold": i % folds})
        else:
            testing.append({"image": channels})
    datalist = {
        "labels": {"0": "background", **{str(v): k for k, v in CLASSES.items()}},
        "modality": {str(i): name for i, name in enumerate(CHANNELS)},
        "training": training,
        "testing": testing,
    }
    path = folder / "datalist.json"
    path.write_text(json.dumps(datalist, indent=2))
    return path
