"""Every inference path feeds a network the same normalised slices: a subject predicted as an
unlabelled subject gets exactly the labels the test path gives the same image, for every
`preprocess.normalise` method (packing, the test set and the unlabelled predictions share one
normalisation function)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from segsweep.data.ingest import check_subject, ingest_image, ingest_mask
from segsweep.evaluate import tables as evaluate
from segsweep.evaluate import unlabelled as export
from segsweep.preprocess.crop import crop_mask, crop_subject, image_centre
from segsweep.preprocess.normalise import compute_stats
from segsweep.preprocess.pack import crop_files, pack_split
from segsweep.train.loop import train_run

LABELS = {"bone": 1}
WINDOWS = [[-160.0, 240.0], [0.0, 150.0]]  # two windows: two network channels under `window`
HP = {
    **{"model": "unet2d", "depth": 2, "base_channels": 4, "labels": "merged", "loss": "dice"},
    **{"lr": 0.01, "batch_size": 4, "epochs": 6, "checkpoint_every": 6, "seed": 0},
}


def _subject(root: Path, subject: str, gain: float) -> None:
    """A raw CT-like image (HU, intensities times `gain`) with a bright blob and its mask,
    ingested and cropped into {root}/data/{subject} and {root}/crop/{subject}."""
    rng = np.random.default_rng(3)
    z, y, x = np.indices((10, 40, 40))
    blob = (y - 20) ** 2 + (x - 18) ** 2 < 120
    array = gain * (np.where(blob, 120.0, -400.0) + rng.normal(0, 40, blob.shape) + 3.0 * x)
    raw = root / "raw" / subject
    raw.mkdir(parents=True)
    image_path, mask_path = raw / "image.nii.gz", raw / "mask.nii.gz"
    for path, values, kind in ((image_path, array, np.float32), (mask_path, blob, np.uint8)):
        image = sitk.GetImageFromArray(values.astype(kind))
        image.SetSpacing((0.8, 0.8, 3.0))
        sitk.WriteImage(image, str(path))
    data, crops = root / "data" / subject, root / "crop" / subject
    record = check_subject(subject, image_path, LABELS, mask_path=mask_path)
    data.mkdir(parents=True)
    (data / "ingest.json").write_text(json.dumps(record))
    ingest_image(subject, image_path, data / "image.nii.gz")
    ingest_mask(subject, image_path, mask_path, data / "mask.nii.gz", LABELS)
    canonical = sitk.ReadImage(str(data / "image.nii.gz"))
    cropped, info = crop_subject(canonical, image_centre(canonical), 28.0, 24, 8)
    crops.mkdir(parents=True)
    sitk.WriteImage(cropped, str(crops / "image.nii.gz"))
    (crops / "crop.json").write_text(json.dumps(info))
    mask, _ = crop_mask(sitk.ReadImage(str(data / "mask.nii.gz")), info, LABELS)
    sitk.WriteImage(mask, str(crops / "mask.nii.gz"))


def _trained_run(run_dir: Path, split: Path) -> None:
    """A run trained briefly on `split` (so that it segments the blob) and its selection."""
    train_run(HP, split, split, run_dir, device="cpu", threads=1)
    last = json.loads((run_dir / "checkpoints" / "index.json").read_text())["checkpoints"][-1]
    (run_dir / "selection.json").write_text(json.dumps({"selected": last}))


@pytest.mark.parametrize("method", ["zscore", "minmax", "image_zscore", "window"])
def test_unlabelled_path_predicts_the_labels_of_the_test_path(tmp_path: Path, method: str):
    _subject(tmp_path, "s0", gain=1.0)  # the training subject: the statistics are its own
    _subject(tmp_path, "s1", gain=1.6)  # the predicted subject, brighter
    stats = compute_stats([tmp_path / "crop" / "s0" / "image.nii.gz"], method, WINDOWS)
    (tmp_path / "normalisation.json").write_text(json.dumps(stats))
    pack_split(["s0"], *crop_files(tmp_path / "crop", ["s0"]), stats, LABELS, tmp_path / "train.h5")
    pack_split(["s1"], *crop_files(tmp_path / "crop", ["s1"]), stats, LABELS, tmp_path / "test.h5")
    run_dir = tmp_path / "runs" / "r"
    _trained_run(run_dir, tmp_path / "train.h5")
    common = ["--run-dir", str(run_dir), "--selection", str(run_dir / "selection.json")]
    common += ["--labels-json", json.dumps(LABELS), "--device", "cpu"]

    test = tmp_path / "final" / "test"
    evaluate.main(
        [
            *common,
            *("--data", str(tmp_path / "test.h5"), "--split", "test"),
            *("--out-dir", str(test), "--predictions-dir", str(test / "processed")),
            *("--crop-dir", str(tmp_path / "crop"), "--data-dir", str(tmp_path / "data")),
            *("--native-dir", str(test / "native")),
        ]
    )
    unlabelled = tmp_path / "final" / "unlabelled"
    export.main(
        [
            *common,
            *("--stats", str(tmp_path / "normalisation.json"), "--subjects", "s1"),
            *("--crop-dir", str(tmp_path / "crop"), "--data-dir", str(tmp_path / "data")),
            *("--out-dir", str(unlabelled), "--figure", str(tmp_path / "unlabelled.png")),
        ]
    )
    from_test = sitk.GetArrayFromImage(sitk.ReadImage(str(test / "native" / "s1.nii.gz")))
    from_unlabelled = sitk.GetArrayFromImage(sitk.ReadImage(str(unlabelled / "s1.nii.gz")))
    assert set(np.unique(from_test)) == {0, 1}, "the network must predict both classes"
    np.testing.assert_array_equal(from_unlabelled, from_test)
