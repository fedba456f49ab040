"""Review and labelling: the queue, verdicts, failure-mode labels, undo — with optimistic concurrency.

Every write names the `review_version` the operator saw. The episode row is locked (`SELECT ... FOR UPDATE` on
PostgreSQL; SQLite write transactions are already exclusive), the version compared, and the write bumps it, so
of two operators working from the same version the second gets a `ReviewConflictError` naming who changed the
episode and when — never a silent overwrite. Labels never touch frames; an undone label stays, marked `undone`.
"""

from __future__ import annotations

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session, selectinload

from flywheel.errors import EpisodeNotFoundError
from flywheel.identity import UNKNOWN_OPERATOR, InvalidNameError, check_name, process_identity
from flywheel.review.errors import ReviewConflictError, ReviewError
from flywheel.review.records import LabelRecord, RejectionImpact
from flywheel.review.taxonomy import FailureTaxonomy
from flywheel.store import EpisodeRecord, EpisodeStore
from flywheel.store.models import Episode, Label, Segment
from flywheel.vocab import Tag

VERDICTS = ("accepted", "rejected")
MAX_NOTE = 2000


def check_author(author: str | None) -> str:
    """The operator name, stripped; refused when empty, the `unknown` placeholder or not a valid name."""
    name = (author or "").strip()
    if not name or name == UNKNOWN_OPERATOR:
        raise ReviewError("enter your operator name first: every review and label records who made it")
    try:
        return check_name(name)
    except InvalidNameError as exc:
        raise ReviewError(str(exc)) from None


