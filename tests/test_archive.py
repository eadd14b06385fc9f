"""A model package's zip: what it holds, and one clear error for what cannot be read."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest
import torch

from segsweep.deploy.archive import (
    FORMAT,
    MANIFEST,
    open_archive,
    weights_member,
    write_archive,
)
from segsweep.deploy.index import write_index
from segsweep.errors import InputError


def _package(path: Path, fmt: int = FORMAT) -> Path:
    weights = [{"conv.weight": torch.arange(6.0).reshape(2, 3), "conv.bias": torch.ones(2)}]
    onnx = path.parent / "fold-0.onnx"
    onnx.write_bytes(b"onnx bytes")
    manifest = {
        "format": fmt,
        "networks": [{"weights": weights_member(0), "onnx": {"file": "onnx/fold-0.onnx"}}],
    }
    return write_archive(path, manifest, weights, [onnx], "# readme\n")


def test_a_package_round_trips_its_manifest_and_weights_without_unpickling(tmp_path: Path):
    path = _package(tmp_path / "model.zip")
    archive = open_archive(path)
    assert archive.manifest["format"] == FORMAT
    weights = archive.weights(0)
    assert torch.equal(weights["conv.weight"], torch.arange(6.0).reshape(2, 3))
    with zipfile.ZipFile(path) as members:
        assert members.namelist()[0] == MANIFEST
        assert not any(name.endswith((".pt", ".pkl")) for name in members.namelist())
    assert archive.read("onnx/fold-0.onnx") == b"onnx bytes"
    assert not (tmp_path / "model.zip.partial").exists()


def test_a_newer_format_is_refused_naming_both_formats(tmp_path: Path):
    path = _package(tmp_path / "model.zip", FORMAT + 1)
    with pytest.raises(InputError, match=rf"format {FORMAT + 1} is newer .*format {FORMAT}\)"):
        open_archive(path)


def test_a_truncated_zip_is_one_clear_error(tmp_path: Path):
    path = _package(tmp_path / "model.zip")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="model.zip: model package is not a readable zip"):
        open_archive(path)


def test_a_corrupt_member_is_named(tmp_path: Path):
    path = _package(tmp_path / "model.zip")
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(weights_member(0))
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + 5] ^= 0xFF  # a byte of the deflated weights
    path.write_bytes(bytes(data))
    corrupt = f"member {weights_member(0)} is corrupt|a member is corrupt"
    with pytest.raises(InputError, match=corrupt):
        open_archive(path)


def test_a_missing_member_or_manifest_is_named(tmp_path: Path):
    path = _package(tmp_path / "model.zip")
    stripped = tmp_path / "stripped.zip"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(stripped, "w") as target:
        for name in source.namelist():
            if name != "onnx/fold-0.onnx":
                target.writestr(name, source.read(name))
    with pytest.raises(InputError, match="the package lacks onnx/fold-0.onnx"):
        open_archive(stripped)
    bare = tmp_path / "bare.zip"
    with zipfile.ZipFile(bare, "w") as target:
        target.writestr("README.md", "")
    with pytest.raises(InputError, match="no manifest.json: not a segsweep model package"):
        open_archive(bare)
    with pytest.raises(InputError, match="model package not found"):
        open_archive(tmp_path / "absent.zip")


def test_the_index_lists_each_package_with_its_checksum(tmp_path: Path):
    path = _package(tmp_path / "model.zip")
    entries = write_index({"cfg-a": path}, tmp_path / "index.json")
    assert json.loads((tmp_path / "index.json").read_text()) == {"packages": entries}
    assert entries == [
        {
            "configuration": "cfg-a",
            "file": "model.zip",
            "bytes": path.stat().st_size,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        }
    ]
