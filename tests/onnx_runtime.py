"""ONNX networks run by onnxruntime (a test dependency: segsweep exports ONNX, it never runs it),
to check a package's ONNX members against PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime


def run_onnx(path: Path, image: np.ndarray) -> np.ndarray:
    """The logits of the ONNX network at `path` on `image` (its "image" input, as float32), run
    by onnxruntime on the CPU."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    feed = {name: np.ascontiguousarray(image, dtype=np.float32)}
    return session.run(None, feed)[0]
