"""Scheduler state for the console: who holds the lock, the current iteration and phase, jobs, recent errors.

Read-only queries on the rows the scheduler writes; the console never calls into the scheduler itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from flywheel.dashboards._time import age_seconds
from flywheel.scheduler.jobs import PHASES
from flywheel.scheduler.lock import LOCK_NAME
from flywheel.scheduler.results import IterationSummary, parse_summary
from flywheel.store.db import Database
from flywheel.store.models import Iteration, Job, JobState, SchedulerLock, as_utc

# SchedulerLockHandle's default `stale_after`: a lock whose heartbeat is older may be taken over.
STALE_AFTER_S = 60.0


@dataclass(frozen=True)
class LockInfo:
    holder: str
    pid: int
    host: str
    acquired_at: datetime
    heartbeat_at: datetime
    heartbeat_age_s: float
    stale: bool


@dataclass(frozen=True)
class JobInfo:
    id: int
    iteration: int
    kind: str
    state: str
    attempts: int
    max_attempts: int
    progress: float
    heartbeat_at: datetime | None
    heartbeat_age_s: float | None
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None

    @property
    def error_line(self) -> str | None:
        """The first line of the stored error (`Type: message`; a traceback follows it)."""
        if not self.error:
            return None
        return next((line for line in self.error.splitlines() if line.strip()), self.error)

    @classmethod
    def of(cls, job: Job, number: int, now: datetime) -> JobInfo:
        return cls(
            id=job.id,
            iteration=number,
            kind=job.kind,
            state=job.state,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            progress=float(job.progress or 0.0),
            heartbeat_at=as_utc(job.heartbeat_at),
            heartbeat_age_s=age_seconds(job.heartbeat_at, now) if job.state == JobState.RUNNING else None,
            started_at=as_utc(job.started_at),
            finished_at=as_utc(job.finished_at),
            error=job.error,
        )


@dataclass(frozen=True)
class IterationInfo:
    number: int
    task: str
    state: str
    created_at: datetime
    finished_at: datetime | None
    summary: IterationSummary | None  # None until the iteration is done
    jobs: tuple[JobInfo, ...] = field(default=())

    @property
    def phase(self) -> str | None:
        """The running job's kind, else the first one not yet succeeded; None when all four succeeded."""
        ordered = sorted(self.jobs, key=lambda j: PHASES.index(j.kind) if j.kind in PHASES else len(PHASES))
        running = [j.kind for j in ordered if j.state == JobState.RUNNING]
        if running:
            return running[0]
        return next((j.kind for j in ordered if j.state != JobState.SUCCEEDED), None)


@dataclass(frozen=True)
class SchedulerStatus:
    lock: LockInfo | None
    iterations: tuple[IterationInfo, ...]  # newest first
    errors: tuple[JobInfo, ...]  # newest first

    @property
    def current(self) -> IterationInfo | None:
        return self.iterations[0] if self.iterations else None

    @property
    def running(self) -> bool:
        return self.lock is not None and not self.lock.stale


def scheduler_status(
    db: Database, now: datetime | None = None, iterations: int = 20, errors: int = 10
) -> SchedulerStatus:
    now = now or datetime.now(UTC)
    with db.read() as session:
        lock_row = session.get(SchedulerLock, LOCK_NAME)
        lock = None
        if lock_row is not None:
            age = age_seconds(lock_row.heartbeat_at, now) or 0.0
            lock = LockInfo(
                holder=lock_row.holder,
                pid=lock_row.pid,
                host=lock_row.host,
                acquired_at=as_utc(lock_row.acquired_at),  # type: ignore[arg-type]
                heartbeat_at=as_utc(lock_row.heartbeat_at),  # type: ignore[arg-type]
                heartbeat_age_s=age,
                stale=age > STALE_AFTER_S,
            )
        rows = session.scalars(
            select(Iteration).options(selectinload(Iteration.jobs)).order_by(Iteration.number.desc()).limit(iterations)
        ).all()
        infos = tuple(
            IterationInfo(
                number=it.number,
                task=it.task,
                state=it.state,
                created_at=as_utc(it.created_at),  # type: ignore[arg-type]
                finished_at=as_utc(it.finished_at),
                summary=parse_summary(it.summary),
                jobs=tuple(JobInfo.of(job, it.number, now) for job in it.jobs),
            )
            for it in rows
        )
        failed = session.execute(
            select(Job, Iteration.number)
            .join(Iteration, Iteration.id == Job.iteration_id)
            .where(Job.error.is_not(None))
            .order_by(Job.finished_at.desc(), Job.id.desc())
            .limit(errors)
        ).all()
        recent_errors = tuple(JobInfo.of(job, number, now) for job, number in failed)
    return SchedulerStatus(lock, infos, recent_errors)
