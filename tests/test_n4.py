"""N4 bias correction: removes a known smooth field, keeps geometry, handles non-positive data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from segsweep.errors import ConfigError
from segsweep.preprocess import n4

FAST = {"shrink": 2, "iterations": (30, 30)}


def _phantom(offset: float = 0.0) -> tuple[sitk.Image, np.ndarray, np.ndarray]:
    """A homogeneous cylinder (value 100) in air, times a smooth field varying 1.6x across it."""
    rng = np.random.default_rng(0)
    nz, ny, nx = 8, 64, 64
    z, y, x = np.meshgrid(
        np.linspace(-1, 1, nz), np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij"
    )
    tissue = (x**2 + y**2) < 0.8**2
    truth = np.where(tissue, 100.0, 0.0)
    field = np.exp(0.25 * x - 0.15 * y + 0.1 * x * y + 0.05 * z)
    noisy = truth * field + rng.normal(0, 1.0, truth.shape)
    image = sitk.GetImageFromArray((np.abs(noisy) + offset).astype(np.float32))
    image.SetSpacing((2.0, 2.0, 4.0))
    image.SetOrigin((-10.0, 5.0, 20.0))
    image.SetDirection((1, 0, 0, 0, 0, 1, 0, -1, 0))
    return image, tissue, field


def _cv(values: np.ndarray) -> float:
    return float(values.std() / values.mean())


def test_n4_reduces_variation_inside_homogeneous_tissue():
    image, tissue, field = _phantom()
    corrected, estimated = n4.n4_correct(image, **FAST)
    inner = tissue & (np.hypot(*np.meshgrid(np.linspace(-1, 1, 64), np.linspace(-1, 1, 64))) < 0.7)
    before = _cv(sitk.GetArrayFromImage(image)[inner])
    after = _cv(sitk.GetArrayFromImage(corrected)[inner])
    assert before > 0.08
    assert after < 0.5 * before
    # the estimated field follows the true one up to a constant factor
    ratio = np.log(sitk.GetArrayFromImage(estimated)[inner]) - np.log(field[inner])
    assert ratio.std() < 0.3 * np.log(field[inner]).std()


def test_n4_keeps_geometry_and_returns_float32():
    image, _, _ = _phantom()
    corrected, estimated = n4.n4_correct(image, **FAST)
    for out in (corrected, estimated):
        assert out.GetSize() == image.GetSize()
        assert out.GetSpacing() == image.GetSpacing()
        assert out.GetOrigin() == image.GetOrigin()
        assert out.GetDirection() == image.GetDirection()
        assert out.GetPixelID() == sitk.sitkFloat32
    assert np.all(sitk.GetArrayFromImage(estimated) > 0)


def test_n4_handles_an_additive_offset_with_negative_intensities():
    image, tissue, _ = _phantom(offset=-50.0)  # air at -50: N4 alone would take log of < 0
    corrected, estimated = n4.n4_correct(image, **FAST)
    assert np.isfinite(sitk.GetArrayFromImage(estimated)).all()
    before = sitk.GetArrayFromImage(image)[tissue] + 50.0
    after = sitk.GetArrayFromImage(corrected)[tissue] + 50.0
    assert _cv(after) < 0.5 * _cv(before)
    assert abs(np.median(sitk.GetArrayFromImage(corrected)[~tissue]) + 50.0) < 5.0  # offset kept


def test_n4_with_explicit_mask():
    image, tissue, _ = _phantom()
    mask = sitk.GetImageFromArray(tissue.astype(np.uint8))
    mask.CopyInformation(image)
    corrected, _ = n4.n4_correct(image, mask=mask, **FAST)
    before = _cv(sitk.GetArrayFromImage(image)[tissue])
    assert _cv(sitk.GetArrayFromImage(corrected)[tissue]) < 0.7 * before


def test_iterations_need_at_least_one_level():
    image, _, _ = _phantom()
    with pytest.raises(ConfigError, match="iterations"):
        n4.n4_correct(image, iterations=())


def test_main_disabled_copies_image_and_writes_unit_field(tmp_path):
    image, _, _ = _phantom()
    sitk.WriteImage(image, str(tmp_path / "in.nii.gz"))
    n4.main(
        [
            "--image",
            str(tmp_path / "in.nii.gz"),
            "--config-json",
            json.dumps({"enabled": False}),
            "--out-image",
            str(tmp_path / "out" / "image.nii.gz"),
            "--out-field",
            str(tmp_path / "out" / "field.nii.gz"),
        ]
    )
    out = sitk.ReadImage(str(tmp_path / "out" / "image.nii.gz"))
    field = sitk.ReadImage(str(tmp_path / "out" / "field.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out), sitk.GetArrayFromImage(image))
    assert np.all(sitk.GetArrayFromImage(field) == 1.0)
    assert field.GetSize() == image.GetSize()
    np.testing.assert_allclose(field.GetOrigin(), image.GetOrigin(), atol=1e-4)


def test_main_enabled_writes_corrected_image(tmp_path):
    image, _, _ = _phantom()
    sitk.WriteImage(image, str(tmp_path / "in.nii.gz"))
    cfg = {
        "enabled": True,
        "shrink": 2,
        "iterations": [20, 20],
        "convergence": 0.001,
    }
    n4.main(
        [
            "--image",
            str(tmp_path / "in.nii.gz"),
            "--config-json",
            json.dumps(cfg),
            "--out-image",
            str(tmp_path / "image.nii.gz"),
            "--out-field",
            str(tmp_path / "field.nii.gz"),
        ]
    )
    field = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "field.nii.gz")))
    assert field.std() > 0.02  # a real, non-constant field was estimated


def test_fit_shrink_keeps_enough_pixels_in_plane():
    assert n4.fit_shrink((800, 800, 41), 8) == 8
    assert n4.fit_shrink((100, 120, 41), 8) == 3
    assert n4.fit_shrink((20, 20, 5), 8) == 1


def test_multichannel_corrected_per_channel_and_qc_figure(tmp_path):
    image, tissue, _ = _phantom()
    second = image * 2.0
    vector = sitk.Compose([image, second])
    corrected, field = n4.n4_correct(vector, **FAST)
    assert corrected.GetNumberOfComponentsPerPixel() == 2
    assert field.GetNumberOfComponentsPerPixel() == 2
    arr = sitk.GetArrayFromImage(corrected)
    assert _cv(arr[..., 1][tissue]) < 0.5 * _cv(sitk.GetArrayFromImage(second)[tissue])
    n4.qc_figure(vector, field, corrected, tmp_path / "qc.png")
    assert (tmp_path / "qc.png").stat().st_size > 1000


def test_mask_all_and_unknown_mask_name():
    image, tissue, _ = _phantom(offset=5.0)
    corrected, _ = n4.n4_correct(image, mask="all", **FAST)
    assert np.isfinite(sitk.GetArrayFromImage(corrected)).all()
    with pytest.raises(ConfigError, match="preprocess.n4.mask"):
        n4.n4_correct(image, mask="bone", **FAST)


def test_n4_corrects_the_same_on_any_number_of_threads():
    # ITK's fit sums in a thread-dependent order: a package predicting on another machine must
    # reproduce the workflow's correction voxel for voxel
    rng = np.random.default_rng(3)
    size = (256, 256, 6)
    image = sitk.GetImageFromArray(
        (rng.gamma(4.0, 100.0, size[::-1]) * np.linspace(0.6, 1.4, size[0])).astype(np.float32)
    )
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    corrected = []
    try:
        for count in (1, 3, 4):
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(count)
            corrected.append(sitk.GetArrayFromImage(n4.n4_correct(image)[0]))
            assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == count
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    assert all(np.array_equal(corrected[0], other) for other in corrected[1:])
