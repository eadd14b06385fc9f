"""Predictions back in each subject's original geometry, and their scores in native space.

The crop stage resampled the canonical (LIP) volume with nearest neighbour onto the cropped grid
recorded in crop.json ("output": origin, spacing, direction, size; every `step`-th canonical slice).
`to_native` undoes it: the label map on the cropped grid is resampled with nearest neighbour onto
the canonical grid ("input"), so each canonical slice takes its nearest predicted slice and voxels
outside the crop window are background; it is then reoriented to the orientation ingest.json
recorded and given the original origin, spacing and direction, so it overlays on the raw image.

Native scores (`native_tables`): the exported prediction against the original mask (a label map,
a DICOM series or one file per class), restricted to the labelled region (`roi`) when the subject
has one — per patient only, with the metrics of `segsweep.metrics` and the surface distances of
`segsweep.distances` on the original spacing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from segsweep.distances import surface_distances
from segsweep.errors import InputError
from segsweep.ingest import read_image
from segsweep.metrics import METRICS, confusion_counts, overlap_metrics, volumes_ml


def _grid(record: dict[str, Any]) -> sitk.Image:
    image = sitk.Image([int(s) for s in record["size"]], sitk.sitkUInt8)
    image.SetOrigin([float(v) for v in record["origin"]])
    image.SetSpacing([float(v) for v in record["spacing"]])
    image.SetDirection([float(v) for v in record["direction"]])
    return image


def to_native(
    cropped: sitk.Image, crop_info: dict[str, Any], ingest_info: dict[str, Any]
) -> sitk.Image:
    """A label map on the cropped grid, in the subject's original geometry (uint8)."""
    canonical = sitk.Resample(
        sitk.Cast(cropped, sitk.sitkUInt8),
        _grid(crop_info["input"]),
        sitk.Transform(),
        sitk.sitkNearestNeighbor,
        0,
        sitk.sitkUInt8,
    )
    original = ingest_info["original"]
    native = sitk.DICOMOrient(canonical, original["orientation"])
    if list(native.GetSize()) != [int(s) for s in original["size"]]:
        raise InputError(
            ingest_info.get("subject_id"),
            "ingest.json",
            f"reoriented size {native.GetSize()} is not the original {original['size']}",
        )
    native.SetOrigin([float(v) for v in original["origin"]])
    native.SetSpacing([float(v) for v in original["spacing"]])
    native.SetDirection([float(v) for v in original["direction"]])
    return native


def export_native(processed_dir: Path, crop_dir: Path, data_dir: Path, out_dir: Path) -> list[Path]:
    """Every {processed_dir}/{subject}.nii.gz in original geometry as {out_dir}/{subject}.nii.gz."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(Path(processed_dir).glob("*.nii.gz")):
        subject = path.name[: -len(".nii.gz")]
        crop_info = json.loads((Path(crop_dir) / subject / "crop.json").read_text())
        ingest_info = json.loads((Path(data_dir) / subject / "ingest.json").read_text())
        native = to_native(sitk.ReadImage(str(path)), crop_info, ingest_info)
        target = out_dir / path.name
        sitk.WriteImage(native, str(target), useCompression=True)
        written.append(target)
    return written


def _read_like(path: str, like: sitk.Image, subject: str | None = None) -> np.ndarray:
    """An original file (or DICOM series folder) as an array on the prediction's grid."""
    image = read_image(path, subject)
    if image.GetSize() != like.GetSize():
        raise InputError(
            subject, path, f"size {image.GetSize()} is not the prediction's {like.GetSize()}"
        )
    return sitk.GetArrayFromImage(image)


def reference_labels(
    ingest_info: dict[str, Any], labels: dict[str, int], like: sitk.Image
) -> np.ndarray:
    """The subject's original label map: its mask, or its one-file-per-class masks (non-zero =
    that class) given the label values of data.labels, as ingest combined them."""
    subject = ingest_info.get("subject_id")
    class_masks = ingest_info.get("class_masks") or {}
    if not class_masks:
        return _read_like(ingest_info["mask"], like, subject)
    missing = [name for name in class_masks if name not in labels]
    if missing:
        raise InputError(subject, "ingest.json", f"classes {missing} not in data.labels {labels}")
    reference = np.zeros(like.GetSize()[::-1], dtype=np.uint8)
    for name, path in class_masks.items():
        reference[_read_like(path, like, subject) != 0] = labels[name]
    return reference


