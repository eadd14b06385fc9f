"""The bring-your-own manifest (`data.source: manifest`), read at DAG parse time: cheap,
standard library only.

A CSV with at least `subject_id` and `image`; optional `mask` (one label map), `mask_<class>`
(one binary mask file per class of `data.labels`), `roi`, `source`, `perspective` and any other
columns (kept for stratification and tables). Several image columns make a multi-channel subject
(`data.channels`, e.g. [pet, ct]). Paths are relative to the CSV's folder. Problems of the table
itself (a missing column, an empty id) stop the workflow at once: they are not one subject's
fault. A duplicated id is one subject's problem: it is returned with the others, for
`segsweep validate` to list (and `data.on_invalid: skip` to drop all its rows).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from segsweep.errors import InputError

KNOWN = {"subject_id", "image", "mask", "roi", "source", "perspective"}


def _resolve(value: str, folder: Path) -> str:
    value = (value or "").strip()
    if not value:
        return ""
    return value if Path(value).is_absolute() else str(folder / value)


def read_manifest(
    path: str | Path, labels: dict[str, int], channels: list[str] | None = None
) -> tuple[dict[str, dict[str, Any]], list[tuple[str, str, str]]]:
    """(subject_id → images (one path per channel), mask, class_masks, roi, source,
    perspective, labelled and the remaining columns (`extra`), in manifest order; the
    problems (subject, file, problem) of subjects left out).

    A duplicated id leaves out every row of it, each a problem naming its lines; so does an
    empty image cell and a row with both `mask` and `mask_<class>` files. Raises InputError
    naming the manifest for a missing file or column and an empty subject id.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(None, str(path), "manifest not found")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    channels = list(channels or ["image"])
    for column in ["subject_id", *channels]:
        if column not in columns:
            raise InputError(
                None,
                str(path),
                f"manifest lacks required column '{column}' (columns: {', '.join(columns)})",
            )
    class_columns = {f"mask_{name}": name for name in labels}
    table: dict[str, dict[str, Any]] = {}
    problems: list[tuple[str, str, str]] = []
    lines: dict[str, list[int]] = {}
    for line, row in enumerate(rows, start=2):
        sid = row.get("subject_id", "")
        if not sid:
            raise InputError(None, str(path), f"line {line}: empty subject_id")
        lines.setdefault(sid, []).append(line)
        empty = [c for c in channels if not row.get(c)]
        if empty:
            problems.append((sid, str(path), f"line {line}: no image in column '{empty[0]}'"))
            continue
        class_masks = {
            name: _resolve(row[col], path.parent)
            for col, name in class_columns.items()
            if row.get(col)
        }
        if class_masks and row.get("mask"):
            problems.append(
                (sid, str(path), f"line {line}: give either 'mask' or mask_<class> files, not both")
            )
            continue
        mask = _resolve(row.get("mask", ""), path.parent)
        table[sid] = {
            "image": _resolve(row[channels[0]], path.parent),
            "images": [_resolve(row[c], path.parent) for c in channels],
            "mask": mask,
            "class_masks": class_masks,
            "roi": _resolve(row.get("roi", ""), path.parent),
            "source": row.get("source", ""),
            "perspective": row.get("perspective", ""),
            "labelled": bool(mask or class_masks),
            "extra": {
                k: v
                for k, v in row.items()
                if k not in KNOWN and k not in class_columns and k not in channels
            },
        }
    for sid, found in lines.items():
        if len(found) > 1:
            table.pop(sid, None)
            where = ", ".join(map(str, found))
            problems.append((sid, str(path), f"duplicate subject id (lines {where})"))
    return table, problems
