"""JSON and CSV records, written so a reader never sees half a file, and `NAME=PATH` arguments.

Every JSON record of the workflow (ingest.json, crop.json, selection.json, provenance.json, …) is
written by `write_json`: indented, strict JSON (a NaN is an error, so write missing numbers as
null), through a temporary file renamed into place, its folder created. Tables go through
`write_csv` (no index column).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def write_json(path: str | Path, obj: Any) -> None:
    """`obj` as indented strict JSON with a final newline."""
    text = json.dumps(obj, indent=2, allow_nan=False) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text))


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def write_csv(table: pd.DataFrame, path: str | Path) -> None:
    """A table as CSV without its index, creating the folder."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)


def flags(values: pd.Series) -> pd.Series:
    """Booleans from a CSV column that may hold bools, True/False, true/false, 1/0 or yes/no."""
    if values.dtype == bool:
        return values
    return values.astype(str).str.strip().str.lower().isin({"true", "1", "yes"})


def named_paths(pairs: list[str] | None, option: str = "--file") -> dict[str, str]:
    """`NAME=PATH` arguments (a class and its mask file, a subject and its image) as a dict."""
    named = {}
    for pair in pairs or []:
        name, sep, path = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"{option} expects NAME=PATH, got {pair!r}")
        named[name] = path
    return named
