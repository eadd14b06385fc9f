"""A model package on disk: one zip holding `manifest.json` (everything inference needs but the
weights, `segsweep.deploy.manifest`), each fold network's weights as safetensors
(`weights/fold-<i>.safetensors`: tensors only, read without unpickling), the same networks as
ONNX (`onnx/fold-<i>.onnx`) and a README.

`FORMAT` counts incompatible changes of this layout or of the manifest: a package of a newer
format than this segsweep reads is refused with one message, as are a file that is no zip (or a
truncated one), a member whose checksum fails, and a member the manifest lists but the zip lacks.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn

from segsweep.deploy.onnx_export import export_network
from segsweep.errors import InputError

FORMAT = 1
MANIFEST = "manifest.json"
README = "README.md"


def weights_member(fold: int) -> str:
    return f"weights/fold-{fold}.safetensors"


def onnx_member(fold: int) -> str:
    return f"onnx/fold-{fold}.onnx"


def write_archive(
    path: str | Path,
    manifest: dict[str, Any],
    weights: list[dict[str, torch.Tensor]],
    onnx: list[Path],
    readme: str,
) -> Path:
    """Write the package zip (deflated; the manifest first) and return its path; `weights` and
    `onnx` in fold order, as the manifest's networks list them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
        archive.writestr(README, readme)
        for fold, state in enumerate(weights):
            tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
            archive.writestr(weights_member(fold), save_tensors(tensors))
        for fold, file in enumerate(onnx):
            archive.write(file, onnx_member(fold))
    partial.replace(path)
    return path


def write_package(
    path: str | Path,
    manifest: dict[str, Any],
    networks: Sequence[tuple[nn.Module, torch.Tensor]],
    weights: list[dict[str, torch.Tensor]],
    readme: Callable[[dict[str, Any]], str],
) -> Path:
    """Export each network (on the CPU, with its example input) as ONNX, record it under its
    manifest entry's "onnx", and write the package (`write_archive`) with `readme(manifest)`."""
    with tempfile.TemporaryDirectory() as folder:
        exported = []
        for fold, (network, example) in enumerate(networks):
            onnx = Path(folder) / f"fold-{fold}.onnx"
            entry = export_network(network, example, onnx)
            manifest["networks"][fold]["onnx"] = {**entry, "file": onnx_member(fold)}
            exported.append(onnx)
        return write_archive(path, manifest, weights, exported, readme(manifest))


@dataclass(frozen=True)
class Archive:
    """An opened, checked package: its manifest, and its members read on demand."""

    path: Path
    manifest: dict[str, Any]

    def read(self, member: str) -> bytes:
        with zipfile.ZipFile(self.path) as archive:
            return archive.read(member)

    def weights(self, fold: int) -> dict[str, torch.Tensor]:
        """One fold network's state dict, on the CPU."""
        return load_tensors(self.read(weights_member(fold)))


def open_archive(path: str | Path) -> Archive:
    """The package at `path`, checked: a zip whose members pass their checksums, with a
    manifest of a format this segsweep reads and every member it lists."""
    path = Path(path)
    if not path.is_file():
        raise InputError(None, str(path), "model package not found")
    try:
        with zipfile.ZipFile(path) as archive:
            try:
                bad = archive.testzip()
            except zlib.error as err:  # a deflated member that does not inflate
                raise InputError(None, str(path), f"a member is corrupt ({err})") from err
            if bad is not None:
                raise InputError(None, str(path), f"member {bad} is corrupt (checksum fails)")
            names = set(archive.namelist())
            if MANIFEST not in names:
                raise InputError(None, str(path), f"no {MANIFEST}: not a segsweep model package")
            manifest = json.loads(archive.read(MANIFEST))
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        reason = f"not a readable zip, or truncated ({err})"
        raise InputError(None, str(path), f"model package is {reason}") from err
    found = manifest.get("format")
    if not isinstance(found, int) or found > FORMAT:
        raise InputError(
            None,
            str(path),
            f"package format {found!r} is newer than this segsweep reads (format {FORMAT}): "
            "install the segsweep version named in its manifest",
        )
    missing = [m for m in listed_members(manifest) if m not in names]
    if missing:
        raise InputError(None, str(path), f"the package lacks {', '.join(missing)}")
    return Archive(path, manifest)


def listed_members(manifest: dict[str, Any]) -> list[str]:
    """The members the manifest says the package holds: the README and each network's files."""
    members = [README]
    for network in manifest.get("networks", []):
        members += [network["weights"], *([network["onnx"]["file"]] if network.get("onnx") else [])]
    return members
