"""The record a run leaves when its last training attempt fails, in place of its outputs, so that
selection, evaluation, analysis and the report proceed and list the run as failed instead of
waiting for it: checkpoints/index.json says `{"status": "failed", "error": …, "attempts": n}`
with no checkpoints, beside params.yaml and the training log so far (or its header).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from segsweep.io.records import write_json
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
    log_columns: Sequence[str] = LOG_COLUMNS,
    label_mode: Any = None,
) -> None:
    """The outputs of a run whose last attempt failed, as a record of the failure; the training
    log (else the header `log_columns`, the run's task's) and subjects.json are kept when the
    run wrote them before failing (else the subjects it was given, or none); `label_mode` is
    the one the caller hands, by default the run's `labels`."""
    for folder in (files.index.parent, files.params.parent, files.log.parent):
        folder.mkdir(parents=True, exist_ok=True)
    files.params.write_text(yaml.safe_dump(hp, sort_keys=True))
    if not files.log.is_file():
        files.log.write_text(",".join(log_columns) + "\n")
    if not files.subjects.is_file():
        write_json(files.subjects, subjects or {"train": [], "val": []})
    index = {
        "status": "failed",
        "error": error_line(error),
        "attempts": attempt,
        "checkpoints": [],
        "classes": [],
        "label_mode": hp.get("labels") if label_mode is None else label_mode,
    }
    write_json(files.index, index)
