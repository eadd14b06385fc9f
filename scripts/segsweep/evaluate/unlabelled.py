"""Predictions for subjects without a reference, by a final model, in each subject's original
geometry, and a figure of them.

Each unlabelled subject's cropped image is normalised exactly as packing normalised the splits
(`segsweep.preprocess.normalise.normalised_volume`, with the training split's statistics), so a
subject gets the labels the test path would give the same image; the label map on the cropped
grid is then taken back to the original geometry (`segsweep.evaluate.export.to_native`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from matplotlib.figure import Figure

from segsweep import layout
from segsweep.cli import add_run_options, checkpoint_index
from segsweep.devices import choose_device
from segsweep.evaluate.export import to_native
from segsweep.evaluate.predict import predict_labels
from segsweep.io.images import read_volume, write_image
from segsweep.io.records import read_json
from segsweep.labels import label_values
from segsweep.model.checkpoints import load_models, selected_checkpoint
from segsweep.plotting import VAL_COLOUR, save
from segsweep.preprocess.normalise import normalised_volume

SHOWN = 4  # subjects drawn in the figure


def overlay_figure(shown: list[tuple[str, np.ndarray, np.ndarray]], out: Path, title: str) -> None:
    """Middle slice of each (subject, image [z, y, x], labels [z, y, x]) with the prediction
    outlined: predictions for subjects without a reference."""
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


def predict_unlabelled(
    checkpoint: Path | list[Path],
    stats: dict,
    crops: Mapping[str, str | Path],
    crop_records: Mapping[str, str | Path],
    ingest_records: Mapping[str, str | Path],
    labels: dict[str, int],
    out_dir: Path,
    figure: Path,
    run_id: str,
    device: torch.device,
) -> None:
    """Write {out_dir}/{subject}.nii.gz (original geometry, data label values) for every
    subject of `crops` (subject → cropped image), and the overlay figure of the first few; by
    one checkpoint's model or the ensemble of several (a configuration's folds)."""
    paths = [checkpoint] if isinstance(checkpoint, str | Path) else list(checkpoint)
    model, meta = load_models(paths, device)
    lut = label_values(meta["classes"], labels)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    shown = []
    for subject, crop in crops.items():
        image = read_volume(crop, subject)
        slices = normalised_volume(image, stats)
        predicted = lut[predict_labels(model, slices, device)]
        cropped = sitk.GetImageFromArray(predicted)
        cropped.CopyInformation(image)
        native = to_native(
            cropped, read_json(crop_records[subject]), read_json(ingest_records[subject])
        )
        write_image(native, Path(out_dir) / f"{subject}.nii.gz")
        shown.append((subject, slices[..., 0], predicted))
        print(
            f"{subject}: {int(np.count_nonzero(predicted))} foreground voxels predicted", flush=True
        )
    overlay_figure(shown[:SHOWN], figure, f"Predictions of {run_id} (orange outline)")


def main(argv: list[str] | None = None) -> None:
    """Predict unlabelled subjects with a run's selected checkpoint, in original geometry."""
    parser = argparse.ArgumentParser(prog="segsweep export", description=main.__doc__)
    add_run_options(parser)
    parser.add_argument("--run-id", help="the run, for the figure (default: its folder's name)")
    parser.add_argument("--selection", required=True, type=Path, help="selection.json")
    parser.add_argument("--stats", required=True, type=Path, help="normalisation.json")
    parser.add_argument("--subjects", nargs="*", default=[], help="subjects to predict")
    parser.add_argument("--crop-dir", type=Path, default=Path(layout.CROP_DIR))
    parser.add_argument("--data-dir", type=Path, default=Path(layout.DATA_DIR))
    parser.add_argument("--labels-json", required=True, help="label values of the data")
    parser.add_argument("--out-dir", required=True, type=Path, help="native label maps")
    parser.add_argument("--figure", required=True, type=Path, help="overlay figure (PNG)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    index = checkpoint_index(args)

    def files(folder: Path, pattern: str, base: str) -> dict[str, Path]:
        return {s: layout.under(folder, pattern, base=base, subject=s) for s in args.subjects}

    predict_unlabelled(
        selected_checkpoint(args.selection, index),
        read_json(args.stats),
        files(args.crop_dir, layout.CROP_IMAGE, layout.CROP_DIR),
        files(args.crop_dir, layout.CROP_RECORD, layout.CROP_DIR),
        files(args.data_dir, layout.INGEST_RECORD, layout.DATA_DIR),
        json.loads(args.labels_json),
        args.out_dir,
        args.figure,
        args.run_id or Path(index).parent.parent.name,
        choose_device(args.device),
    )


if __name__ == "__main__":
    main()
