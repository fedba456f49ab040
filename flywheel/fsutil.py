"""Durability helpers shared by everything that writes files atomically."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

PRIVATE_FILE_MODE = 0o600


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (a directory fsync makes a rename inside it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file and directory under `root`, itself included, so renaming `root` into place later
    publishes complete files even across a power loss."""

    def unreadable(error: OSError) -> None:
        raise error

    for folder, _, files in os.walk(root, onerror=unreadable):
        for name in files:
            fsync_path(Path(folder) / name)
        fsync_path(Path(folder))


def make_private_dir(path: Path) -> None:
    """Create `path` (and missing parents) readable by its owner only; an existing directory is left as it is."""
    path = Path(path)
    if path.is_dir():
        return
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)


def touch_private(path: Path) -> None:
    """Create an empty file readable by its owner only, unless it exists (SQLite then keeps its mode and gives
    its -wal/-shm files the same one)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))


def write_new_private(path: Path, data: bytes) -> None:
    """Create `path` (readable by its owner only) holding `data`, synced to disk; `FileExistsError` if it exists."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE), "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_private_atomic(path: Path, data: bytes, temp: Path | None = None) -> None:
    """Write a file atomically (a fsynced temp file renamed into place), readable by its owner only."""
    temp = temp or path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write_new_private(temp, data)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
