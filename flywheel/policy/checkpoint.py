"""Checkpoint directories: safetensors + JSON files, a sha256 manifest, atomic publish, verified loads.

Layout: `manifest.json` maps every other file to its sha256; the checkpoint's sha256 is the sha256 of the
manifest bytes, so it pins every file. No pickles anywhere.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from flywheel.errors import FlywheelError
from flywheel.fsutil import fsync_path

MANIFEST = "manifest.json"


class CheckpointError(FlywheelError):
    """A checkpoint is missing, incomplete or fails its checksum."""


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


PARTIAL_MARKS = (".tmp-", ".old-")  # `.<name>.tmp-*` being written, `.<name>.old-*` being replaced


def partial_writes(parent: Path, name_prefix: str) -> list[Path]:
    """Directories a killed `write_checkpoint` left in `parent` for checkpoints named `name_prefix*`."""
    if not parent.is_dir():
        return []
    return [
        path
        for path in parent.iterdir()
        if path.name.startswith(f".{name_prefix}") and any(mark in path.name for mark in PARTIAL_MARKS)
    ]


def write_checkpoint(directory: Path, tensors: dict[str, dict[str, torch.Tensor]], documents: dict[str, Any]) -> str:
    """Write `<name>.safetensors` and `<name>.json` files to `directory` atomically; returns the sha256.

    An existing directory of the same name is replaced only once the new one is complete on disk.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}{PARTIAL_MARKS[0]}{uuid.uuid4().hex[:8]}"
    tmp.mkdir(mode=0o700)  # private to its owner, like the files in it
    try:
        files: dict[str, str] = {}
        for name, tdict in tensors.items():
            path = tmp / f"{name}.safetensors"
            save_file({k: v.detach().cpu().contiguous() for k, v in tdict.items()}, str(path))
            files[path.name] = _file_sha256(path)
        for name, doc in documents.items():
            path = tmp / f"{name}.json"
            path.write_text(json.dumps(doc, indent=2, sort_keys=True))
            files[path.name] = _file_sha256(path)
        manifest = json.dumps({"files": files, "format": 1}, indent=2, sort_keys=True).encode()
        (tmp / MANIFEST).write_bytes(manifest)
        for p in tmp.iterdir():
            p.chmod(0o600)
            fsync_path(p)
        old = None
        if directory.exists():
            old = directory.parent / f".{directory.name}{PARTIAL_MARKS[1]}{uuid.uuid4().hex[:8]}"
            directory.rename(old)
        tmp.rename(directory)
        fsync_path(directory.parent)  # the rename itself is durable before anyone registers the sha256
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return hashlib.sha256(manifest).hexdigest()


def checkpoint_sha256(directory: Path) -> str:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{directory} is not a checkpoint (no {MANIFEST})")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verify_checkpoint(directory: Path, expected_sha256: str | None = None) -> dict[str, str]:
    """Check the manifest (against `expected_sha256` when given) and every file it lists."""
    directory = Path(directory)
    sha = checkpoint_sha256(directory)
    if expected_sha256 is not None and sha != expected_sha256:
        raise CheckpointError(
            f"checkpoint {directory}: sha256 {sha[:12]}… does not match the registered {expected_sha256[:12]}…"
        )
    files: dict[str, str] = json.loads((directory / MANIFEST).read_text())["files"]
    for name, digest in files.items():
        path = directory / name
        if not path.is_file():
            raise CheckpointError(f"checkpoint {directory}: {name} is missing")
        if _file_sha256(path) != digest:
            raise CheckpointError(f"checkpoint {directory}: {name} fails its sha256 (corrupted or modified)")
    return files


def read_tensors(directory: Path, name: str, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    path = Path(directory) / f"{name}.safetensors"
    if not path.is_file():
        raise CheckpointError(f"checkpoint {directory}: {path.name} is missing")
    return load_file(str(path), device=str(device))


def read_document(directory: Path, name: str) -> Any:
    path = Path(directory) / f"{name}.json"
    if not path.is_file():
        raise CheckpointError(f"checkpoint {directory}: {path.name} is missing")
    return json.loads(path.read_text())
