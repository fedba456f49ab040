"""Durability helpers shared by everything that writes files atomically."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (a directory fsync makes a rename inside it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
