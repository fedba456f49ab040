"""Plain, detached snapshots of rows handed to callers (no session needed to read them)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, TypeVar

from flywheel.store.models import Episode, Segment

R = TypeVar("R")


def snapshot(cls: type[R], row: object, **computed: Any) -> R:
    """A detached record of `row`: each field of the dataclass `cls` read from the row's attribute of that name,
    except the `computed` ones (converted values, relationships) given here."""
    names = (f.name for f in fields(cls))  # type: ignore[arg-type]
    return cls(**{name: getattr(row, name) for name in names if name not in computed}, **computed)


@dataclass(frozen=True)
class SegmentRecord:
    id: int
    start: int
    end: int
    controller: str
    operator: str | None
    trigger: str | None
    claimed_operator: str | None = None

    @classmethod
    def of(cls, row: Segment) -> SegmentRecord:
        return snapshot(cls, row)


@dataclass(frozen=True)
class EpisodeRecord:
    id: int
    task: str
    tag: str
    policy_version_id: int | None
    iteration: int | None
    env_seed: int
    length: int
    success: bool
    episode_return: float
    operator: str | None
    review_status: str
    review_version: int
    file_uri: str
    sha256: str
    bytes: int
    cameras: tuple[str, ...]
    error: str | None
    source_key: str | None
    created_at: datetime
    segments: tuple[SegmentRecord, ...] = field(default=())
    claimed_operator: str | None = None

    @classmethod
    def of(cls, row: Episode, with_segments: bool = False) -> EpisodeRecord:
        return snapshot(
            cls,
            row,
            cameras=tuple(row.cameras or ()),
            segments=tuple(SegmentRecord.of(s) for s in row.segments) if with_segments else (),
        )

    def as_dict(self) -> dict[str, object]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "segments"}
        data["created_at"] = self.created_at.isoformat()
        data["cameras"] = list(self.cameras)
        data["return"] = data.pop("episode_return")
        if self.segments:
            data["segments"] = [s.__dict__ for s in self.segments]
        return data
