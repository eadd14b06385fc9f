"""Selection and the final test of the classification task, at study level.

`select`: every checkpoint of a run predicts its validation images (`segsweep.evaluate.
probabilities`); a study's probability is the mean (or max, `classification.study_probability`)
of its images' (`segsweep.evaluate.predictions`); the decision threshold is chosen on these
validation studies (`classification.threshold`: Youden's J, or a fixed number); the checkpoint
with the best `selection.metric` at `selection.level` (study | image) wins (ties → the earliest,
a NaN score never beats a number), as for segmentation (`segsweep.evaluate.select.best_entry`).
selection.json records every checkpoint's score and threshold; the selected checkpoint's
per_image.csv and per_study.csv are the run's validation tables.

`test`: a final model — its configuration's run, or with folds its fold ensemble (the mean of the
fold models' probabilities) or its best fold (`final.model`) — predicts the test images. Its
threshold is chosen on its validation studies (with folds their pooled out-of-fold predictions,
each study scored by the fold model that never trained on it) and stated in per_study.csv and
models.json. Only this stage reads the test split.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from segsweep.config_schema import complete
from segsweep.devices import choose_device
from segsweep.errors import ConfigError, InputError
from segsweep.evaluate.gallery import gallery_cases, gallery_figure
from segsweep.evaluate.predictions import METRICS, prediction_tables, score
from segsweep.evaluate.probabilities import ensemble_probabilities, predict_probabilities
from segsweep.evaluate.select import _json_score, best_entry, best_fold
from segsweep.io.image_sets import TEXT, ImageSet, read_image_set
from segsweep.io.records import read_json, write_csv, write_json
from segsweep.model.checkpoints import load_checkpoint, selected_checkpoint
from segsweep.model.classifiers import build_classifier


def selection_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The selection section with defaults filled in, its metric checked (its level, study or
    image, is checked when the workflow plans)."""
    cfg = complete(cfg, "selection")
    if cfg["metric"] not in METRICS:
        raise ConfigError("selection.metric", cfg["metric"], " | ".join(METRICS))
    return cfg


