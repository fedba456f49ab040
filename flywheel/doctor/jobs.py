"""No job stuck in `running` without a live scheduler; the safe repair hands such jobs back as the scheduler would.

Liveness follows the scheduler lock's own rule (`SchedulerLockHandle.acquire`): a lock is live unless its
heartbeat is older than the handle's `stale_after`, or its holder ran on this host and is gone. A job is
stuck when it is `running`, its heartbeat is older than that same threshold, and no live scheduler holds the
lock. The repair takes the lock itself (so no scheduler can start meanwhile) and records each stuck job's
interrupted attempt with `JobBook.fail`, exactly as the scheduler records a failed attempt: back to `pending`
(or `failed` at the attempt limit, as `JobBook.claim` would decide on resume). The attempt was counted when it
was claimed; nothing counts it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from flywheel.dashboards._time import as_utc
from flywheel.doctor.problems import DoctorContext, Findings
from flywheel.scheduler.jobs import JobBook, JobRef
from flywheel.scheduler.lock import LOCK_NAME, LockHeldError, SchedulerLockHandle, _pid_alive, acquire_lock
from flywheel.store.models import Iteration, Job, SchedulerLock

CHECK = "stale-job"
REPAIR_HOLDER = "flywheel doctor --repair"


@dataclass(frozen=True)
class StuckJob:
    ref: JobRef
    heartbeat_at: datetime | None
    max_attempts: int


def lock_is_live(row: SchedulerLock | None, probe: SchedulerLockHandle, now: datetime) -> bool:
    """The scheduler lock's takeover rule, read without taking the lock (mirrors `SchedulerLockHandle.acquire`)."""
    if row is None:
        return False
    heartbeat = as_utc(row.heartbeat_at)
    stale = heartbeat is None or now - heartbeat > probe.stale_after
    dead = row.host == probe.host and not _pid_alive(row.pid)
    return not (stale or dead)


def _stuck_jobs(
    ctx: DoctorContext, probe: SchedulerLockHandle, holding: bool = False
) -> tuple[list[StuckJob], int, bool]:
    """(stuck jobs, jobs examined, whether a live scheduler holds the lock), read in one transaction.
    `holding`: the caller holds the lock itself, so no scheduler is running any job."""
    with ctx.store.db.read() as session:
        lock = session.get(SchedulerLock, LOCK_NAME)
        rows = session.execute(select(Job, Iteration.number).join(Iteration).order_by(Job.id)).all()
        live = not holding and lock_is_live(lock, probe, ctx.now)
        stuck: list[StuckJob] = []
        for job, number in rows:
            heartbeat = as_utc(job.heartbeat_at)
            if live or job.state != "running":
                continue
            if heartbeat is not None and ctx.now - heartbeat <= probe.stale_after:
                continue
            ref = JobRef(job.id, number, job.kind, job.attempts, dict(job.params or {}))
            stuck.append(StuckJob(ref, heartbeat, job.max_attempts))
    return stuck, len(rows), live


def _subject(job: StuckJob) -> str:
    return f"job {job.ref.id} (iteration {job.ref.iteration} {job.ref.kind})"


def _last_beat(job: StuckJob, now: datetime) -> str:
    if job.heartbeat_at is None:
        return "never beat a heartbeat"
    return f"last heartbeat {int((now - job.heartbeat_at).total_seconds())} s ago"


def check(ctx: DoctorContext) -> Findings:
    probe = SchedulerLockHandle(ctx.store.db, REPAIR_HOLDER)
    stuck, examined, live = _stuck_jobs(ctx, probe)
    findings = Findings(CHECK, checked=examined)
    if live:
        findings.notes.append("a live scheduler holds the lock: its running jobs are not judged")
    for job in stuck:
        findings.add(
            _subject(job),
            f"is running (attempt {job.ref.attempts} of {job.max_attempts}) but {_last_beat(job, ctx.now)} and no live "
            "scheduler holds the lock",
            "`flywheel doctor --repair` hands it back to pending (the next `flywheel run` also re-claims it)",
            repairable=True,
        )
    return findings


def repair(ctx: DoctorContext) -> list[str]:
    """Hand stuck jobs back under the scheduler lock; nothing if a live scheduler holds it."""
    try:
        handle = acquire_lock(ctx.store.db, REPAIR_HOLDER)
    except LockHeldError:
        return []
    try:
        stuck, _, _ = _stuck_jobs(ctx, handle, holding=True)
        book = JobBook(ctx.store.db)
        done: list[str] = []
        for job in stuck:
            book.fail(job.ref, f"killed while running ({_last_beat(job, ctx.now)}); handed back by {REPAIR_HOLDER}")
            state = "failed (its attempt limit is reached)" if job.ref.attempts >= job.max_attempts else "pending"
            done.append(f"{_subject(job)}: running → {state}")
        return done
    finally:
        handle.release()
