"""The episode store service: the only way episodes enter, leave and are queried."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Select, delete, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from flywheel.config import Settings
from flywheel.errors import DatabaseUnavailableError, EpisodeNotFoundError, StoreError
from flywheel.fsutil import make_private_dir, touch_private
from flywheel.identity import check_name
from flywheel.redact import database_identity
from flywheel.store.db import Database, is_sqlite
from flywheel.store.files import LAYOUT, EpisodeFiles
from flywheel.store.migrate import ensure_schema
from flywheel.store.models import REVIEW_STATUSES, Episode, Segment
from flywheel.store.records import EpisodeRecord
from flywheel.vocab import (
    ControllerKind,
    EpisodeFrames,
    SegmentSpan,
    Tag,
    check_segments,
    derive_segments,
    parse_tag,
)


@dataclass(frozen=True)
class NewEpisode:
    """Everything needed to store one episode. The tag is derived from `frames.controller`.

    `segments`: the rollout's own segments (with who drove and why), checked against `frames.controller`;
    None stores the bare controller runs (no operators or triggers)."""

    task: str
    frames: EpisodeFrames
    env_seed: int
    success: bool
    policy_version_id: int | None = None
    iteration: int | None = None
    operator: str | None = None
    error: str | None = None
    source_key: str | None = None
    segments: Sequence[SegmentSpan] | None = None
    claimed_operator: str | None = None  # imported data: the operator its source names (unverified)

    def spans(self) -> list[SegmentSpan]:
        """The segments to store: the given ones once they match the frames' controller runs, else those runs."""
        if self.segments is None:
            return derive_segments(self.frames.controller)
        check_segments(self.segments, self.frames.controller)
        return list(self.segments)

    def check_names(self) -> None:
        """Every operator and camera name follows flywheel.identity's pattern (they are shown and used as keys)."""
        for name in (self.operator, self.claimed_operator):
            if name is not None:
                check_name(name)
        for span in self.segments or ():
            for name in (span.operator, span.claimed_operator):
                if name is not None:
                    check_name(name, "segment operator name")
        for camera in self.frames.images:
            check_name(camera, "camera name")


@dataclass(frozen=True)
class EpisodeFilter:
    task: str | None = None
    tag: str | None = None
    policy_version_id: int | None = None
    success: bool | None = None
    review_status: str | None = None
    iteration: int | None = None
    exclude_rejected: bool = False
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = None
    offset: int = 0
    newest_first: bool = True

    def __post_init__(self) -> None:
        if self.tag is not None:
            parse_tag(self.tag)
        if self.review_status is not None and self.review_status not in REVIEW_STATUSES:
            raise StoreError(f"unknown review status {self.review_status!r}: use one of {', '.join(REVIEW_STATUSES)}")

    def apply(self, query: Select) -> Select:
        conditions = {
            Episode.task: self.task,
            Episode.tag: self.tag,
            Episode.policy_version_id: self.policy_version_id,
            Episode.success: self.success,
            Episode.review_status: self.review_status,
            Episode.iteration: self.iteration,
        }
        for column, value in conditions.items():
            if value is not None:
                query = query.where(column == value)
        if self.exclude_rejected:
            query = query.where(Episode.review_status != "rejected")
        if self.since is not None:
            query = query.where(Episode.created_at >= self.since)
        if self.until is not None:
            query = query.where(Episode.created_at < self.until)
        return query


@dataclass(frozen=True)
class GcReport:
    removed: tuple[str, ...]
    kept: int
    dry_run: bool


def _make_private_home(settings: Settings) -> None:
    make_private_dir(settings.home)
    url = make_url(settings.database_url)
    if is_sqlite(settings.database_url) and url.database and url.database != ":memory:":
        path = Path(url.database)
        make_private_dir(path.parent)
        touch_private(path)


