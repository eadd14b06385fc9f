"""`segsweep package` for the classification task: a final classifier as one self-contained zip
(`segsweep.deploy.archive`: manifest, safetensors weights, ONNX networks, README), written from
the workflow's own files — the final model's models.json (`layout.FINAL_THRESHOLD`: the runs it
used, their checkpoints, the study rule and the decision threshold chosen on validation), each
run's selection.json and checkpoint index (which checkpoint it selected), and its
provenance.json (the config hash). Nothing is predicted here: the threshold is the one the
workflow chose and tested with.

The manifest (`classification_manifest`): `format`, `segsweep_version`, `task`
("classification"), `configuration` (the final model's id), `runs` (the runs it combines, in
fold order: one under `final.model: best_fold`), `config_hash`; `classes` (class order: output
index i, the last one positive); `preparation` (how a radiograph becomes a network's input,
`segsweep.preprocess.images.prepared`: grey, fitted into S × S, z-scored; then resized to each
network's `input_size`); `study` (a study's probability: the mean or max of its images');
`threshold` (its value, the rule that chose it, on how many validation studies); `ensemble`
(the mean of the networks' softmax probabilities, as `segsweep.evaluate.probabilities.
ensemble_probabilities`); `networks` (per run: its checkpoint's metadata, the selected
checkpoint, the weight member and the ONNX record).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

import segsweep
from segsweep import layout
from segsweep.deploy.archive import FORMAT, weights_member, write_package
from segsweep.deploy.onnx_export import OPSET
from segsweep.errors import InputError
from segsweep.evaluate.predictions import HOW
from segsweep.io.records import read_json
from segsweep.model.checkpoints import model_from, selected_checkpoint
from segsweep.model.classifiers import build_classifier
from segsweep.tasks import task_of

TASK = "classification"
# what a classifier needs to be rebuilt and fed (`model_from`, `predict_probabilities`)
NETWORK_KEYS = (
    "hp",
    "in_channels",
    "out_channels",
    "classes",
    "label_mode",
    "task",
    "size",
    "input_size",
    "epoch",
    "step",
)
PREPARATION = (
    "each image read as one grey channel (the mean of R, G and B; alpha ignored), resized "
    "keeping its aspect ratio so that its longer side is `size` pixels (linear interpolation, "
    "Gaussian-smoothed first when shrinking), padded to size × size with its own minimum, "
    "centred, z-scored over its pixels (a constant image gives zeros), then resized to each "
    "network's `input_size` (bilinear, align_corners=False, antialiased when shrinking; "
    "nothing when equal)"
)
STUDY = {
    "mean": "a study's probability of the positive class is the mean of its images' (the MURA "
    "baseline)",
    "max": "a study's probability of the positive class is the max of its images' (one abnormal "
    "image makes its study abnormal)",
}
ENSEMBLE = (
    "the mean of the networks' softmax probabilities (float64), one network per fold run; one "
    "network: its softmax"
)


def _finite(value: Any) -> float | None:
    """A threshold for JSON: None where there is none (NaN: more than two classes)."""
    return None if value is None or not math.isfinite(float(value)) else float(value)


def classification_manifest(
    configuration: str,
    models: Mapping[str, Any],
    checkpoints: Mapping[str, dict[str, Any]],
    selected: Mapping[str, dict[str, Any]],
    config_hash: str | None,
) -> dict[str, Any]:
    """The manifest of a final classifier (without its ONNX entries, which packaging adds):
    `models` is its models.json, `checkpoints` maps each run it used (in its order) to its
    selected checkpoint's metadata, `selected` to selection.json's `selected` entry."""
    metas = list(checkpoints.values())
    classes = list(metas[0]["classes"])
    for run, meta in checkpoints.items():
        if meta.get("task") != TASK:
            raise InputError(run, None, "its checkpoint is not a classifier's")
        if list(meta["classes"]) != classes:
            raise InputError(configuration, None, "its networks predict different classes")
    sizes = {int(meta["size"]) for meta in metas}
    if len(sizes) > 1:
        raise InputError(configuration, None, f"its networks take images of sizes {sizes}")
    how = models["study_probability"]
    if how not in HOW:
        raise InputError(configuration, None, f"study_probability {how!r} not in {HOW}")
    rule = models["threshold_rule"]
    threshold = _finite(models["threshold"]) if len(classes) == 2 else None
    return {
        "format": FORMAT,
        "segsweep_version": segsweep.__version__,
        "task": TASK,
        "configuration": configuration,
        "runs": list(checkpoints),
        "config_hash": config_hash,
        "classes": classes,
        "positive": classes[-1],
        "preparation": {
            "size": sizes.pop(),
            "input_size": sorted({int(meta["input_size"]) for meta in metas}),
            "channels": 1,
            "text": PREPARATION,
        },
        "study": {"probability": how, "text": STUDY[how]},
        "threshold": {
            "value": threshold,
            "rule": rule,
            "studies": models.get("threshold_studies"),
            "text": (
                f"{classes[-1]} iff p_{classes[-1]} >= value, for studies and images alike; "
                + (
                    f"chosen by {rule} on the pooled validation studies of the runs (each "
                    "study scored by the run that did not train on it)"
                    if isinstance(rule, str)
                    else "fixed by the configuration (classification.threshold)"
                )
                if len(classes) == 2
                else "more than two classes: the most probable class, no threshold"
            ),
        },
        "ensemble": {
            "rule": "mean" if len(metas) > 1 else "single",
            "combined": models.get("combined"),
            "text": ENSEMBLE,
        },
        "networks": [
            {
                "run_id": run,
                **{key: meta.get(key) for key in NETWORK_KEYS},
                "checkpoint": dict(selected[run]),
                "weights": weights_member(fold),
            }
            for fold, (run, meta) in enumerate(checkpoints.items())
        ],
    }


def build_classification_package(
    out: str | Path,
    configuration: str,
    models: Mapping[str, Any],
    members: Mapping[str, tuple[str | Path, str | Path]],
    config_hash: str | None = None,
) -> dict[str, Any]:
    """Write the package of the final classifier `configuration` and return its manifest:
    `models` is its models.json, `members` maps its runs (at least those models.json lists) to
    (selection.json, checkpoints/index.json). The networks are those of models.json's runs, in
    its order, each at the checkpoint its selection chose (models.json's checkpoints)."""
    runs = list(models["runs"])
    missing = [run for run in runs if run not in members]
    if missing:
        raise InputError(configuration, None, f"no selection or index given for {missing}")
    recorded = [Path(path).name for path in models.get("checkpoints", [])]
    loaded, selected = {}, {}
    for position, run in enumerate(runs):
        selection, index = members[run]
        chosen = read_json(selection).get("selected")
        if not chosen:
            raise InputError(run, str(selection), "the run failed: no checkpoint selected")
        path = selected_checkpoint(Path(selection), Path(index))
        if recorded and recorded[position] != path.name:
            raise InputError(
                run,
                str(selection),
                f"selects {path.name}, the final model's models.json {recorded[position]}",
            )
        loaded[run] = torch.load(path, map_location="cpu", weights_only=True)
        selected[run] = chosen
    metas = {run: {k: v for k, v in c.items() if k != "model"} for run, c in loaded.items()}
    manifest = classification_manifest(configuration, models, metas, selected, config_hash)
    networks = []
    for run in loaded:
        side = int(metas[run]["input_size"])
        networks.append(
            (
                model_from(metas[run], loaded[run]["model"], "cpu", build_classifier),
                torch.zeros(2, int(metas[run]["in_channels"]), side, side),
            )
        )
    write_package(out, manifest, networks, [loaded[run]["model"] for run in loaded], package_readme)
    return manifest


README_SNIPPET = """\
## Running the model without segsweep

`onnx/` holds one ONNX network (opset OPSET) per fold, listed in `manifest.json`'s `networks`:
input `image`, float32 [B, 1, S, S] (S: the network's `input_size`), output `logits` [B, K].
Preparing the images (`preparation` in the manifest) is yours, unless you use
`segsweep predict`.

```python
import json, zipfile, numpy as np, onnxruntime as ort

zipfile.ZipFile("model.zip").extractall("model")
manifest = json.load(open("model/manifest.json"))
mean = 0
for network in manifest["networks"]:  # one per fold (onnx/fold-0.onnx, ...): average softmax
    onnx_file = f"model/{network['onnx']['file']}"
    session = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"image": x})[0]  # x: your prepared [B, 1, S, S] images
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    mean = mean + p / p.sum(axis=1, keepdims=True) / len(manifest["networks"])
how = manifest["study"]["probability"]  # the images of one study: their mean or max
study = float(getattr(np, how)(mean[:, -1]))  # p of the positive (last) class
abnormal = study >= manifest["threshold"]["value"]  # two classes; else argmax of the mean
```
"""


def package_readme(manifest: dict[str, Any]) -> str:
    """The package's own README: what it holds and how to run it, with or without segsweep."""
    threshold = manifest["threshold"]
    preparation = manifest["preparation"]
    decision = (
        f"a study is {manifest['positive']} when its probability is at least "
        f"{threshold['value']:.6g} ({threshold['text']}; {threshold['studies']} studies)"
        if threshold["value"] is not None
        else threshold["text"]
    )
    return "\n".join(
        [
            f"# segsweep model package: {manifest['configuration']}",
            "",
            f"Classification of radiographs into {', '.join(manifest['classes'])} per image and "
            f"per study, by {len(manifest['networks'])} network(s) "
            f"({', '.join(manifest['runs'])}): {manifest['ensemble']['text']}. "
            f"{manifest['study']['text'].capitalize()}; {decision}. Made by segsweep "
            f"{manifest['segsweep_version']} (package format {manifest['format']}, config hash "
            f"{manifest['config_hash']}).",
            "",
            "## Predict with segsweep",
            "",
            "    pip install segsweep",
            "    segsweep predict --model THIS.zip --input images/ --output predictions/",
            "",
            "Inputs: image files (PNG, JPEG, DICOM, 2D NIfTI/MHA, …), each its own study; "
            "folders of them; or a manifest CSV with columns image, study_id, patient_id "
            "(optional: label, study_type, image_id; paths relative to the CSV) grouping "
            "images into studies. Outputs: per_image.csv and per_study.csv with p_<class> for "
            "every class and the predicted class at the packaged threshold.",
            "",
            f"Preparation: {PREPARATION.replace('`size`', str(preparation['size']))} "
            f"({', '.join(map(str, preparation['input_size']))}).",
            "",
            README_SNIPPET.replace("OPSET", str(OPSET)),
        ]
    )


# -- segsweep package --task classification ---------------------------------------------------


def requested(argv: list[str] | None) -> bool:
    """Whether `segsweep package` is asked for a classification model: `--task`, else the
    `task` a `--config` file names, else the final model's models.json under `--results` (a
    classifier's records its threshold rule)."""
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--task")
    probe.add_argument("--config", type=Path)
    probe.add_argument("--run")
    probe.add_argument("--results", type=Path, default=Path(layout.RESULTS))
    probe.add_argument("--models-json", type=Path)
    args = probe.parse_known_args(argv)[0]
    if args.task:
        return args.task == TASK
    if args.config is not None and args.config.is_file():
        config = yaml.safe_load(args.config.read_text()) or {}
        if config.get("task"):
            return task_of(config).name == TASK
    if args.models_json is not None:
        return True  # only the classification path takes it
    if args.run:
        models = layout.under(args.results, layout.FINAL_THRESHOLD, run=args.run)
        return models.is_file() and "threshold_rule" in read_json(models)
    return False


def main(argv: list[str] | None = None) -> None:
    """Package a final classifier of a finished workflow (`--run`, a configuration id)."""
    parser = argparse.ArgumentParser(prog="segsweep package", description=main.__doc__)
    parser.add_argument("--task", choices=(TASK,), default=TASK)
    parser.add_argument("--run", required=True, help="the final model's configuration id")
    parser.add_argument("--results", type=Path, default=Path(layout.RESULTS))
    parser.add_argument("--config", type=Path, help="the config it ran with (only its task)")
    parser.add_argument(
        "--models-json", type=Path, help="its models.json (default: under --results)"
    )
    parser.add_argument("--runs", nargs="*", help="its runs (default: models.json's)")
    parser.add_argument("--selections", type=Path, nargs="*", help="their selection.json")
    parser.add_argument("--indices", type=Path, nargs="*", help="their checkpoints/index.json")
    parser.add_argument("--provenance", type=Path, nargs="*", help="their provenance.json")
    parser.add_argument("--out", required=True, type=Path, help="the package zip")
    args = parser.parse_args(argv)

    def under(pattern: str, **wildcards: str) -> Path:
        return layout.under(args.results, pattern, **wildcards)

    models = read_json(args.models_json or under(layout.FINAL_THRESHOLD, run=args.run))
    runs = args.runs or list(models["runs"])
    selections = args.selections or [under(layout.SELECTION, run=r) for r in runs]
    indices = args.indices or [under(layout.RUN_INDEX, run=r) for r in runs]
    provenance = args.provenance or [under(layout.RUN_PROVENANCE, run=r) for r in runs]
    if not len(runs) == len(selections) == len(indices) == len(provenance):
        parser.error("--runs, --selections, --indices and --provenance must pair up")
    members = dict(zip(runs, zip(selections, indices, strict=True), strict=True))
    hashes = {
        run: read_json(path).get("config_hash") if Path(path).is_file() else None
        for run, path in zip(runs, provenance, strict=True)
    }
    used = {hashes[run] for run in models["runs"] if run in hashes}
    if len(used) > 1:
        raise InputError(args.run, None, f"its runs were trained under different configs {used}")
    build_classification_package(args.out, args.run, models, members, used.pop() if used else None)
    print(f"wrote {args.out}")
