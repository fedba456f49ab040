"""Review errors: refused writes and lost races, each with a one-line message saying what to do."""

from __future__ import annotations

from datetime import datetime

from flywheel.errors import FlywheelError


class ReviewError(FlywheelError):
    """A review or label write was refused (unknown failure mode, no operator, wrong segment...)."""


class ReviewConflictError(ReviewError):
    """Someone changed the episode's review since the caller loaded it; nothing was written."""

    def __init__(self, episode_id: int, changed_by: str | None, changed_at: datetime | None, what: str) -> None:
        self.episode_id = episode_id
        self.changed_by = changed_by
        self.changed_at = changed_at
        who = changed_by or "another operator"
        when = f" at {changed_at:%Y-%m-%d %H:%M:%S} UTC" if changed_at is not None else ""
        super().__init__(
            f"episode {episode_id} was changed by {who}{when} ({what}) after you loaded it; "
            "nothing was saved — reload the episode and try again"
        )
