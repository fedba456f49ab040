"""Immutable episode files: safetensors (no pickle, zero-copy mmap reads), written atomically, sha256-checked.

Layout under the episodes root: `<2 hex>/<32 hex>.safetensors`. Writes go to a hidden temp file in the
same directory, are fsynced, then renamed into place (and the directory fsynced), so a reader sees either
the whole file or nothing. A file without a row (a write that died before its commit) is removed by `gc`.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors

from flywheel.errors import EpisodeFileError
from flywheel.fsutil import fsync_path
from flywheel.store.frames import EpisodeFrames

SUFFIX = ".safetensors"
TEMP_PREFIX = ".tmp-"
FORMAT_VERSION = "1"
IMAGE_PREFIX = "image/"
_SAFETENSORS_DTYPES = {
    "F32": "<f4",
    "F64": "<f8",
    "F16": "<f2",
    "U8": "u1",
    "I8": "i1",
    "I32": "<i4",
    "I64": "<i8",
    "BOOL": "?",
}


@dataclass(frozen=True)
class WrittenFile:
    uri: str
    sha256: str
    bytes: int


def encode_frames(frames: EpisodeFrames) -> bytes:
    """Serialise frames to safetensors bytes (deterministic for identical frames)."""
    tensors = {
        "state": frames.state,
        "action": frames.action,
        "policy_action": frames.policy_action,
        "policy_action_valid": frames.policy_action_valid.astype(np.uint8),
        "reward": frames.reward,
        "controller": frames.controller,
    }
    for camera, images in frames.images.items():
        tensors[IMAGE_PREFIX + camera] = images
    metadata = {
        "format": "flywheel-episode",
        "version": FORMAT_VERSION,
        "cameras": json.dumps(sorted(frames.images)),
    }
    return save_safetensors(tensors, metadata=metadata)


def decode_frames(blob: bytes, name: str = "episode file") -> EpisodeFrames:
    try:
        tensors = load_safetensors(blob)
    except (SafetensorError, ValueError) as exc:
        raise EpisodeFileError(f"{name} is not a readable episode file: {exc}") from None
    return _frames_from_tensors(tensors, name)


def _frames_from_tensors(tensors: dict[str, np.ndarray], name: str) -> EpisodeFrames:
    try:
        return EpisodeFrames(
            state=tensors["state"],
            action=tensors["action"],
            policy_action=tensors["policy_action"],
            policy_action_valid=tensors["policy_action_valid"].astype(bool),
            reward=tensors["reward"],
            controller=tensors["controller"],
            images={k[len(IMAGE_PREFIX) :]: v for k, v in tensors.items() if k.startswith(IMAGE_PREFIX)},
        )
    except KeyError as exc:
        raise EpisodeFileError(f"{name} lacks the {exc.args[0]!r} array; it is not a flywheel episode") from None


class EpisodeFiles:
    """Reads and writes episode files under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, uri: str) -> Path:
        path = Path(uri)
        return path if path.is_absolute() else self.root / path

    def write(self, frames: EpisodeFrames) -> WrittenFile:
        """Write atomically (temp + fsync + rename + dir fsync); returns uri, sha256 and size."""
        blob = encode_frames(frames)
        name = uuid.uuid4().hex
        rel = Path(name[:2]) / f"{name}{SUFFIX}"
        final = self.root / rel
        final.parent.mkdir(parents=True, exist_ok=True)
        temp = final.parent / f"{TEMP_PREFIX}{name}"
        try:
            with open(temp, "wb") as fh:
                fh.write(blob)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temp, final)
        finally:
            temp.unlink(missing_ok=True)
        fsync_path(final.parent)
        return WrittenFile(uri=rel.as_posix(), sha256=hashlib.sha256(blob).hexdigest(), bytes=len(blob))

    def read(self, uri: str, sha256: str | None, *, episode_id: int | None = None) -> EpisodeFrames:
        """Read a whole episode, verifying its checksum when given."""
        path = self.path_for(uri)
        label = f"episode {episode_id} file {path}" if episode_id is not None else f"episode file {path}"
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise EpisodeFileError(
                f"{label} is missing; restore it from backup or run `flywheel episodes delete {episode_id}`"
            ) from None
        except OSError as exc:
            raise EpisodeFileError(f"{label} cannot be read: {exc.strerror}") from None
        if sha256 is not None and hashlib.sha256(blob).hexdigest() != sha256:
            raise EpisodeFileError(
                f"{label} fails its sha256 check (corrupt or altered); restore it from backup or delete the episode"
            )
        return decode_frames(blob, label)

    def open_arrays(self, uri: str) -> dict[str, np.ndarray]:
        """Every array of an episode file as a read-only memory map (zero-copy; pages load on access).

        Safetensors is an 8-byte header length, a JSON header with dtype/shape/byte offsets, then raw
        little-endian data, so each array maps directly. No checksum: callers verify once with `read`
        or `verify` before relying on the bytes.
        """
        path = self.path_for(uri)
        try:
            with open(path, "rb") as fh:
                (header_len,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(header_len))
        except (OSError, ValueError, struct.error) as exc:
            raise EpisodeFileError(f"episode file {path} cannot be opened: {exc}") from None
        base = 8 + header_len
        arrays: dict[str, np.ndarray] = {}
        for key, info in header.items():
            if key == "__metadata__":
                continue
            start, end = info["data_offsets"]
            dtype = np.dtype(_SAFETENSORS_DTYPES[info["dtype"]])
            shape = tuple(info["shape"])
            if end == start:
                arrays[key] = np.zeros(shape, dtype=dtype)
                continue
            arrays[key] = np.memmap(path, dtype=dtype, mode="r", offset=base + start, shape=shape)
        return arrays

    def verify(self, uri: str, sha256: str, *, episode_id: int | None = None) -> None:
        """Check a file's sha256 without decoding it."""
        path = self.path_for(uri)
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 22):
                    digest.update(chunk)
        except FileNotFoundError:
            raise EpisodeFileError(f"episode {episode_id} file {path} is missing") from None
        if digest.hexdigest() != sha256:
            raise EpisodeFileError(f"episode {episode_id} file {path} fails its sha256 check (corrupt or altered)")

    def delete(self, uri: str) -> None:
        self.path_for(uri).unlink(missing_ok=True)

    def iter_uris(self) -> Iterator[str]:
        """Every episode file and stale temp file under the root, as root-relative URIs."""
        if not self.root.exists():
            return
        for path in self.root.rglob("*"):
            if path.is_file() and (path.suffix == SUFFIX or path.name.startswith(TEMP_PREFIX)):
                yield path.relative_to(self.root).as_posix()
