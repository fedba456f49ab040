"""Plain, detached snapshots of rows handed to callers (no session needed to read them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from flywheel.store.models import Episode, Segment


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
        return cls(row.id, row.start, row.end, row.controller, row.operator, row.trigger, row.claimed_operator)


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
        return cls(
            id=row.id,
            task=row.task,
            tag=row.tag,
            policy_version_id=row.policy_version_id,
            iteration=row.iteration,
            env_seed=row.env_seed,
            length=row.length,
            success=row.success,
            episode_return=row.episode_return,
            operator=row.operator,
            review_status=row.review_status,
            review_version=row.review_version,
            file_uri=row.file_uri,
            sha256=row.sha256,
            bytes=row.bytes,
            cameras=tuple(row.cameras or ()),
            error=row.error,
            source_key=row.source_key,
            created_at=row.created_at,
            segments=tuple(SegmentRecord.of(s) for s in row.segments) if with_segments else (),
            claimed_operator=row.claimed_operator,
        )

    def as_dict(self) -> dict[str, object]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "segments"}
        data["created_at"] = self.created_at.isoformat()
        data["cameras"] = list(self.cameras)
        data["return"] = data.pop("episode_return")
        if self.segments:
            data["segments"] = [s.__dict__ for s in self.segments]
        return data
