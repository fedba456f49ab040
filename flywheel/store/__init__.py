"""The episode store: SQL metadata (SQLAlchemy 2 + Alembic) and one immutable file per episode."""

from flywheel.store.db import Database
from flywheel.store.episodes import EpisodeFilter, EpisodeStore, GcReport, NewEpisode
from flywheel.store.files import EpisodeFiles
from flywheel.store.frames import EpisodeFrames
from flywheel.store.records import EpisodeRecord, SegmentRecord
from flywheel.store.tags import Controller, SegmentSpan, Tag, derive_segments, derive_tag

__all__ = [
    "Controller",
    "Database",
    "EpisodeFiles",
    "EpisodeFilter",
    "EpisodeFrames",
    "EpisodeRecord",
    "EpisodeStore",
    "GcReport",
    "NewEpisode",
    "SegmentRecord",
    "SegmentSpan",
    "Tag",
    "derive_segments",
    "derive_tag",
]
