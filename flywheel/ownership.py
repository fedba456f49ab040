"""Which store owns a folder: a marker file in the folder naming the store's database.

Whatever deletes files a database does not know about (episode `gc`, the scheduler clearing an iteration's
unregistered training attempts) does so only in a folder marked as its own store's, so two stores pointed at one
folder cannot delete each other's files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from flywheel.errors import ConfigError
from flywheel.fsutil import make_private_dir, write_private_atomic

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

    def owner(self) -> str | None:
        """The owner recorded in the marker; None when there is no (readable) marker of this kind."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("format") != self.kind:
            return None
        return str(data.get("owner") or "")

    def claim(self, owner: str) -> None:
        """Mark the folder (created private when missing) as `owner`'s; replaces an older marker atomically."""
        make_private_dir(self.root)
        data = {"format": self.kind, "version": 1, "owner": owner}
        write_private_atomic(self.path, (json.dumps(data) + "\n").encode())


def checkpoints_marker(root: Path) -> FolderMarker:
    return FolderMarker(Path(root), CHECKPOINTS_MARKER, CHECKPOINTS_FORMAT)


def claim_checkpoints_folder(root: Path, owner: str, *, adopt: bool = False) -> None:
    """Make sure the checkpoints folder `root` is `owner`'s before the loop trains (and clears attempts) there.

    An unmarked folder (new, or from before markers existed) is marked as `owner`'s; one marked by another store
    is refused unless `adopt` (this store replaces that one)."""
    marker = checkpoints_marker(root)
    marked = marker.owner()
    if marked == owner:
        return
    if marked is not None and not adopt:
        raise ConfigError(
            f"the checkpoints folder {marker.root} belongs to the store at {marked or 'an unnamed database'}, not "
            f"{owner}: training here would delete that store's unregistered attempts. Give this store its own "
            "folder (unset FLYWHEEL_CHECKPOINTS_DIR, or point it elsewhere), or run `flywheel gc --adopt` if this "
            "store replaces that one"
        )
    marker.claim(owner)
