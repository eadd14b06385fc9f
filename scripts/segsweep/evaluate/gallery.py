"""The gallery of a final classifier's most confident test errors (Kaliyugarsan 2019 shows
such cases): the false positives with the highest and the false negatives with the lowest study
probability, each shown by one image of the study: results/final/{run}/gallery.png. Drawn by
the final test (`segsweep.evaluate.classify`), the one stage that reads test images.

A study is predicted positive iff its probability of the positive class (the last of the
classes) >= the model's threshold; `predicted` in per_study.csv applies it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from segsweep.evaluate.predictions import positive_column
from segsweep.io.image_sets import ImageSet
from segsweep.numerals import number
from segsweep.plotting import FONT_SIZE, TEXT_WIDTH, save, without_ticks

CATEGORIES = {"fp": "false positives", "fn": "false negatives"}


def gallery_cases(
    per_study: pd.DataFrame, per_image: pd.DataFrame, classes: list[str], n: int
) -> pd.DataFrame:
    """The `n` most confident false positives (true not positive, predicted positive; highest
    study probability first) and false negatives (true positive, predicted otherwise; lowest
    first) of one model, each with the image that shows it: the study's image with the highest
    (false positive) or lowest (false negative) probability of the positive class. Columns:
    category ("fp" | "fn"), study_id, study_type, p (the study probability), image_id."""
    column, positive = positive_column(classes), classes[-1]
    true, predicted = per_study["true"].astype(str), per_study["predicted"].astype(str)
    cases = []
    for category, wrong, highest in (
        ("fp", (true != positive) & (predicted == positive), True),
        ("fn", (true == positive) & (predicted != positive), False),
    ):
        chosen = per_study[wrong].sort_values(
            [column, "study_id"], ascending=[not highest, True], kind="stable"
        )
        for study in chosen.head(n).itertuples(index=False):
            images = per_image[per_image["study_id"].astype(str) == str(study.study_id)]
            if images.empty:
                raise ValueError(f"study {study.study_id}: no images in per_image.csv")
            image = images.sort_values(column, ascending=not highest, kind="stable").iloc[0]
            cases.append(
                [
                    category,
                    str(study.study_id),
                    str(study.study_type),
                    float(getattr(study, column)),
                    str(image["image_id"]),
                ]
            )
    return pd.DataFrame(cases, columns=["category", "study_id", "study_type", "p", "image_id"])


def gallery_figure(
    per_study: Mapping[str, pd.DataFrame],
    per_image: Mapping[str, pd.DataFrame],
    image_set: ImageSet,
    n: int,
    out_png: Path,
) -> None:
    """Per model (label → its test per_study.csv and per_image.csv), a row of its `n` most
    confident false positives and one of its false negatives (`gallery_cases`), each panel the
    image (from the packed `image_set`, grey, its 1st–99th percentiles stretched) titled with
    study id, study type and study probability; a category without errors says "none"."""
    classes = image_set.classes
    index = {str(image): i for i, image in enumerate(image_set.image_id)}
    rows = [(label, category) for label in per_study for category in CATEGORIES]
    columns = max(1, n)
    panel = min(1.5, (TEXT_WIDTH - 0.6) / columns)
    fig = Figure(
        figsize=(panel * columns + 0.6, (panel + 0.55) * max(1, len(rows))), layout="constrained"
    )
    axes = fig.subplots(max(1, len(rows)), columns, squeeze=False)
    without_ticks(axes.ravel())
    for r, (label, category) in enumerate(rows):
        cases = gallery_cases(per_study[label], per_image[label], classes, n)
        cases = cases[cases["category"] == category]
        name = CATEGORIES[category]
        axes[r, 0].set_ylabel(f"{label}\n{name}" if len(per_study) > 1 else name)
        for c in range(columns):
            ax = axes[r, c]
            for spine in ax.spines.values():
                spine.set_visible(c < len(cases) or c == 0)
            if c >= len(cases):
                if c == 0:
                    ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
                continue
            case = cases.iloc[c]
            if case["image_id"] not in index:
                raise ValueError(f"image {case['image_id']}: not in the packed test image set")
            image = image_set.images[index[case["image_id"]]]
            low, high = np.percentile(image, [1, 99])
            ax.imshow(image, cmap="gray", vmin=low, vmax=high if high > low else low + 1)
            ax.set_title(
                f"{case['study_id']}\n{case['study_type']}, p = {number(case['p'], 2)}",
                fontsize=FONT_SIZE - 2,
            )
    if not rows:
        axes[0, 0].text(0.5, 0.5, "no final models", ha="center", va="center")
    save(fig, out_png)