class ReviewService:
    """The review queue and every review write, on top of the episode store's database."""

    def __init__(self, store: EpisodeStore, taxonomy: FailureTaxonomy | None = None) -> None:
        self.store = store
        self.db = store.db
        self.taxonomy = taxonomy or FailureTaxonomy()

    # -- reads ----------------------------------------------------------------------------------------

    def queue(self, task: str | None = None, limit: int = 50, offset: int = 0) -> list[EpisodeRecord]:
        """Unreviewed episodes: interventions first, then oldest first (nothing waits forever)."""
        query = (
            select(Episode)
            .where(Episode.review_status == "unreviewed")
            .options(selectinload(Episode.segments))
            .order_by(case((Episode.tag == Tag.INTERVENTION.value, 0), else_=1), Episode.created_at, Episode.id)
            .limit(limit)
            .offset(offset)
        )
        if task is not None:
            query = query.where(Episode.task == task)
        with self.db.read() as session:
            return [EpisodeRecord.of(row, with_segments=True) for row in session.scalars(query)]

    def queue_size(self, task: str | None = None) -> int:
        query = select(func.count(Episode.id)).where(Episode.review_status == "unreviewed")
        if task is not None:
            query = query.where(Episode.task == task)
        with self.db.read() as session:
            return int(session.scalar(query) or 0)

    def labels(self, episode_id: int) -> list[LabelRecord]:
        """Every label of an episode, oldest first, undone ones included."""
        with self.db.read() as session:
            rows = session.scalars(select(Label).where(Label.episode_id == episode_id).order_by(Label.id))
            return [LabelRecord.of(r) for r in rows]

    def last_label(self, author: str, recorded_by: str | None = None) -> LabelRecord | None:
        """The author's most recent label from this session that is not undone (what `undo_last` would undo)."""
        with self.db.read() as session:
            row = session.scalars(self._own_labels(author, recorded_by).order_by(Label.id.desc())).first()
            return None if row is None else LabelRecord.of(row)

    def rejection_impact(self, episode_id: int) -> RejectionImpact:
        """How many frames rejecting this episode removes from training (rejected episodes are never trained on)."""
        with self.db.read() as session:
            row = session.get(Episode, episode_id)
            if row is None:
                raise EpisodeNotFoundError(f"episode {episode_id} does not exist")
            training = session.scalar(
                select(func.coalesce(func.sum(Episode.length), 0)).where(
                    Episode.task == row.task, Episode.review_status != "rejected"
                )
            )
            removed = 0 if row.review_status == "rejected" else row.length
            return RejectionImpact(row.id, row.task, row.length, removed, int(training or 0))

    # -- writes ---------------------------------------------------------------------------------------

    def accept(
        self,
        episode_id: int,
        *,
        author: str,
        expected_version: int,
        note: str | None = None,
        recorded_by: str | None = None,
    ) -> LabelRecord:
        return self.review(
            episode_id,
            author=author,
            expected_version=expected_version,
            verdict="accepted",
            note=note,
            recorded_by=recorded_by,
        )

    def reject(
        self,
        episode_id: int,
        *,
        author: str,
        expected_version: int,
        note: str | None = None,
        failure_mode: str | None = None,
        segment_id: int | None = None,
        recorded_by: str | None = None,
    ) -> LabelRecord:
        return self.review(
            episode_id,
            author=author,
            expected_version=expected_version,
            verdict="rejected",
            note=note,
            failure_mode=failure_mode,
            segment_id=segment_id,
            recorded_by=recorded_by,
        )

    def label(
        self,
        episode_id: int,
        *,
        author: str,
        expected_version: int,
        failure_mode: str,
        segment_id: int | None = None,
        note: str | None = None,
        recorded_by: str | None = None,
    ) -> LabelRecord:
        """A failure-mode label on the episode or one of its segments (the review status is unchanged)."""
        return self.review(
            episode_id,
            author=author,
            expected_version=expected_version,
            failure_mode=failure_mode,
            segment_id=segment_id,
            note=note,
            recorded_by=recorded_by,
        )

    def review(
        self,
        episode_id: int,
        *,
        author: str,
        expected_version: int,
        verdict: str | None = None,
        failure_mode: str | None = None,
        segment_id: int | None = None,
        note: str | None = None,
        recorded_by: str | None = None,
    ) -> LabelRecord:
        """One label row (verdict and/or failure mode and/or note); a verdict also sets the review status.

        `recorded_by`: who the machine says is writing (default this process's `<os user>@<host>`; the console
        passes its browser session), kept beside the typed `author` and required to match by `undo_last`."""
        author = check_author(author)
        if verdict is not None and verdict not in VERDICTS:
            raise ReviewError(f"unknown verdict {verdict!r}: use one of {', '.join(VERDICTS)}")
        if failure_mode is not None:
            self.taxonomy.check(failure_mode)
        note = (note or "").strip() or None
        if note is not None and len(note) > MAX_NOTE:
            raise ReviewError(f"the note is {len(note)} characters; keep it under {MAX_NOTE}")
        if verdict is None and failure_mode is None and note is None:
            raise ReviewError("nothing to save: choose a verdict, a failure mode or write a note")
        if segment_id is not None and failure_mode is None:
            raise ReviewError("a segment label needs a failure mode")
        with self.db.write() as session:
            row = self._locked_episode(session, episode_id)
            self._check_version(session, row, expected_version)
            if segment_id is not None:
                segment = session.get(Segment, segment_id)
                if segment is None or segment.episode_id != episode_id:
                    raise ReviewError(f"segment {segment_id} is not part of episode {episode_id}")
            label = Label(
                episode_id=episode_id,
                segment_id=segment_id,
                author=author,
                recorded_by=(recorded_by or process_identity())[:160],
                verdict=verdict,
                failure_mode=failure_mode,
                note=note,
                previous_status=row.review_status,
                undone=False,
            )
            session.add(label)
            if verdict is not None:
                row.review_status = verdict
            row.review_version += 1
            session.flush()
            return LabelRecord.of(label)

    def undo_last(self, *, author: str, episode_id: int | None = None, recorded_by: str | None = None) -> LabelRecord:
        """Undo the author's most recent label written from the same session (`recorded_by`, default this
        process's `<os user>@<host>`; on `episode_id` when given): typing another operator's name does not reach
        their labels. The episode's review status goes back to what it was before, and the label stays, marked
        undone. Refused when someone labelled the episode since (their work would be silently reverted)."""
        author = check_author(author)
        with self.db.write() as session:
            query = self._own_labels(author, recorded_by)
            if episode_id is not None:
                query = query.where(Label.episode_id == episode_id)
            label = session.scalars(query.order_by(Label.id.desc())).first()
            if label is None:
                where = f" on episode {episode_id}" if episode_id is not None else ""
                raise ReviewError(f"{author} has no label to undo{where} from this session")
            row = self._locked_episode(session, label.episode_id)
            later = session.scalars(
                select(Label)
                .where(Label.episode_id == label.episode_id, Label.id > label.id, Label.undone.is_(False))
                .order_by(Label.id.desc())
            ).first()
            if later is not None:
                raise ReviewConflictError(
                    row.id, later.author, later.created_at, f"{LabelRecord.of(later).summary}, after your label"
                )
            if label.verdict is not None and label.previous_status is not None:
                row.review_status = label.previous_status
            label.undone = True
            row.review_version += 1
            session.flush()
            return LabelRecord.of(label)

    # -- internals ------------------------------------------------------------------------------------

    @staticmethod
    def _own_labels(author: str, recorded_by: str | None) -> Select:
        """Labels `author` wrote from this session (`recorded_by`) that are not undone."""
        who = (recorded_by or process_identity())[:160]
        return select(Label).where(Label.author == author, Label.recorded_by == who, Label.undone.is_(False))

    @staticmethod
    def _locked_episode(session: Session, episode_id: int) -> Episode:
        row = session.scalars(select(Episode).where(Episode.id == episode_id).with_for_update()).one_or_none()
        if row is None:
            raise EpisodeNotFoundError(f"episode {episode_id} does not exist")
        return row

    @staticmethod
    def _check_version(session: Session, row: Episode, expected_version: int) -> None:
        if row.review_version == expected_version:
            return
        latest = session.scalars(select(Label).where(Label.episode_id == row.id).order_by(Label.id.desc())).first()
        if latest is None:
            raise ReviewConflictError(row.id, None, None, f"review version {expected_version} → {row.review_version}")
        record = LabelRecord.of(latest)
        if record.undone:
            what = f"undid their {record.summary} from {record.created_at:%H:%M:%S}"
            raise ReviewConflictError(row.id, record.author, None, f"{what}; status now {row.review_status}")
        what = f"{record.summary}; status now {row.review_status}"
        raise ReviewConflictError(row.id, record.author, record.created_at, what)
