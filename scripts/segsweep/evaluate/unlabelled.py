"""Predictions for subjects without a reference, by a final model, in each subject's original
geometry, and a figure of them.

Each unlabelled subject's crop goes through the predictor of `segsweep predict`
(`segsweep.deploy.predictor`): normalised exactly as packing normalised the splits, predicted as
the test patients are, and taken back to the original geometry; a subject gets the labels the
test path would give the same image.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from matplotlib.figure import Figure

from segsweep import layout
from segsweep.cli import add_run_options, checkpoint_index
from segsweep.deploy.predictor import Predictor, SubjectFiles
from segsweep.devices import choose_device
from segsweep.io.images import write_image
from segsweep.io.records import read_json
from segsweep.model.checkpoints import selected_checkpoint
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
    predictor: Predictor,
    files: SubjectFiles,
    out_dir: Path,
    figure: Path,
    run_id: str,
) -> None:
    """Write {out_dir}/{subject}.nii.gz (original geometry, data label values) for every
    subject of `files.crops` and the overlay figure of the first few, by the predictor of
    `segsweep predict` (a package's, or one made of a run's checkpoints)."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    shown = []
    for subject in files.crops:
        prepared = files.prepared(subject)
        prediction = predictor.predict_prepared(prepared)
        write_image(prediction.labels, Path(out_dir) / f"{subject}.nii.gz")
        image = normalised_volume(prepared.cropped, predictor.manifest["normalisation"])
        shown.append((subject, image[..., 0], sitk.GetArrayFromImage(prediction.cropped_labels)))
        foreground = int(np.count_nonzero(prediction.classes))
        print(f"{subject}: {foreground} foreground voxels predicted", flush=True)
    overlay_figure(shown[:SHOWN], figure, f"Predictions of {run_id} (orange outline)")


def main(argv: list[str] | None = None) -> None:
    """Predict unlabelled subjects in original geometry: by a model package (`--model`), or by
    a run's selected checkpoint (with the normalisation statistics and label values)."""
    parser = argparse.ArgumentParser(prog="segsweep export", description=main.__doc__)
    add_run_options(parser, required=False)
    parser.add_argument("--model", type=Path, help="a model package (instead of a run)")
    parser.add_argument("--run-id", help="the run, for the figure (default: its folder's name)")
    parser.add_argument("--selection", type=Path, help="selection.json (with a run)")
    parser.add_argument("--stats", type=Path, help="normalisation.json (with a run)")
    parser.add_argument("--labels-json", help="label values of the data (with a run)")
    parser.add_argument("--subjects", nargs="*", default=[], help="subjects to predict")
    parser.add_argument("--crop-dir", type=Path, default=Path(layout.CROP_DIR))
    parser.add_argument("--data-dir", type=Path, default=Path(layout.DATA_DIR))
    parser.add_argument("--out-dir", required=True, type=Path, help="native label maps")
    parser.add_argument("--figure", required=True, type=Path, help="overlay figure (PNG)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = choose_device(args.device)
    if args.model:
        predictor, run_id = Predictor.load(args.model, device), args.model.stem
    elif args.selection and args.stats and args.labels_json:
        index = checkpoint_index(args)
        predictor = Predictor.of_checkpoints(
            [selected_checkpoint(args.selection, index)],
            json.loads(args.labels_json),
            device,
            read_json(args.stats),
        )
        run_id = Path(index).parent.parent.name
    else:
        parser.error("give --model, or a run with --selection, --stats and --labels-json")

    def files(folder: Path, pattern: str, base: str) -> dict[str, Path]:
        return {s: layout.under(folder, pattern, base=base, subject=s) for s in args.subjects}

    predict_unlabelled(
        predictor,
        SubjectFiles(
            files(args.crop_dir, layout.CROP_IMAGE, layout.CROP_DIR),
            files(args.crop_dir, layout.CROP_RECORD, layout.CROP_DIR),
            files(args.data_dir, layout.INGEST_RECORD, layout.DATA_DIR),
        ),
        args.out_dir,
        args.figure,
        args.run_id or run_id,
    )


if __name__ == "__main__":
    main()
