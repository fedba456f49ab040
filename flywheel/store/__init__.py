"""The episode store: SQL metadata (SQLAlchemy 2 + Alembic) and one immutable file per episode."""

from flywheel.store.db import Database
from flywheel.store.episodes import EpisodeFilter, EpisodeStore, GcReport, NewEpisode
from flywheel.store.files import EpisodeFiles
from flywheel.store.records import EpisodeRecord, SegmentRecord

__all__ = [
    "Database",
    "EpisodeFiles",
    "EpisodeFilter",
    "EpisodeRecord",
    "EpisodeStore",
    "GcReport",
    "NewEpisode",
    "SegmentRecord",
]
