"""Training-only normalisation statistics and the HDF5 layout of packed splits."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from segsweep.errors import ConfigError, InputError
from segsweep.preprocess.normalise import compute_stats, normalise
from segsweep.preprocess.pack import crop_files, main, pack_split

CLASSES = {"femur": 1, "tibia": 2, "fibula": 3}
SPLITS = {"s01": "train", "s02": "train", "s03": "train", "s04": "val", "s05": "test"}
SLICES = {"s01": 4, "s02": 3, "s03": 5, "s04": 4, "s05": 2}
SPACING = (1.5, 1.5, 3.0)
ROWS, COLS = 6, 7


def _write(path, array, spacing=SPACING, is_vector=False):
    image = sitk.GetImageFromArray(array, isVector=is_vector)
    image.SetSpacing(spacing)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def _volume(subject: str, slices: int) -> tuple[np.ndarray, np.ndarray]:
    """A float32 image with a subject-specific scale and offset, and a 0..3 label map."""
    rng = np.random.default_rng(int(subject[1:]))
    image = rng.normal(size=(slices, ROWS, COLS)) * (10 + int(subject[1:])) + 100 * int(subject[1:])
    labels = rng.integers(0, 4, size=(slices, ROWS, COLS)).astype(np.uint8)
    return image.astype(np.float32), labels


@pytest.fixture
def cohort(tmp_path):
    """results/crop/{subject}/image.nii.gz + mask.nii.gz and results/splits/splits.csv."""
    crop = tmp_path / "crop"
    arrays = {}
    for subject, k in SLICES.items():
        image, labels = _volume(subject, k)
        _write(crop / subject / "image.nii.gz", image)
        _write(crop / subject / "mask.nii.gz", labels)
        arrays[subject] = (image, labels)
    splits = tmp_path / "splits.csv"
    rows = [{"subject_id": s, "split": v, "stratum": "a"} for s, v in SPLITS.items()]
    rows.append({"subject_id": "u01", "split": "unlabelled", "stratum": "b"})
    pd.DataFrame(rows).to_csv(splits, index=False)
    return {"crop": crop, "splits": splits, "arrays": arrays, "root": tmp_path}


def _run_stats(cohort) -> dict:
    out = cohort["root"] / "datasets" / "normalisation.json"
    main(
        ["stats", "--splits", str(cohort["splits"]), "--crop-dir", str(cohort["crop"])]
        + ["--config-json", '{"normalise": "zscore"}', "--out", str(out)]
    )
    return json.loads(out.read_text())


def _run_pack(cohort, split: str):
    out = cohort["root"] / "datasets" / f"{split}.h5"
    main(
        ["pack", "--split", split, "--splits", str(cohort["splits"])]
        + ["--crop-dir", str(cohort["crop"]), "--stats", str(out.parent / "normalisation.json")]
        + ["--labels-json", json.dumps(CLASSES), "--out", str(out)]
    )
    return out


def test_stats_match_numpy(cohort):
    train = [s for s, v in SPLITS.items() if v == "train"]
    stats = compute_stats([cohort["crop"] / s / "image.nii.gz" for s in train])
    voxels = np.concatenate([cohort["arrays"][s][0].ravel() for s in train]).astype(np.float64)
    assert stats["method"] == "zscore"
    assert stats["mean"] == pytest.approx([voxels.mean()], rel=1e-12)
    assert stats["std"] == pytest.approx([voxels.std()], rel=1e-10)


def test_stats_per_channel(tmp_path):
    rng = np.random.default_rng(0)
    arrays = [rng.normal([5.0, -2.0], [1.0, 3.0], size=(3, 4, 5, 2)) for _ in range(2)]
    paths = [tmp_path / f"v{i}.nii.gz" for i in range(2)]
    for path, array in zip(paths, arrays, strict=True):
        _write(path, array.astype(np.float32), is_vector=True)
    stats = compute_stats(paths)
    voxels = np.concatenate([a.reshape(-1, 2) for a in arrays]).astype(np.float32)
    assert stats["mean"] == pytest.approx(voxels.mean(axis=0), rel=1e-6)
    assert stats["std"] == pytest.approx(voxels.std(axis=0), rel=1e-6)


def test_stats_use_only_the_training_split(cohort):
    before = _run_stats(cohort)
    assert before["subjects"] == ["s01", "s02", "s03"]
    image, _ = _volume("s04", SLICES["s04"])
    _write(cohort["crop"] / "s04" / "image.nii.gz", image * 50 + 7)  # a val subject
    assert _run_stats(cohort) == before
    _write(cohort["crop"] / "s02" / "image.nii.gz", _volume("s02", SLICES["s02"])[0] * 2)
    assert _run_stats(cohort)["mean"] != before["mean"]


def test_train_is_standardised_and_layout(cohort):
    stats = _run_stats(cohort)
    with h5py.File(_run_pack(cohort, "train"), "r") as h5:
        n = SLICES["s01"] + SLICES["s02"] + SLICES["s03"]
        assert h5["images"].shape == (n, ROWS, COLS, 1) and h5["images"].dtype == np.float32
        assert h5["masks"].shape == (n, ROWS, COLS, 3) and h5["masks"].dtype == np.uint8
        assert h5["slice_id"].dtype == np.int32
        assert h5["patient_id"].dtype == h5py.string_dtype()
        assert h5["images"].chunks == (1, ROWS, COLS, 1)
        assert h5["masks"].chunks == (1, ROWS, COLS, 3)
        assert {h5["images"].compression, h5["masks"].compression} <= {"gzip", "lzf"}
        images = h5["images"][:].astype(np.float64)
        assert images.mean() == pytest.approx(0.0, abs=1e-5)
        assert images.std() == pytest.approx(1.0, abs=1e-5)
        assert json.loads(h5.attrs["classes"]) == ["femur", "tibia", "fibula"]
        assert json.loads(h5.attrs["normalisation"]) == stats
        assert json.loads(h5.attrs["spacing"]) == list(SPACING)


def test_slices_ids_and_one_hot_masks(cohort):
    _run_stats(cohort)
    stats = json.loads((cohort["root"] / "datasets" / "normalisation.json").read_text())
    with h5py.File(_run_pack(cohort, "train"), "r") as h5:
        patient_id = h5["patient_id"].asstr()[:]
        slice_id = h5["slice_id"][:]
        images, masks = h5["images"][:], h5["masks"][:]
    expected_ids = [s for s in ("s01", "s02", "s03") for _ in range(SLICES[s])]
    assert patient_id.tolist() == expected_ids
    assert slice_id.tolist() == [k for s in ("s01", "s02", "s03") for k in range(SLICES[s])]
    assert set(np.unique(masks)) == {0, 1}
    assert masks.sum(axis=-1).max() == 1
    for i in (0, 5, len(slice_id) - 1):
        image, labels = cohort["arrays"][patient_id[i]]
        k = slice_id[i]
        normalised = (image[k].astype(np.float64) - stats["mean"][0]) / stats["std"][0]
        np.testing.assert_allclose(images[i, ..., 0], normalised, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(masks[i] @ np.array([1, 2, 3]), labels[k])


def test_val_uses_training_statistics(cohort):
    stats = _run_stats(cohort)
    with h5py.File(_run_pack(cohort, "val"), "r") as h5:
        assert set(h5["patient_id"].asstr()[:]) == {"s04"}
        image = cohort["arrays"]["s04"][0].astype(np.float64)
        expected = (image - stats["mean"][0]) / stats["std"][0]
        np.testing.assert_allclose(h5["images"][..., 0], expected, rtol=1e-5, atol=1e-5)
        assert abs(h5["images"][:].mean()) > 1  # s04 is brighter than the training subjects


def test_class_order_follows_labels(cohort):
    out = cohort["root"] / "test.h5"
    stats = {"method": "zscore", "mean": [0.0], "std": [1.0]}
    pack_split(
        ["s05"],
        *crop_files(cohort["crop"], ["s05"]),
        stats,
        {"fibula": 3, "femur": 1, "tibia": 2},
        out,
    )
    labels = cohort["arrays"]["s05"][1]
    with h5py.File(out, "r") as h5:
        assert json.loads(h5.attrs["classes"]) == ["fibula", "femur", "tibia"]
        np.testing.assert_array_equal(h5["masks"][..., 0], labels == 3)
        np.testing.assert_array_equal(h5["masks"][..., 1], labels == 1)
        np.testing.assert_array_equal(h5["masks"][..., 2], labels == 2)
        np.testing.assert_array_equal(h5["images"][..., 0], cohort["arrays"]["s05"][0])
    assert not (cohort["root"] / "test.h5.partial").exists()


def test_differing_slice_spacing_is_recorded(cohort):
    image, labels = _volume("s05", 2)
    _write(cohort["crop"] / "s05" / "image.nii.gz", image, spacing=(1.5, 1.5, 6.0))
    _write(cohort["crop"] / "s05" / "mask.nii.gz", labels, spacing=(1.5, 1.5, 6.0))
    out = cohort["root"] / "mixed.h5"
    pack_split(
        ["s04", "s05"],
        *crop_files(cohort["crop"], ["s04", "s05"]),
        {"mean": [0.0], "std": [1.0]},
        CLASSES,
        out,
    )
    with h5py.File(out, "r") as h5:
        assert json.loads(h5.attrs["spacing"]) == [1.5, 1.5, None]
        assert json.loads(h5.attrs["subject_spacing"])["s05"] == [1.5, 1.5, 6.0]


def test_bad_inputs_name_the_subject(cohort):
    stats = {"mean": [0.0], "std": [1.0]}
    out = cohort["root"] / "bad.h5"
    _write(cohort["crop"] / "s04" / "mask.nii.gz", np.zeros((4, ROWS, COLS - 1), np.uint8))
    with pytest.raises(InputError, match="s04.*mask size"):
        pack_split(["s01", "s04"], *crop_files(cohort["crop"], ["s01", "s04"]), stats, CLASSES, out)
    _write(cohort["crop"] / "s04" / "mask.nii.gz", np.full((4, ROWS, COLS), 7, np.uint8))
    with pytest.raises(InputError, match=r"s04.*label values \[7\]"):
        pack_split(["s04"], *crop_files(cohort["crop"], ["s04"]), stats, CLASSES, out)
    _write(cohort["crop"] / "s03" / "image.nii.gz", np.zeros((5, ROWS + 1, COLS), np.float32))
    _write(cohort["crop"] / "s03" / "mask.nii.gz", np.zeros((5, ROWS + 1, COLS), np.uint8))
    with pytest.raises(InputError, match="s03.*slice size"):
        pack_split(["s01", "s03"], *crop_files(cohort["crop"], ["s01", "s03"]), stats, CLASSES, out)
    with pytest.raises(InputError, match="s09.*file not found"):
        pack_split(["s09"], *crop_files(cohort["crop"], ["s09"]), stats, CLASSES, out)
    assert not out.exists()


def test_bad_stats_requests(cohort, tmp_path):
    with pytest.raises(ConfigError, match="preprocess.normalise"):
        compute_stats([cohort["crop"] / "s01" / "image.nii.gz"], method="histogram")
    with pytest.raises(ConfigError, match="preprocess.windows"):
        compute_stats([cohort["crop"] / "s01" / "image.nii.gz"], "window", [[10, 5]])
    _write(tmp_path / "flat.nii.gz", np.ones((2, 3, 4), np.float32))
    with pytest.raises(InputError, match="std 0"):
        compute_stats([tmp_path / "flat.nii.gz"])
    pd.DataFrame({"subject_id": ["s01"], "split": ["val"]}).to_csv(cohort["splits"], index=False)
    with pytest.raises(InputError, match="split 'train' has no subjects"):
        _run_stats(cohort)


def test_normalisation_variants():
    rng = np.random.default_rng(0)
    image = np.stack([rng.normal(50, 300, (3, 4, 5)), rng.normal(5, 2, (3, 4, 5))], axis=-1)
    stats = {"mean": [0.0, 5.0], "std": [1.0, 2.0], "min": [-1000.0, 0.0], "max": [1000.0, 10.0]}
    minmax = {**stats, "method": "minmax", "shift": [-1000.0, 0.0], "scale": [2000.0, 10.0]}
    np.testing.assert_allclose(normalise(image, minmax)[..., 1], image[..., 1] / 10, rtol=1e-5)
    per_image = normalise(image, {**stats, "method": "image_zscore"})
    np.testing.assert_allclose(per_image.mean(axis=(0, 1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(per_image.std(axis=(0, 1, 2)), 1, atol=1e-5)
    window = {**stats, "method": "window", "windows": [[-160, 240], [-1000, 1000]]}
    window |= {"shift": stats["mean"], "scale": stats["std"]}
    out = normalise(image, window)
    assert out.shape == (3, 4, 5, 3)  # two CT windows of channel 0, then channel 1
    np.testing.assert_allclose(out[..., 0], (np.clip(image[..., 0], -160, 240) + 160) / 400, 1e-5)
    np.testing.assert_allclose(out[..., 2], (image[..., 1] - 5) / 2, rtol=1e-5)


def test_minmax_stats_and_3d_layout(cohort):
    train = [cohort["crop"] / s / "image.nii.gz" for s, v in SPLITS.items() if v == "train"]
    stats = compute_stats(train, "minmax")
    voxels = np.concatenate([cohort["arrays"][s][0].ravel() for s in ("s01", "s02", "s03")])
    assert stats["shift"] == pytest.approx([voxels.min()])
    assert stats["scale"] == pytest.approx([voxels.max() - voxels.min()])
    out = cohort["root"] / "v.h5"
    pack_split(
        ["s01", "s04"],
        *crop_files(cohort["crop"], ["s01", "s04"]),
        stats,
        CLASSES,
        out,
        volumes=True,
    )
    with h5py.File(out, "r") as h5:
        assert h5["volumes/images"].shape == (2, 4, ROWS, COLS, 1)
        assert h5["volumes/masks"].shape == (2, 4, ROWS, COLS, 3)
        assert [p.decode() for p in h5["volumes/patient_id"][:]] == ["s01", "s04"]
        np.testing.assert_array_equal(h5["volumes/images"][1], h5["images"][4:8])
        np.testing.assert_array_equal(h5["volumes/masks"][0], h5["masks"][0:4])
    with pytest.raises(InputError, match="3D layout needs one slice count"):
        pack_split(
            ["s01", "s02"],
            *crop_files(cohort["crop"], ["s01", "s02"]),
            stats,
            CLASSES,
            out,
            volumes=True,
        )
