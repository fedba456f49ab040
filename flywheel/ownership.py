"""Which store owns a folder: a marker file in the folder naming the store's database.

Whatever deletes files a database does not know about (episode `gc`, the scheduler clearing an iteration's
unregistered training attempts) does so only in a folder marked as its own store's, so two stores pointed at one
folder cannot delete each other's files.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from flywheel.config import Settings
from flywheel.errors import ForeignFolderError
from flywheel.fsutil import make_private_dir, write_new_private, write_private_atomic

CHECKPOINTS_MARKER = ".flywheel-checkpoints"
CHECKPOINTS_FORMAT = "flywheel-checkpoints"


@dataclass(frozen=True)
class FolderMarker:
    """The marker file `name` in `root`, of format `kind`, recording the owning store's database identity."""

    root: Path
    name: str
    kind: str

    @property
    def path(self) -> Path:
        return self.root / self.name

    @property
    def temp_pattern(self) -> re.Pattern[str]:
        """Names of the temporary files a claim writes beside the marker (one a killed claim may leave)."""
        return re.compile(re.escape(self.name) + r"\.[0-9a-f]{8}\.tmp")

    def owner(self) -> str | None:
        """The owner recorded in the marker; None when there is no marker of this kind (missing, not JSON, or
        another format). A marker that exists but cannot be read raises `OSError`."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("format") != self.kind:
            return None
        return str(data.get("owner") or "")

    def claim(self, owner: str) -> None:
        """Mark the folder (created private when missing) as `owner`'s; replaces an older marker atomically."""
        make_private_dir(self.root)
        write_private_atomic(self.path, self._content(owner), temp=self._temp())

    def claim_if_unmarked(self, owner: str) -> str:
        """Mark the folder as `owner`'s unless a marker of this kind is there already, and return the owner it
        records: of two processes claiming an unmarked folder at once, exactly one wins and both see which."""
        make_private_dir(self.root)
        temp = self._temp()
        try:
            write_new_private(temp, self._content(owner))
            try:
                os.link(temp, self.path)  # fails where the marker exists: never replaces another's
            except FileExistsError:
                pass
            except OSError:  # a filesystem without hard links: an exclusive create (its content follows at once)
                with contextlib.suppress(FileExistsError):
                    write_new_private(self.path, self._content(owner))
        finally:
            temp.unlink(missing_ok=True)
        marked = self.owner()
        if marked is None:  # a marker that is not one (not JSON, another format) counts as none
            self.claim(owner)
            return owner
        return marked

    def _temp(self) -> Path:
        return self.root / f"{self.name}.{uuid.uuid4().hex[:8]}.tmp"

    def _content(self, owner: str) -> bytes:
        return (json.dumps({"format": self.kind, "version": 1, "owner": owner}) + "\n").encode()


def checkpoints_marker(root: Path) -> FolderMarker:
    return FolderMarker(Path(root), CHECKPOINTS_MARKER, CHECKPOINTS_FORMAT)


def claim_checkpoints_folder(settings: Settings, owner: str, *, adopt: bool = False) -> None:
    """Make sure the settings' checkpoints folder is `owner`'s before the loop trains (and clears attempts) there.

    An unmarked folder (new, or from before markers existed) is marked as `owner`'s; one marked by another store
    is refused with `ForeignFolderError` unless `adopt` (this store replaces that one)."""
    marker = checkpoints_marker(settings.checkpoints_root)
    if adopt:
        marker.claim(owner)
        return
    try:
        marked = marker.claim_if_unmarked(owner)
    except OSError as exc:
        raise ForeignFolderError(
            f"cannot read or write the checkpoints folder's marker {marker.path} ({exc.strerror or exc}): it may "
            "belong to another user's store; give this store a folder of its own"
        ) from None
    if marked == owner:
        return
    if settings.checkpoints_dir is not None:  # set explicitly, not the home's default
        hint = "Point FLYWHEEL_CHECKPOINTS_DIR (or checkpoints_dir in the config) at a folder of this store's own"
    else:
        hint = (
            "It is this home's own folder, so the home was probably moved or copied, or its database is now reached "
            "by another URL"
        )
    raise ForeignFolderError(
        f"the checkpoints folder {marker.root} belongs to another store ({marked or 'an unnamed database'}), not "
        f"this one ({owner}): training here clears every attempt folder this store did not register, which would "
        f"delete that store's checkpoints. {hint}. If this store replaces that one, `flywheel gc --adopt` marks the "
        "folder (and the episodes folder) as this store's"
    )