def native_rows(
    prediction: sitk.Image,
    ingest_info: dict[str, Any],
    classes: list[str],
    labels: dict[str, int],
) -> list[dict[str, Any]]:
    """Per-class and foreground rows of one subject's native-space scores (within the roi)."""
    if not ingest_info.get("mask"):
        return []
    pred = sitk.GetArrayFromImage(prediction)
    ref = reference_labels(ingest_info, labels, prediction)
    roi = (
        _read_like(ingest_info["roi"], prediction, ingest_info.get("subject_id")) > 0
        if ingest_info.get("roi")
        else np.ones(ref.shape, dtype=bool)
    )
    spacing_zyx = tuple(float(s) for s in prediction.GetSpacing()[::-1])
    voxel_mm3 = float(np.prod(prediction.GetSpacing()))
    if list(classes) == ["foreground"]:
        pairs = [("foreground", pred > 0, ref > 0)]
    else:
        values = [labels[c] for c in classes]
        pairs = [(c, pred == labels[c], ref == labels[c]) for c in classes]
        pairs.append(("foreground", pred > 0, np.isin(ref, values)))
    rows = []
    for name, p, r in pairs:
        p, r = p & roi, r & roi
        tp, fp, fn, _ = confusion_counts(p, r)
        tn = int(np.count_nonzero(roi)) - int(tp + fp + fn)
        metrics = overlap_metrics(tp, fp, fn, tn)
        rows.append(
            {
                "class": name,
                "tp": int(tp),
                "fp": int(fp),
                "fn": int(fn),
                "tn": tn,
                **{m: float(metrics[m]) for m in METRICS},
                **{k: float(v) for k, v in volumes_ml(tp, fp, fn, voxel_mm3).items()},
                **surface_distances(p, r, spacing_zyx),
            }
        )
    return rows


def native_tables(
    native_dir: Path,
    data_dir: Path,
    classes: list[str],
    labels: dict[str, int],
    run_id: str,
    split: str,
) -> pd.DataFrame:
    """Native-space per-patient rows of every exported prediction of labelled subjects."""
    rows = []
    for path in sorted(Path(native_dir).glob("*.nii.gz")):
        subject = path.name[: -len(".nii.gz")]
        ingest_info = json.loads((Path(data_dir) / subject / "ingest.json").read_text())
        for row in native_rows(sitk.ReadImage(str(path)), ingest_info, classes, labels):
            rows.append(
                {"run_id": run_id, "split": split, "space": "native", "patient_id": subject, **row}
            )
    return pd.DataFrame(rows)


def overlay_figure(shown: list[tuple[str, np.ndarray, np.ndarray]], out: Path, title: str) -> None:
    """Middle slice of each (subject, image [z, y, x], labels [z, y, x]) with the prediction
    outlined: predictions for subjects without a reference."""
    from matplotlib.figure import Figure

    from segsweep.figures import VAL_COLOUR, save

    n = max(1, len(shown))
    fig = Figure(figsize=(2.6 * n, 3.0), layout="tight")
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax in axes:
        ax.axis("off")
    for ax, (subject, image, labels) in zip(axes, shown, strict=False):
        k = len(image) // 2
        ax.imshow(image[k], cmap="gray", interpolation="nearest")
        if labels[k].any():
            ax.contour(labels[k] > 0, levels=[0.5], colors=VAL_COLOUR, linewidths=0.9)
        ax.set_title(f"{subject}, slice {k}", fontsize=8)
    if not shown:
        axes[0].text(0.5, 0.5, "no unlabelled subjects", ha="center", va="center")
    fig.suptitle(title, fontsize=9)
    save(fig, out)


def main(argv: list[str] | None = None) -> None:
    """Predict unlabelled subjects with a run's selected checkpoint, in original geometry."""
    import argparse

    import torch

    from segsweep.devices import choose_device
    from segsweep.evaluate import label_values
    from segsweep.pack import normalised_volume
    from segsweep.predict import load_checkpoint, predict_labels

    parser = argparse.ArgumentParser(prog="python -m segsweep.export", description=main.__doc__)
    parser.add_argument("--run-dir", required=True, type=Path, help="results/runs/{run}")
    parser.add_argument("--selection", required=True, type=Path, help="selection.json")
    parser.add_argument("--stats", required=True, type=Path, help="normalisation.json")
    parser.add_argument("--subjects", nargs="*", default=[], help="subjects to predict")
    parser.add_argument("--crop-dir", type=Path, default=Path("results/crop"))
    parser.add_argument("--data-dir", type=Path, default=Path("results/data"))
    parser.add_argument("--labels-json", required=True, help="label values of the data")
    parser.add_argument("--out-dir", required=True, type=Path, help="native label maps")
    parser.add_argument("--figure", required=True, type=Path, help="overlay figure (PNG)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = choose_device(args.device)
    selected = json.loads(args.selection.read_text())["selected"]
    model, meta = load_checkpoint(args.run_dir / "checkpoints" / selected["file"], device)
    stats = json.loads(args.stats.read_text())
    lut = label_values(meta["classes"], json.loads(args.labels_json))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    shown = []
    for subject in args.subjects:
        image = sitk.ReadImage(str(args.crop_dir / subject / "image.nii.gz"))
        slices = normalised_volume(image, stats)
        labels = lut[predict_labels(model, slices, device)]
        cropped = sitk.GetImageFromArray(labels)
        cropped.CopyInformation(image)
        crop_info = json.loads((args.crop_dir / subject / "crop.json").read_text())
        ingest_info = json.loads((args.data_dir / subject / "ingest.json").read_text())
        native = to_native(cropped, crop_info, ingest_info)
        sitk.WriteImage(native, str(args.out_dir / f"{subject}.nii.gz"), useCompression=True)
        shown.append((subject, slices[..., 0], labels))
        print(f"{subject}: {int(np.count_nonzero(labels))} foreground voxels predicted", flush=True)
    overlay_figure(shown[:4], args.figure, f"Predictions of {args.run_dir.name} (orange outline)")


if __name__ == "__main__":
    main()
