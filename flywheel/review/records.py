"""Detached snapshots handed out by the review service."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flywheel.store.models import Label
from flywheel.store.records import snapshot


@dataclass(frozen=True)
class LabelRecord:
    id: int
    episode_id: int
    segment_id: int | None
    author: str
    verdict: str | None
    failure_mode: str | None
    note: str | None
    previous_status: str | None
    undone: bool
    created_at: datetime
    recorded_by: str | None = None

    @classmethod
    def of(cls, row: Label) -> LabelRecord:
        return snapshot(cls, row, undone=bool(row.undone))

    @property
    def summary(self) -> str:
        """e.g. `reject`, `label dropped_object on segment 12`, `accept + label stuck`."""
        parts = []
        if self.verdict is not None:
            parts.append("accept" if self.verdict == "accepted" else "reject")
        if self.failure_mode is not None:
            where = f" on segment {self.segment_id}" if self.segment_id is not None else ""
            parts.append(f"label {self.failure_mode}{where}")
        if not parts:
            parts.append("note")
        return " + ".join(parts)


@dataclass(frozen=True)
class RejectionImpact:
    """What rejecting one episode takes out of its task's training data (training uses non-rejected episodes)."""

    episode_id: int
    task: str
    episode_frames: int
    frames_removed: int  # 0 when the episode is already rejected
    training_frames: int  # frames of the task training uses now

    @property
    def fraction(self) -> float:
        return self.frames_removed / self.training_frames if self.training_frames else 0.0
