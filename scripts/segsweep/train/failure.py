"""The record a run leaves when its last training attempt fails, in place of its outputs, so that
selection, evaluation, analysis and the report proceed and list the run as failed instead of
waiting for it: checkpoints/index.json says `{"status": "failed", "error": …, "attempts": n}`
with no checkpoints, beside params.yaml and the training log so far (or its header).
"""

from __future__ import annotations

from typing import Any

import yaml

from segsweep.io.records import write_json
from segsweep.model.classifiers import CLASSIFIERS
from segsweep.train import classify
from segsweep.train.loop import LOG_COLUMNS, RunFiles


def error_line(error: BaseException) -> str:
    """The exception's type and the last line of its message, short enough for a table cell."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[-1].strip()}" if lines else type(error).__name__


def write_failure(
    files: RunFiles,
    hp: dict[str, Any],
    error: BaseException,
    attempt: int,
    subjects: dict[str, list[str]] | None = None,
) -> None:
    """The outputs of a run whose last attempt failed, as a record of the failure; the training
    log and subjects.json are kept when the run wrote them before failing (else the subjects
    it was given, or none)."""
    for folder in (files.index.parent, files.params.parent, files.log.parent):
        folder.mkdir(parents=True, exist_ok=True)
    files.params.write_text(yaml.safe_dump(hp, sort_keys=True))
    if not files.log.is_file():
        columns = classify.LOG_COLUMNS if hp.get("model") in CLASSIFIERS else LOG_COLUMNS
        files.log.write_text(",".join(columns) + "\n")
    if not files.subjects.is_file():
        write_json(files.subjects, subjects or {"train": [], "val": []})
    index = {
        "status": "failed",
        "error": error_line(error),
        "attempts": attempt,
        "checkpoints": [],
        "classes": [],
        "label_mode": "classification" if hp.get("model") in CLASSIFIERS else hp.get("labels"),
    }
    write_json(files.index, index)
