"""Immutable episode files: safetensors (no pickle, zero-copy mmap reads), written atomically, sha256-checked.

Layout under the episodes root: `<2 hex>/<32 hex>.safetensors`. Writes go to a hidden temp file in the
same directory, are fsynced, then renamed into place (and the directory fsynced), so a reader sees either
the whole file or nothing. A file without a row (a write that died before its commit) is removed by `gc`.

A row's `file_uri` comes from a database that others may write to, so it is never used as a path: `path_for`
accepts only this layout and returns a path inside the root, or refuses. The root holds a marker file
(`.flywheel-episodes`, naming the store's database) written when the store first writes there; `gc` removes
files only in a root marked as this store's, and only files named by the layout. Files and directories are
created private to their owner (0600 / 0700).
"""

from __future__ import annotations

import hashlib
import json
import re
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
from flywheel.fsutil import fsync_path, write_private_atomic
from flywheel.ownership import FolderMarker
from flywheel.vocab import EpisodeFrames

SUFFIX = ".safetensors"
TEMP_PREFIX = ".tmp-"
MARKER = ".flywheel-episodes"
MARKER_FORMAT = "flywheel-episodes"
FILE_URI = re.compile(r"(?P<shard>[0-9a-f]{2})/(?P=shard)[0-9a-f]{30}\.safetensors")
TEMP_URI = re.compile(r"[0-9a-f]{2}/\.tmp-[0-9a-f]{1,32}")
LAYOUT = "<2 hex>/<32 hex>.safetensors"
DIR_MODE = 0o700
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
    """Reads and writes episode files under one root directory.

    `owner` names the store these files belong to (its database, password-free); it is written into the root's
    marker so `gc` never deletes in a directory that is not this store's.
    """

    def __init__(self, root: Path, owner: str | None = None) -> None:
        self.root = Path(root)
        self.owner = owner

    def path_for(self, uri: str, *, episode_id: int | None = None) -> Path:
        """The path of a row's `file_uri`: only the store's layout, resolved inside the root, else refused."""
        who = f"episode {episode_id}" if episode_id is not None else "an episode row"
        if not isinstance(uri, str) or FILE_URI.fullmatch(uri) is None:
            raise EpisodeFileError(
                f"{who} names file {str(uri)[:80]!a}, which is not a store file ({LAYOUT} under "
                f"{self.root}); the row was altered or written by another tool: refusing to touch it"
            )
        root = self.root.resolve()
        path = (root / uri).resolve()
        if not path.is_relative_to(root):
            raise EpisodeFileError(
                f"{who}'s file {uri} resolves to {path}, outside the episodes directory {root} (a symbolic link?): "
                "refusing to touch it"
            )
        return path

    # -- ownership ------------------------------------------------------------------------------------

    @property
    def marker(self) -> Path:
        return self._marker.path

    @property
    def _marker(self) -> FolderMarker:
        return FolderMarker(self.root, MARKER, MARKER_FORMAT)

    def marked_owner(self) -> str | None:
        """The owner recorded in the root's marker; None when there is no (readable) marker."""
        try:
            return self._marker.owner()
        except OSError:
            return None

    def foreign_files(self, limit: int = 3) -> list[str]:
        """Up to `limit` paths under the root that are neither the store's layout nor its marker."""
        found: list[str] = []
        if not self.root.is_dir():
            return found
        marker_temp = self._marker.temp_pattern
        for path in self.root.rglob("*"):  # unsorted: stops at the first hit without listing everything
            rel = path.relative_to(self.root).as_posix()
            if path.is_dir() and not path.is_symlink() and re.fullmatch(r"[0-9a-f]{2}", rel):
                continue
            marker_files = rel == MARKER or marker_temp.fullmatch(rel) is not None
            if path.is_file() and not path.is_symlink() and (marker_files or self._own(rel)):
                continue
            found.append(rel)
            if len(found) >= limit:
                break
        return found

    def claim(self) -> None:
        """Mark the root as this store's (creating it private); replaces an older marker."""
        self._marker.claim(self.owner or "")

    def _ensure_marked(self) -> None:
        """Before a write: mark a new, empty or store-only root as this store's (an unmarked root that holds
        other files stays unmarked, so `gc` refuses there until `flywheel gc --adopt`)."""
        if self.marker.exists():
            return
        if not self.foreign_files(limit=1):
            self._marker.claim_if_unmarked(self.owner or "")

    @staticmethod
    def _own(rel: str) -> bool:
        return FILE_URI.fullmatch(rel) is not None or TEMP_URI.fullmatch(rel) is not None

    # -- files ----------------------------------------------------------------------------------------

    def write(self, frames: EpisodeFrames) -> WrittenFile:
        """Write atomically (temp + fsync + rename + dir fsync); returns uri, sha256 and size."""
        blob = encode_frames(frames)
        self._ensure_marked()
        name = uuid.uuid4().hex
        rel = Path(name[:2]) / f"{name}{SUFFIX}"
        final = self.root / rel
        if not final.parent.is_dir():
            final.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        write_private_atomic(final, blob, temp=final.parent / f"{TEMP_PREFIX}{name}")
        fsync_path(final.parent)
        return WrittenFile(uri=rel.as_posix(), sha256=hashlib.sha256(blob).hexdigest(), bytes=len(blob))

    def read(self, uri: str, sha256: str | None, *, episode_id: int | None = None) -> EpisodeFrames:
        """Read a whole episode, verifying its checksum when given."""
        path = self.path_for(uri, episode_id=episode_id)
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

    def open_frames(self, uri: str, sha256: str, *, episode_id: int | None = None) -> EpisodeFrames:
        """An episode verified against its sha256, its arrays memory-mapped (camera frames load on access)."""
        self.verify(uri, sha256, episode_id=episode_id)
        label = f"episode {episode_id} file {uri}" if episode_id is not None else f"episode file {uri}"
        return _frames_from_tensors(self.open_arrays(uri, episode_id=episode_id), label)

    def open_arrays(self, uri: str, *, episode_id: int | None = None) -> dict[str, np.ndarray]:
        """Every array of an episode file as a read-only memory map (zero-copy; pages load on access).

        Safetensors is an 8-byte header length, a JSON header with dtype/shape/byte offsets, then raw
        little-endian data, so each array maps directly. No checksum: callers verify once with `read`
        or `verify` before relying on the bytes.
        """
        path = self.path_for(uri, episode_id=episode_id)
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
        path = self.path_for(uri, episode_id=episode_id)
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 22):
                    digest.update(chunk)
        except FileNotFoundError:
            raise EpisodeFileError(f"episode {episode_id} file {path} is missing") from None
        if digest.hexdigest() != sha256:
            raise EpisodeFileError(f"episode {episode_id} file {path} fails its sha256 check (corrupt or altered)")

    def delete(self, uri: str, *, episode_id: int | None = None) -> None:
        self.path_for(uri, episode_id=episode_id).unlink(missing_ok=True)

    def own_path(self, rel: str) -> Path:
        """The path of one file of the store's layout (episode or stale temp file), as listed by `iter_uris`."""
        if not self._own(rel):
            raise EpisodeFileError(f"{rel} is not a file of the store's layout ({LAYOUT}); not touching it")
        return self.root / rel

    def delete_own(self, rel: str) -> None:
        """Remove one file of the store's layout (episode or stale temp file), as listed by `iter_uris`."""
        self.own_path(rel).unlink(missing_ok=True)

    def iter_uris(self) -> Iterator[str]:
        """Every episode file and stale temp file of the store's layout under the root, as root-relative URIs
        (other files, and symbolic links, are never listed)."""
        if not self.root.is_dir():
            return
        for shard in sorted(self.root.iterdir()):
            if shard.is_symlink() or not shard.is_dir() or re.fullmatch(r"[0-9a-f]{2}", shard.name) is None:
                continue
            for path in sorted(shard.iterdir()):
                rel = f"{shard.name}/{path.name}"
                if self._own(rel) and path.is_file() and not path.is_symlink():
                    yield rel
