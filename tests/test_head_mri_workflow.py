"""A brought head MRI cohort through the real Snakefile with only the data keys set: the default
crop (`window_mm: auto`, `centre: auto`) must fit the brain, not a knee.

The knee defaults (a 90 mm window around a detected knee joint) kept 20-80 % of each brain of
such a cohort, so a model scored 0.95 Dice in the cropped space and 0.63 against the original
masks. Here each subject is an ellipsoidal head (scalp fat, skull, CSF, grey and white matter)
at a varied position and size in a 256 mm field of view, with the brain as label 1, brought
through a manifest CSV; the workflow runs to the final model's test scores. The crop must keep
at least 99 % of every brain, and the test Dice against the original masks (native space) must
be within 0.05 of the Dice in the cropped space.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml
from runs import snakemake, succeeded

from segsweep import layout

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.workflow

CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0)  # L, I, P
SIZE = (64, 64, 24)  # columns (left), rows (inferior), coronal slices (posterior)
SPACING = (4.0, 4.0, 8.0)  # a 256 x 256 x 192 mm field of view
BRAIN_MM = np.array([62.0, 56.0, 80.0])  # brain semi-axes: left-right, superior-inferior, AP
# T1-like layers outwards from the brain: (thickness in mm, intensity)
LAYERS = ((3.0, 0.15), (6.0, 0.08), (6.0, 0.9))  # CSF, skull, scalp fat and skin
GREY, WHITE = 0.55, 0.75
SUBJECTS = 8
SITES = ("siteA", "siteB")


def head(seed: int) -> tuple[sitk.Image, sitk.Image]:
    """One subject: the image (smooth bias, Rician noise) and its brain mask, on a coronal grid
    whose origin, and the head's position (up to 25 mm off the centre) and size, vary."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = SIZE
    axes = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(SIZE, SPACING, strict=True)]
    z, y, x = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    shift = rng.uniform(-25.0, 25.0, 3) * (1.0, 1.0, 0.6)
    semi = BRAIN_MM * rng.uniform(0.88, 1.1)
    offsets = (x - shift[0], y - shift[1], z - shift[2])

    def inside(grow: float) -> np.ndarray:
        return sum((o / (a + grow)) ** 2 for o, a in zip(offsets, semi, strict=True)) < 1

    image = np.zeros(x.shape, np.float32)
    grow = sum(t for t, _ in LAYERS)
    for thickness, value in reversed(LAYERS):  # outside in
        image[inside(grow)] = value
        grow -= thickness
    brain = inside(0.0)
    image[brain] = GREY
    image[inside(-14.0)] = WHITE
    bias = np.exp(0.15 * x / 128.0 - 0.1 * y / 128.0)
    sigma = 0.03
    noisy = np.hypot(image * bias + rng.normal(0, sigma, x.shape), rng.normal(0, sigma, x.shape))
    out = sitk.GetImageFromArray((1000.0 * noisy).astype(np.float32))
    out.SetSpacing(SPACING)
    out.SetDirection(CORONAL)
    out.SetOrigin(tuple(float(v) for v in rng.uniform(-140.0, -110.0, 3)))
    mask = sitk.GetImageFromArray(brain.astype(np.uint8))
    mask.CopyInformation(out)
    return out, mask


def build(root: Path) -> Path:
    """NIfTI images and brain masks and their manifest CSV under root/data."""
    folder = root / "data"
    folder.mkdir()
    rows = []
    for i in range(SUBJECTS):
        image, mask = head(100 + i)
        sitk.WriteImage(image, str(folder / f"head{i:02d}.nii.gz"))
        sitk.WriteImage(mask, str(folder / f"head{i:02d}_brain.nii.gz"))
        rows.append(
            {
                "subject_id": f"head{i:02d}",
                "image": f"head{i:02d}.nii.gz",
                "mask": f"head{i:02d}_brain.nii.gz",
                "source": SITES[i % 2],
            }
        )
    manifest = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def configure(root: Path, manifest: Path) -> Path:
    """The data keys of a brought cohort and nothing of preprocessing (its defaults: auto
    window, auto centre), plus the tiny training of the other workflow tests."""
    config = {
        "data": {"source": "manifest", "manifest": str(manifest), "labels": {"brain": 1}},
        "train": {
            "depth": 2,
            "base_channels": 4,
            "epochs": 3,
            "checkpoint_every": 1,
            "batch_size": 8,
            "lr": 0.01,
        },
        "split": {"folds": 0},
        "threads": 1,
    }
    (root / "config").mkdir()
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    (root / "config" / "sweep.yaml").write_text(yaml.safe_dump({"grids": {"one": {"seed": [0]}}}))
    return root / "config.yaml"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("head")
    configure(work, build(work))
    targets = [layout.path(layout.TEST_PER_PATIENT, run="default"), layout.KEPT_FRACTION]
    succeeded(snakemake(work, *targets, timeout=600))
    return work


def test_the_default_crop_keeps_every_brain(run: Path) -> None:
    kept = pd.read_csv(run / layout.KEPT_FRACTION)
    assert len(kept) == SUBJECTS
    assert (kept["brain"] >= 0.99).all(), kept
    plan = json.loads((run / layout.CROP_PLAN).read_text())
    assert plan["window"] == "auto" and plan["centre_method"] == "foreground"
    splits = pd.read_csv(run / layout.SPLITS)
    planning = set(splits.loc[splits["split"].isin(["train", "val"]), "subject_id"])
    assert set(plan["half_extent_mm"]) == planning  # no test subject
    # the brains are 110-140 mm wide: the window holds them, not a 90 mm knee
    assert 130.0 < plan["window_mm"] < 200.0, plan


def test_native_dice_matches_the_cropped_space(run: Path) -> None:
    table = pd.read_csv(run / layout.path(layout.TEST_PER_PATIENT, run="default"))
    brain = table[table["class"] == "foreground"]  # the brain: the one class, merged runs
    dice = brain.pivot(index="patient_id", columns="space", values="dice")
    assert len(dice) >= 2 and dice.notna().all().all(), dice
    assert (dice["processed"] > 0.7).all(), dice  # the model learnt the brain
    assert ((dice["native"] - dice["processed"]).abs() < 0.05).all(), dice
