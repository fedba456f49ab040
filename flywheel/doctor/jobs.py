"""No job stuck in `running` without a live scheduler; the safe repair hands such jobs back as the scheduler would.

Liveness is the scheduler lock's own rule (`SchedulerLockHandle.is_live`, which `acquire` applies too). A job is
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

from flywheel.doctor.problems import DoctorContext, Findings
from flywheel.scheduler.jobs import RETRY_FAILED_COMMAND, JobBook, JobRef, last_line
from flywheel.scheduler.lock import LOCK_NAME, LockHeldError, SchedulerLockHandle, acquire_lock
from flywheel.store.models import Iteration, Job, JobState, SchedulerLock, as_utc

CHECK = "stale-job"
REPAIR_HOLDER = "flywheel doctor --repair"


@dataclass(frozen=True)
class StuckJob:
    ref: JobRef
    heartbeat_at: datetime | None
    max_attempts: int


def _stuck_jobs(
    ctx: DoctorContext, probe: SchedulerLockHandle, holding: bool = False
) -> tuple[list[StuckJob], int, bool]:
    """(stuck jobs, jobs examined, whether a live scheduler holds the lock), read in one transaction.
    `holding`: the caller holds the lock itself, so no scheduler is running any job."""
    with ctx.store.db.read() as session:
        lock = session.get(SchedulerLock, LOCK_NAME)
        rows = session.execute(select(Job, Iteration.number).join(Iteration).order_by(Job.id)).all()
        live = not holding and probe.is_live(lock, ctx.now)
        stuck: list[StuckJob] = []
        for job, number in rows:
            heartbeat = as_utc(job.heartbeat_at)
            if live or job.state != JobState.RUNNING:
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
            spent = job.ref.attempts >= job.max_attempts
            state = f"{JobState.FAILED} (its attempt limit is reached)" if spent else JobState.PENDING
            done.append(f"{_subject(job)}: {JobState.RUNNING} → {state}")
        return done
    finally:
        handle.release()


FAILED_CHECK = "failed-job"


def check_failed(ctx: DoctorContext) -> Findings:
    """Jobs at their attempt limit: `flywheel run` stops at them until someone fixes the cause and retries."""
    with ctx.store.db.read() as session:
        rows = session.execute(select(Job, Iteration.number).join(Iteration).order_by(Job.id)).all()
        findings = Findings(FAILED_CHECK, checked=len(rows))
        for job, number in rows:
            if job.state != JobState.FAILED:
                continue
            findings.add(
                f"job {job.id} (iteration {number} {job.kind})",
                f"failed {job.attempts} time(s), its limit; last error: {last_line(job.error)}",
                f"fix the cause, then `{RETRY_FAILED_COMMAND}` (audited)",
            )
    return findings
