"""Which torch device a job computes on.

A GPU job sees the GPUs its scheduler left visible: CUDA_VISIBLE_DEVICES is used as given (never
rewritten here), so "cuda" means the first visible device.
"""

from __future__ import annotations

import torch

CHOICES = ("auto", "cpu", "cuda")


def choose_device(preferred: str = "auto") -> torch.device:
    """ "auto": the first visible GPU if there is one, else the CPU; "cpu"; "cuda" or "cuda:N"
    (an error when no GPU is visible, rather than a silent, slow fallback)."""
    if preferred == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preferred == "cpu":
        return torch.device("cpu")
    if preferred == "cuda" or preferred.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {preferred!r} requested but no CUDA device is visible")
        return torch.device(preferred)
    raise ValueError(f"unknown device {preferred!r}; choose one of {', '.join(CHOICES)} or cuda:N")