def predict_tables(
    images: ImageSet,
    probabilities: np.ndarray,
    how: str,
    rule: str | float,
    threshold_on: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """(per_image, per_study, threshold) of one model's probabilities [N, K] on `images`; the
    threshold follows `rule` on the studies of `threshold_on` (validation), or, when None, on
    these studies themselves (they are the validation set)."""
    ids = {column: getattr(images, column) for column in TEXT}
    per_image, per_study = prediction_tables(
        ids, images.label, probabilities, images.classes, how, rule, threshold_on
    )
    threshold = float(per_study["threshold"].iloc[0]) if len(per_study) else math.nan
    return per_image, per_study, threshold


def select_checkpoint(
    index_path: Path,
    val: Path | list[Path],
    selection_cfg: dict[str, Any],
    classification_cfg: dict[str, Any],
    device: torch.device,
    studies: list[str] | None = None,
) -> tuple[dict[str, Any], pd.DataFrame | None, pd.DataFrame | None]:
    """(selection.json's content, per_image, per_study of the selected checkpoint) of the run
    whose checkpoint index is `index_path`, on its validation `studies` among the files `val`
    (all of them when None). A failed run yields its status and error and no tables."""
    cfg = selection_config(selection_cfg)
    options = complete(classification_cfg, "classification")
    index_path = Path(index_path)
    if not index_path.is_file():
        raise InputError(None, str(index_path), "checkpoint index not found (training unfinished?)")
    index = read_json(index_path)
    recorded = {**cfg, **{k: options[k] for k in ("study_probability", "threshold")}}
    if index.get("status") == "failed":
        return (
            {
                **recorded,
                "status": "failed",
                "error": index["error"],
                "scores": [],
                "selected": None,
            },
            None,
            None,
        )
    if not index["checkpoints"]:
        raise InputError(None, str(index_path), "no checkpoints listed")
    images = read_image_set(val, studies)
    scores, tables = [], []
    for entry in index["checkpoints"]:
        model, meta = load_checkpoint(index_path.parent / entry["file"], device, build_classifier)
        probabilities = predict_probabilities(model, images.images, meta, device)
        per_image, per_study, threshold = predict_tables(
            images, probabilities, options["study_probability"], options["threshold"]
        )
        scored = {"study": per_study, "image": per_image}[cfg["level"]]
        value = score(scored, images.classes, cfg["metric"])
        scores.append(
            {
                **{k: entry[k] for k in ("file", "epoch", "step")},
                "score": value,
                "threshold": threshold,
            }
        )
        tables.append((per_image, per_study))
        print(f"{entry['file']}: {cfg['level']} {cfg['metric']} {value:.4f}", flush=True)
    selected = best_entry(scores, cfg["higher_is_better"])
    chosen = tables[scores.index(selected)]
    selection = {
        **recorded,
        "scores": [_json_score(s) for s in scores],
        "selected": _json_score(selected),
    }
    return selection, *chosen


def failed_tables(classes: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Empty per_image and per_study tables with their columns (a failed run's)."""
    empty = ImageSet(
        images=np.zeros((0, 1, 1), np.float32),
        label=np.zeros(0, np.int64),
        **{column: np.zeros(0, dtype=object) for column in TEXT},
        classes=classes,
    )
    per_image, per_study, _ = predict_tables(empty, np.zeros((0, len(classes))), "mean", 0.5)
    return per_image, per_study


def test_model(
    model_id: str,
    members: dict[str, tuple[Path, Path, Path]],
    test: Path,
    reported: str,
    higher_is_better: bool,
    classification_cfg: dict[str, Any],
    device: torch.device,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(per_image, per_study, models.json's content) of the final model `model_id` on the test
    set; `members`: run id → (selection.json, checkpoint index, validation per_study.csv) of its
    runs (its folds in fold order); `reported`: ensemble | best_fold (`final.model`)."""
    options = complete(classification_cfg, "classification")
    selections = {run: read_json(files[0]) for run, files in members.items()}
    if reported == "best_fold" and len(members) > 1:
        used = [best_fold(selections, higher_is_better)]
    else:
        used = list(members)
    checkpoints = [selected_checkpoint(members[run][0], members[run][1]) for run in used]
    images = read_image_set(test)
    probabilities = ensemble_probabilities(checkpoints, images.images, images.classes, device)
    validation = pd.concat(
        [pd.read_csv(members[run][2], dtype={"study_id": str, "patient_id": str}) for run in used],
        ignore_index=True,
    )
    per_image, per_study, threshold = predict_tables(
        images,
        probabilities,
        options["study_probability"],
        options["threshold"],
        threshold_on=validation,
    )
    models = {
        "model": model_id,
        "combined": "single" if len(used) == 1 else "ensemble",
        "runs": used,
        "checkpoints": [str(path) for path in checkpoints],
        "study_probability": options["study_probability"],
        "threshold_rule": options["threshold"],
        "threshold": threshold,
        "threshold_studies": int(len(validation)),
    }
    return per_image, per_study, models


def _select(args: argparse.Namespace) -> None:
    studies = read_json(args.subjects_json)["val"] if args.subjects_json else None
    selection, per_image, per_study = select_checkpoint(
        args.index,
        args.val,
        json.loads(args.config_json),
        json.loads(args.classification_json),
        choose_device(args.device),
        studies,
    )
    if per_image is None:
        per_image, per_study = failed_tables(read_image_set(args.val[0], []).classes)
    write_json(args.out, selection)
    write_csv(per_image, args.per_image)
    write_csv(per_study, args.per_study)


def _test(args: argparse.Namespace) -> None:
    if not len(args.selections) == len(args.indices) == len(args.val_studies) == len(args.runs):
        raise ValueError("--runs, --selections, --indices and --val-studies must pair up")
    members = {
        run: (Path(s), Path(i), Path(v))
        for run, s, i, v in zip(
            args.runs, args.selections, args.indices, args.val_studies, strict=True
        )
    }
    per_image, per_study, models = test_model(
        args.model,
        members,
        args.test,
        args.reported,
        args.higher_is_better == "true",
        json.loads(args.classification_json),
        choose_device(args.device),
    )
    write_csv(per_image, args.per_image)
    write_csv(per_study, args.per_study)
    write_json(args.out_models, models)
    if args.out_gallery:
        classes = read_image_set(args.test, []).classes
        shown = gallery_cases(per_study, per_image, classes, args.gallery)["study_id"]
        images = read_image_set(args.test, sorted(set(shown)))
        gallery_figure({args.model: per_study}, {args.model: per_image}, images, args.gallery,
                       args.out_gallery)  # fmt: skip
    print(f"{args.model}: threshold {models['threshold']:.4f} on {len(per_study)} test studies")


def main(argv: list[str] | None = None) -> None:
    """`classify select` (a run's checkpoints on validation) and `classify test` (a final
    model on the test set)."""
    parser = argparse.ArgumentParser(prog="segsweep classify", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    select = commands.add_parser("select", help="score every checkpoint of a run on validation")
    select.add_argument("--index", type=Path, required=True, help="checkpoints/index.json")
    select.add_argument("--val", type=Path, nargs="+", required=True, help="val.h5 (and train.h5)")
    select.add_argument("--subjects-json", type=Path, help="the run's subjects.json (its studies)")
    select.add_argument("--config-json", default="{}", help="the `selection` config section")
    select.add_argument("--classification-json", default="{}", help="`classification` section")
    select.add_argument("--out", type=Path, required=True, help="selection.json")
    select.add_argument("--per-image", type=Path, required=True, help="val/per_image.csv")
    select.add_argument("--per-study", type=Path, required=True, help="val/per_study.csv")
    test = commands.add_parser("test", help="a final model on the test set")
    test.add_argument("--model", required=True, help="the final model's (configuration's) id")
    test.add_argument("--runs", nargs="+", required=True, help="its runs (folds in fold order)")
    test.add_argument("--selections", type=Path, nargs="+", required=True)
    test.add_argument("--indices", type=Path, nargs="+", required=True)
    test.add_argument(
        "--val-studies",
        type=Path,
        nargs="+",
        required=True,
        help="the runs' val/per_study.csv (the threshold is chosen on them)",
    )
    test.add_argument("--test", type=Path, required=True, help="test.h5")
    test.add_argument("--reported", choices=("ensemble", "best_fold"), default="ensemble")
    test.add_argument("--higher-is-better", choices=("true", "false"), default="true")
    test.add_argument("--classification-json", default="{}", help="`classification` section")
    test.add_argument("--per-image", type=Path, required=True, help="test/per_image.csv")
    test.add_argument("--per-study", type=Path, required=True, help="test/per_study.csv")
    test.add_argument("--out-models", type=Path, required=True, help="models.json")
    test.add_argument("--gallery", type=int, default=4, help="errors of each kind shown")
    test.add_argument("--out-gallery", type=Path, help="gallery.png: the most confident errors")
    for command in (select, test):
        command.add_argument("--threads", type=int, default=None, help="torch CPU threads")
        command.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    {"select": _select, "test": _test}[args.command](args)


if __name__ == "__main__":
    main()
