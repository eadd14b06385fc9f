"""Pack the radiographs of one split into an image set (`segsweep.io.image_sets`), and draw a
figure of example studies.

Every image is read with SimpleITK (PNG, JPEG, DICOM, 2D NIfTI/MHA; a 3D file with one slice
is 2D), made one grey channel (the mean of R, G and B; alpha is ignored), resized keeping its
aspect ratio so that its longer side is S pixels (linear interpolation, Gaussian-smoothed first
when shrinking, against aliasing), padded to S × S with its own minimum (the dark background of
a radiograph), centred, and z-scored over the S × S pixels (a constant image gives zeros).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from matplotlib.figure import Figure
from scipy import ndimage

from segsweep import layout
from segsweep.data.studies import SINGLE_SOURCE, ordered_classes
from segsweep.errors import InputError
from segsweep.io.image_sets import write_image_set
from segsweep.plotting import save, without_ticks


def read_grey(path: str | Path, subject: str | None = None) -> np.ndarray:
    """The image as float64 [rows, cols], one grey channel; InputError names a file that is
    missing, unreadable or not 2D."""
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError:
        problem = "image file not found" if not Path(path).is_file() else "unreadable image"
        raise InputError(subject, str(path), problem) from None
    array = sitk.GetArrayFromImage(image).astype(np.float64)
    if image.GetDimension() == 3 and image.GetSize()[2] == 1:
        array = array[0]
    elif image.GetDimension() != 2:
        raise InputError(subject, str(path), f"expected a 2D image, got size {image.GetSize()}")
    if image.GetNumberOfComponentsPerPixel() > 1:
        array = array[..., :3].mean(axis=-1) if array.shape[-1] >= 3 else array[..., 0]
    return array


def fit_square(array: np.ndarray, size: int) -> np.ndarray:
    """`array` [rows, cols] resized so its longer side is `size`, centred and padded with its
    minimum to [size, size]."""
    rows, cols = array.shape
    low = array.min()  # smoothing and linear interpolation stay within the image's range
    factor = size / max(rows, cols)
    shape = (max(1, round(rows * factor)), max(1, round(cols * factor)))
    zoom = (shape[0] / rows, shape[1] / cols)
    if min(zoom) < 1:
        sigma = [max(0.0, (1 / z - 1) / 2) for z in zoom]
        array = ndimage.gaussian_filter(array, sigma, mode="nearest")
    resized = ndimage.zoom(array, zoom, order=1, mode="nearest", grid_mode=True)[
        : shape[0], : shape[1]
    ]
    out = np.full((size, size), low, dtype=np.float64)
    top, left = (size - resized.shape[0]) // 2, (size - resized.shape[1]) // 2
    out[top : top + resized.shape[0], left : left + resized.shape[1]] = resized
    return out


def z_score(array: np.ndarray) -> np.ndarray:
    """Zero mean, unit SD as float32; zeros for a constant image."""
    sd = array.std()
    if not np.isfinite(sd) or sd <= 1e-12 * max(1.0, abs(array.mean())):
        return np.zeros(array.shape, np.float32)
    return ((array - array.mean()) / sd).astype(np.float32)


def prepared(path: str | Path, size: int, subject: str | None = None) -> np.ndarray:
    """One image as packed: grey, fitted to [size, size], z-scored (float32)."""
    return z_score(fit_square(read_grey(path, subject), size))


def _text(images: pd.DataFrame) -> dict[str, list[str]]:
    """The image set's text columns; image_id from the file name and path = image where the
    table has no such column."""
    image_id = (
        images["image_id"]
        if "image_id" in images
        else [Path(p).name.split(".")[0] for p in images["image"]]
    )
    return {
        "image_id": list(map(str, image_id)),
        "study_id": images["study_id"].astype(str).tolist(),
        "patient_id": images["patient_id"].astype(str).tolist(),
        "study_type": images.get("study_type", pd.Series("", index=images.index))
        .fillna("")
        .astype(str)
        .tolist(),
        "path": (images["path"] if "path" in images else images["image"]).astype(str).tolist(),
    }


def pack_split(
    images: pd.DataFrame,
    splits: pd.DataFrame,
    split: str,
    size: int,
    classes: list[str],
    out: str | Path,
) -> int:
    """Write the images of the studies of `split` (splits.csv: subject_id = study id) to `out`;
    returns how many. An empty split writes an empty set; a label not in `classes` is an
    InputError."""
    studies = set(splits.loc[splits["split"].astype(str) == split, "subject_id"].astype(str))
    rows = images[images["study_id"].astype(str).isin(studies)].reset_index(drop=True)
    unknown = rows[~rows["label"].isin(classes)]
    if len(unknown):
        first = unknown.iloc[0]
        raise InputError(
            first["study_id"], first["image"], f"label {first['label']!r} not in {classes}"
        )
    arrays = [prepared(row.image, size, row.study_id) for row in rows.itertuples()]
    stack = np.stack(arrays) if arrays else np.zeros((0, size, size), np.float32)
    label = np.array([classes.index(name) for name in rows["label"]], dtype=np.int16)
    write_image_set(out, stack, label, _text(rows), classes)
    return len(rows)


def example_figure(
    images: pd.DataFrame, classes: list[str], out_png: str | Path, per_cell: int = 1
) -> None:
    """A grid of example images: one row per study type, one column per class, each cell the
    first `per_cell` images of the type's first study of that class (in id order), titled
    with the study id; an empty cell says "none"."""
    types = images.get("study_type", pd.Series("", index=images.index)).fillna("").astype(str)
    table = images.assign(study_type=types).sort_values(["study_id", "image"])
    kinds = sorted(set(types)) or [""]
    fig = Figure(figsize=(1.7 * per_cell * len(classes) + 0.6, 1.9 * len(kinds)), layout="tight")
    axes = fig.subplots(len(kinds), len(classes), squeeze=False)
    for i, kind in enumerate(kinds):
        for j, name in enumerate(classes):
            ax = axes[i, j]
            found = table[(table["study_type"] == kind) & (table["label"] == name)]
            if found.empty:
                ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
                ax.set_title(name)
            else:
                study = found["study_id"].iloc[0]
                files = found.loc[found["study_id"] == study, "image"].head(per_cell)
                tiles = [fit_square(read_grey(f, study), 96) for f in files]
                tiles = [(t - t.min()) / max(t.max() - t.min(), 1e-12) for t in tiles]
                gap = np.ones((96, 3))
                row = np.hstack([part for t in tiles for part in (t, gap)][:-1])
                ax.imshow(row, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                ax.set_title(f"{name}\n{study}")
            if j == 0:
                ax.set_ylabel(kind or SINGLE_SOURCE)
    without_ticks(axes.ravel())
    save(fig, Path(out_png))


def _read_table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def main(argv: list[str] | None = None) -> None:
    """`split` packs one split into an image set; `examples` draws the example figure."""
    parser = argparse.ArgumentParser(prog="segsweep images", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    split = sub.add_parser("split", help="pack the images of one split's studies")
    split.add_argument("--images", type=Path, required=True, help=layout.IMAGES_TABLE)
    split.add_argument("--splits", type=Path, required=True, help="splits.csv (study ids)")
    split.add_argument("--split", required=True, help="train, val or test")
    split.add_argument("--size", type=int, default=64, help="side S of the packed images")
    split.add_argument("--labels-json", required=True, help="data.labels")
    split.add_argument("--out", type=Path, required=True, help=layout.DATASET)
    examples = sub.add_parser(
        "examples", help="figure of one normal and one abnormal study per type"
    )
    examples.add_argument("--images", type=Path, required=True, help=layout.IMAGES_TABLE)
    examples.add_argument("--labels-json", required=True, help="data.labels")
    examples.add_argument("--per-cell", type=int, default=1, help="images shown of each study")
    examples.add_argument("--out", type=Path, required=True, help=layout.EXAMPLES_FIGURE)
    args = parser.parse_args(argv)
    classes = ordered_classes(json.loads(args.labels_json))
    images = _read_table(args.images)
    if args.command == "split":
        pack_split(images, _read_table(args.splits), args.split, args.size, classes, args.out)
    else:
        example_figure(images, classes, args.out, args.per_cell)


if __name__ == "__main__":
    main()
