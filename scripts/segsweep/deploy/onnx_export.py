"""A final model's fold networks as ONNX files, so a model package runs without segsweep.

Each fold network is written as the module the predictor really runs (`load_checkpoint`'s
model: the run's `InputLayer` included when it has one), at ONNX opset 18 (`OPSET`), with one
input `image` and one output `logits`, float32, the first axis dynamic:

- a segmentation network takes the normalised packed channels, channel-first, as the predictor
  feeds them: slices [n, c, H, W] → logits [n, K, H, W] (argmax over K: the class index,
  softmax: the probabilities; H and W as the run was trained, divisible by 2**(depth - 1));
- a 3D run (`unet3d`, behind `VolumeSlices`) is exported in the same 2D layout, not as its bare
  3D network: n must be a multiple of the depth Z of its training volumes (recorded as
  `volume_slices`), every Z consecutive slices one volume in z order; the network reshapes them
  into n / Z volumes itself, so a user feeds a 3D run exactly as a 2D one (the exporter keeps
  the slices axis dynamic as Z · volumes);
- a classifier takes images [B, C, S, S] (S its `input_size`) → logits [B, K].

The current exporter (`torch.onnx.export(..., dynamo=True)`, `torch.export` underneath) handles
every network segsweep builds (U-Nets 2D and 3D, dual heads, per-class models, input layers,
the torchvision classifiers), so there is no TorchScript fallback. The file holds its weights
(no external data file beside it).

Exporting needs `onnx` and `onnxscript`; `run_onnx` (tests, checks) needs `onnxruntime`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segsweep.io.records import write_atomic
from segsweep.model.checkpoints import Ensemble, VolumeSlices

OPSET = 18
INPUT = "image"
OUTPUT = "logits"


def _volume_slices(model: nn.Module) -> int | None:
    """The depth of the volumes a model takes in the 2D layout, None for one that takes slices
    (or images) one by one."""
    if isinstance(model, VolumeSlices | Ensemble) and getattr(model, "slices", None):
        return int(model.slices)
    return None


def export_network(model: nn.Module, example: torch.Tensor, path: Path) -> dict[str, Any]:
    """Write `model` (a copy of it, in eval mode, on the CPU) as ONNX at opset `OPSET` with input
    "image" and output "logits", the first axis dynamic (batch / slices), to `path` (atomically,
    one self-contained file); return what the package manifest records about it:
    {"file": path's name, "opset": OPSET, "input": "image", "output": "logits",
    "input_shape": [null, c, H, W] (the dynamic axis as null), "dynamic_axis": 0}, and for a 3D
    run (`VolumeSlices`) "volume_slices": Z, the depth of its volumes (the first axis a multiple
    of it). `example` is an input of the model's shape (any number along the first axis: whole
    volumes for a 3D run); only its shape counts.
    """
    path = Path(path)
    net = copy.deepcopy(model).cpu().eval()
    slices = _volume_slices(net)
    unit = slices or 1
    example = example.detach().to("cpu", torch.float32)
    if example.shape[0] == 0 or example.shape[0] % unit:
        raise ValueError(
            f"example of {example.shape[0]} slices along its first axis: the model takes "
            f"whole volumes of {unit} slices"
        )
    # torch.export specialises a dimension traced at size 1: trace at least two units
    if example.shape[0] < 2 * unit:
        example = torch.cat([example[:unit], example[:unit]])
    units = torch.export.Dim("volumes" if slices else "batch", min=1)
    first = units * unit if slices else units

    def write(tmp: Path) -> None:
        torch.onnx.export(
            net,
            (example,),
            str(tmp),
            dynamo=True,
            opset_version=OPSET,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_shapes=({0: first},),
            external_data=False,
            verbose=False,
        )

    with torch.no_grad():
        write_atomic(path, write)
    record: dict[str, Any] = {
        "file": path.name,
        "opset": OPSET,
        "input": INPUT,
        "output": OUTPUT,
        "input_shape": [None, *example.shape[1:]],
        "dynamic_axis": 0,
    }
    if slices:
        record["volume_slices"] = slices
    return record


README_SNIPPET = """\
## Running the model without segsweep

`onnx/` holds one ONNX network (opset OPSET) per fold, listed in `manifest.json`'s `networks`.
Input `image`: float32 [n, c, H, W] slices, channel-first (a classifier: images [B, C, S, S];
with `volume_slices` Z in its entry, n is a multiple of Z, every Z slices one volume in z
order); output `logits` [n, K, H, W] ([B, K]). Cropping and resampling a scan to the model's
grid are yours, unless you use `segsweep predict`.

```python
import json, zipfile, numpy as np, onnxruntime as ort

zipfile.ZipFile("model.zip").extractall("model")
manifest = json.load(open("model/manifest.json"))
norm = manifest["normalisation"]  # per channel: normalised = (x - shift) / scale
shift, scale = (np.reshape(norm[key], (1, -1, 1, 1)) for key in ("shift", "scale"))
x = ((image - shift) / scale).astype(np.float32)  # image: your [n, c, H, W] slices
mean = 0
for network in manifest["networks"]:  # one per fold (onnx/fold-0.onnx, ...): average softmax
    onnx_file = f"model/{network['onnx']['file']}"
    session = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"image": x})[0]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    mean = mean + p / p.sum(axis=1, keepdims=True) / len(manifest["networks"])
labels = np.asarray(manifest["label_values"])[mean.argmax(axis=1)]  # class i: label_values[i]
```
"""


def readme_snippet() -> str:
    """A Markdown section for a model package's README: how to run its fold networks with
    onnxruntime alone (normalise, average the folds' softmax, argmax, map to label values)."""
    return README_SNIPPET.replace("OPSET", str(OPSET))