class EpisodeStore:
    """Episodes: SQL rows for metadata, one immutable file each for the frames."""

    def __init__(self, db: Database, files: EpisodeFiles) -> None:
        self.db = db
        self.files = files

    @classmethod
    def open(cls, settings: Settings, migrate: bool = True) -> EpisodeStore:
        """Connect (clear error if impossible), migrate an empty DB, refuse an out-of-date one.

        A new home and a new SQLite file are created private to their owner (0700 / 0600)."""
        _make_private_home(settings)
        db = Database(settings.database_url, settings.sqlite_busy_timeout_ms, settings.db_retry_seconds)
        db.ping()
        if migrate:
            ensure_schema(db)
        return cls(db, EpisodeFiles(settings.episodes_root, owner=database_identity(db.url)))

    @property
    def owner(self) -> str:
        """The identity of this store's database, as its folders' markers record it."""
        return database_identity(self.db.url)

    # -- writes ---------------------------------------------------------------------------------------

    def add(self, episode: NewEpisode) -> EpisodeRecord:
        """File first (atomic), then the row; idempotent on `source_key` (a retried write returns the first)."""
        if episode.source_key is not None:
            existing = self.find_by_source_key(episode.source_key)
            if existing is not None:
                return existing
        episode.check_names()
        spans = episode.spans()
        frames = episode.frames
        tag = frames.tag
        if tag is not Tag.DEMO and episode.policy_version_id is None:
            raise StoreError(f"a {tag.value} episode needs the policy version that acted (policy_version_id)")
        written = self.files.write(frames)

        def insert(session: Session) -> EpisodeRecord:
            # Re-checked inside the transaction: a retry after a commit whose acknowledgement was lost finds
            # the row it wrote (same file) instead of adding a second one.
            if episode.source_key is not None:
                found = session.scalars(select(Episode).where(Episode.source_key == episode.source_key)).first()
                if found is not None:
                    return EpisodeRecord.of(found, with_segments=True)
            row = Episode(
                task=episode.task,
                tag=tag.value,
                policy_version_id=episode.policy_version_id,
                iteration=episode.iteration,
                env_seed=int(episode.env_seed),
                length=len(frames),
                success=bool(episode.success),
                episode_return=float(frames.reward.sum()),
                operator=episode.operator,
                claimed_operator=episode.claimed_operator,
                file_uri=written.uri,
                sha256=written.sha256,
                bytes=written.bytes,
                cameras=sorted(frames.images),
                error=episode.error,
                source_key=episode.source_key,
                segments=[
                    Segment(
                        start=s.start,
                        end=s.end,
                        controller=ControllerKind(s.controller).value,
                        operator=s.operator,
                        claimed_operator=s.claimed_operator,
                        trigger=s.trigger,
                    )
                    for s in spans
                ],
            )
            session.add(row)
            session.flush()
            return EpisodeRecord.of(row, with_segments=True)

        try:
            record = self.db.transaction(insert)
        except IntegrityError:
            self.files.delete(written.uri)
            if episode.source_key is not None:
                existing = self.find_by_source_key(episode.source_key)
                if existing is not None:
                    return existing
            raise
        except DatabaseUnavailableError:
            raise  # the row may have committed before the outage: keep the file (`gc` removes it if not)
        except BaseException:
            self.files.delete(written.uri)
            raise
        if record.file_uri != written.uri:  # another writer stored this source key first
            self.files.delete(written.uri)
        return record

    def delete(self, episode_id: int) -> EpisodeRecord:
        """Remove the row, then its file (a crash in between leaves an orphan file for `gc`).

        A row whose `file_uri` is not a store file is refused before anything is removed."""
        with self.db.write() as session:
            row = session.get(Episode, episode_id)
            if row is None:
                raise EpisodeNotFoundError(f"episode {episode_id} does not exist")
            record = EpisodeRecord.of(row)
            self.files.path_for(record.file_uri, episode_id=record.id)
            session.delete(row)
        self.files.delete(record.file_uri, episode_id=record.id)
        return record

    def gc(self, dry_run: bool = False, adopt: bool = False) -> GcReport:
        """Remove episode files (and stale temp files) that no row points to.

        Only in an episodes directory marked as this store's, and only files of the store's layout. An unmarked
        directory that holds nothing else is marked first; `adopt` marks one that holds other files too (they
        are never removed) or one another store marked.
        """
        self._check_gc_owner(adopt, dry_run)
        with self.db.read() as session:
            referenced = set(session.scalars(select(Episode.file_uri)))
        orphans = tuple(uri for uri in self.files.iter_uris() if uri not in referenced)
        if not dry_run:
            # Re-check right before deleting: a writer may have committed a row since the scan.
            with self.db.read() as session:
                referenced = set(session.scalars(select(Episode.file_uri)))
            orphans = tuple(uri for uri in orphans if uri not in referenced)
            for uri in orphans:
                self.files.delete_own(uri)
        return GcReport(removed=orphans, kept=len(referenced), dry_run=dry_run)

    def _check_gc_owner(self, adopt: bool, dry_run: bool) -> None:
        files = self.files
        if not files.root.is_dir():
            return
        owner = files.marked_owner()
        if owner is None and not adopt:
            foreign = files.foreign_files()
            if foreign:
                raise StoreError(
                    f"refusing gc in {files.root}: it is not marked as a flywheel episodes directory and holds other "
                    f"files ({', '.join(foreign)}); gc deletes only in the store's own directory. Move those files "
                    "out, or run `flywheel gc --adopt` to mark it as this store's (only files named "
                    f"{LAYOUT} are ever removed)"
                )
        elif owner is not None and owner != (files.owner or "") and not adopt:
            raise StoreError(
                f"refusing gc in {files.root}: it belongs to the store at {owner or 'an unnamed database'}, not "
                f"{files.owner}; episodes of that store would look orphaned here. Run gc from that store, or "
                "`flywheel gc --adopt` if this store replaces it"
            )
        if (owner is None or adopt) and not dry_run:  # a dry run changes nothing, the marker included
            files.claim()

    # -- reads ----------------------------------------------------------------------------------------

    def get(self, episode_id: int, with_segments: bool = True) -> EpisodeRecord:
        with self.db.read() as session:
            query = select(Episode).where(Episode.id == episode_id)
            if with_segments:
                query = query.options(selectinload(Episode.segments))
            row = session.scalars(query).one_or_none()
            if row is None:
                raise EpisodeNotFoundError(f"episode {episode_id} does not exist")
            return EpisodeRecord.of(row, with_segments=with_segments)

    def find_by_source_key(self, source_key: str) -> EpisodeRecord | None:
        with self.db.read() as session:
            row = session.scalars(select(Episode).where(Episode.source_key == source_key)).one_or_none()
            return None if row is None else EpisodeRecord.of(row)

    def list_episodes(self, filters: EpisodeFilter | None = None, with_segments: bool = False) -> list[EpisodeRecord]:
        filters = filters or EpisodeFilter()
        order = Episode.created_at.desc() if filters.newest_first else Episode.created_at.asc()
        query = filters.apply(select(Episode)).order_by(
            order, Episode.id.desc() if filters.newest_first else Episode.id
        )
        if with_segments:
            query = query.options(selectinload(Episode.segments))
        if filters.limit is not None:
            query = query.limit(filters.limit)
        if filters.offset:
            query = query.offset(filters.offset)
        with self.db.read() as session:
            return [EpisodeRecord.of(row, with_segments=with_segments) for row in session.scalars(query)]

    def count(self, filters: EpisodeFilter | None = None) -> int:
        filters = filters or EpisodeFilter()
        with self.db.read() as session:
            return int(session.scalar(filters.apply(select(func.count(Episode.id)))) or 0)

    def count_by_tag(self, filters: EpisodeFilter | None = None) -> dict[str, int]:
        filters = filters or EpisodeFilter()
        query = filters.apply(select(Episode.tag, func.count(Episode.id))).group_by(Episode.tag)
        with self.db.read() as session:
            counts = {tag.value: 0 for tag in Tag}
            counts.update({tag: int(n) for tag, n in session.execute(query)})
            return counts

    def takeover_count(self, filters: EpisodeFilter | None = None) -> int:
        """Segments under a human or expert inside policy episodes (each is one takeover)."""
        filters = filters or EpisodeFilter()
        query = filters.apply(
            select(func.count(Segment.id))
            .join(Episode, Segment.episode_id == Episode.id)
            .where(Episode.tag == Tag.INTERVENTION.value, Segment.controller != ControllerKind.POLICY.value)
        )
        with self.db.read() as session:
            return int(session.scalar(query) or 0)

    def read_frames(self, episode_id: int, verify: bool = True) -> EpisodeFrames:
        record = self.get(episode_id, with_segments=False)
        return self.files.read(record.file_uri, record.sha256 if verify else None, episode_id=record.id)

    def read_record_frames(self, record: EpisodeRecord, verify: bool = True) -> EpisodeFrames:
        return self.files.read(record.file_uri, record.sha256 if verify else None, episode_id=record.id)

    def open_record_frames(self, record: EpisodeRecord) -> EpisodeFrames:
        """The episode's frames verified once, memory-mapped: training reads camera frames batch by batch
        instead of holding every image in RAM."""
        return self.files.open_frames(record.file_uri, record.sha256, episode_id=record.id)

    def delete_many(self, episode_ids: Sequence[int]) -> int:
        """Delete several episodes (rows first, then files)."""
        with self.db.write() as session:
            rows = list(session.execute(select(Episode.id, Episode.file_uri).where(Episode.id.in_(episode_ids))))
            for episode_id, uri in rows:
                self.files.path_for(uri, episode_id=episode_id)
            session.execute(delete(Episode).where(Episode.id.in_(episode_ids)))
        for episode_id, uri in rows:
            self.files.delete(uri, episode_id=episode_id)
        return len(rows)
