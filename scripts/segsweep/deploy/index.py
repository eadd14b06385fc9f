"""results/package/index.json: the final models' packages with their sizes and checksums. Kept
apart from the package format (`segsweep.deploy.archive`) so that listing zips imports no torch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from segsweep.io.records import write_json


def write_index(packages: Mapping[str, str | Path], out: str | Path) -> list[dict[str, Any]]:
    """index.json: each final model's package, its size and sha256."""
    entries = []
    for configuration, path in packages.items():
        data = Path(path).read_bytes()
        entries.append(
            {
                "configuration": configuration,
                "file": Path(path).name,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    write_json(out, {"packages": entries})
    return entries
