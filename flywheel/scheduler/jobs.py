"""Iterations and jobs as rows: created once, claimed with attempts counted, finished with a result."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from flywheel.errors import DatabaseUnavailableError, FlywheelError
from flywheel.identity import process_identity
from flywheel.scheduler.results import IterationSummary, StoredResult, parse_summary
from flywheel.store.db import Database, is_transient_db_error
from flywheel.store.models import JOB_KINDS, Iteration, IterationState, Job, JobRetry, JobState, utcnow

PHASES = JOB_KINDS  # an iteration's jobs, in the order they run


RETRY_FAILED_COMMAND = 'flywheel run --retry-failed --reason "<what you fixed>"'


class JobFailedError(FlywheelError):
    """A job used up its attempts."""


class RetryRefusedError(FlywheelError):
    """`--retry-failed` was asked without a reason, or there is nothing to retry."""


@dataclass(frozen=True)
class JobRef:
    id: int
    iteration: int
    kind: str
    attempts: int
    params: dict[str, Any]


@dataclass(frozen=True)
class RetriedJob:
    iteration: int
    kind: str
    previous_attempts: int
    previous_error: str | None


@dataclass(frozen=True)
class RetryRequest:
    """`flywheel run --retry-failed`: who asks (a validated name) and why."""

    actor: str
    reason: str


def last_line(error: str | None) -> str:
    return (error or "killed while running").strip().splitlines()[-1]


class JobBook:
    """Reads and writes iteration/job rows. Every write is one transaction, re-run whole after an outage
    (`Database.transaction`), so each is written to be idempotent."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def ensure_iteration(self, number: int, task: str, max_attempts: int) -> None:
        def unit(session: Session) -> None:
            if session.scalars(select(Iteration).where(Iteration.number == number)).first() is not None:
                return
            iteration = Iteration(number=number, task=task, state=IterationState.RUNNING)
            iteration.jobs = [Job(kind=kind, state=JobState.PENDING, max_attempts=max_attempts) for kind in PHASES]
            session.add(iteration)

        self.db.transaction(unit)

    def completed_iterations(self) -> list[int]:
        done = select(Iteration.number).where(Iteration.state == IterationState.DONE).order_by(Iteration.number)
        return self.db.query(lambda session: list(session.scalars(done)))

    def latest_iteration(self) -> int | None:
        return self.db.query(
            lambda session: session.scalars(select(Iteration.number).order_by(Iteration.number.desc())).first()
        )

    def job(self, number: int, kind: str) -> Job:
        return self.db.query(lambda session: _job_row(session, number, kind))

    def claim(self, number: int, kind: str) -> JobRef | None:
        """Mark a job running (attempt +1) unless it already succeeded; a `running` job left by a killed
        scheduler is re-claimed (the lock guarantees nobody else is running it)."""

        before = self.db.query(lambda session: _job_row(session, number, kind).attempts)

        def unit(session: Session) -> JobRef | str | None:
            job = _job_row(session, number, kind)
            if job.state == JobState.SUCCEEDED:
                return None
            if job.state == JobState.RUNNING and job.attempts == before + 1:
                # This unit's own claim, committed before a lost acknowledgement made it run again.
                return JobRef(job.id, number, kind, job.attempts, dict(job.params or {}))
            if job.attempts >= job.max_attempts:
                job.state = JobState.FAILED
                return (
                    f"iteration {number} {kind} job failed {job.attempts} time(s), the limit; last error: "
                    f"{last_line(job.error)}. Fix the cause, then resume with `{RETRY_FAILED_COMMAND}` "
                    "(resets its attempts; the reset is audited)"
                )
            job.state = JobState.RUNNING
            job.attempts += 1
            job.started_at = job.heartbeat_at = utcnow()
            job.error = None
            return JobRef(job.id, number, kind, job.attempts, dict(job.params or {}))

        outcome = self.db.transaction(unit)
        if isinstance(outcome, str):
            raise JobFailedError(outcome)
        return outcome

    def succeed(self, ref: JobRef, result: StoredResult | dict[str, Any]) -> None:
        stored = result.to_json() if isinstance(result, StoredResult) else result

        def unit(session: Session) -> None:
            job = session.get(Job, ref.id)
            assert job is not None
            job.state, job.result, job.progress, job.finished_at = JobState.SUCCEEDED, stored, 1.0, utcnow()

        self.db.transaction(unit)

    def fail(self, ref: JobRef, error: str) -> None:
        def unit(session: Session) -> None:
            job = session.get(Job, ref.id)
            assert job is not None
            job.error = error
            job.state = JobState.FAILED if job.attempts >= job.max_attempts else JobState.PENDING
            job.finished_at = utcnow()

        self.db.transaction(unit)

    def release(self, ref: JobRef, note: str) -> None:
        """Give back an attempt a database outage interrupted: the job is pending again, its count as it was
        before the claim (idempotent: only the claim `ref` made is undone)."""

        def unit(session: Session) -> None:
            job = session.get(Job, ref.id)
            assert job is not None
            if job.state == JobState.RUNNING and job.attempts == ref.attempts:
                job.attempts -= 1
                job.state, job.error = JobState.PENDING, note

        self.db.transaction(unit)

    def retry_failed(self, actor: str, reason: str) -> list[RetriedJob]:
        """Reset the attempts of every job that reached its limit, with one audit row each (who, why, the
        job's previous count and error). Refused without a reason or when nothing failed."""
        if not reason.strip():
            raise RetryRefusedError(
                '--retry-failed needs --reason "<what you fixed>" (recorded in the audit trail with your name)'
            )

        at_limit = (
            select(Job)
            .join(Iteration)
            .where(Job.state != JobState.SUCCEEDED, Job.attempts >= Job.max_attempts)
            .order_by(Iteration.number, Job.id)
        )
        expected = self.db.query(
            lambda session: [
                RetriedJob(job.iteration.number, job.kind, job.attempts, job.error) for job in session.scalars(at_limit)
            ]
        )
        if not expected:
            raise RetryRefusedError("--retry-failed: no job has reached its attempt limit; run `flywheel run`")

        def unit(session: Session) -> list[RetriedJob]:
            rows = session.scalars(at_limit).all()
            retried = []
            for job in rows:
                number = job.iteration.number
                session.add(
                    JobRetry(
                        job_id=job.id,
                        iteration=number,
                        kind=job.kind,
                        previous_attempts=job.attempts,
                        previous_error=job.error,
                        actor=actor,
                        recorded_by=process_identity(),
                        reason=reason.strip(),
                    )
                )
                retried.append(RetriedJob(number, job.kind, job.attempts, job.error))
                job.attempts, job.state = 0, JobState.PENDING
            return retried

        # Empty only when a lost acknowledgement re-ran a unit whose resets had committed: they are the expected.
        return self.db.transaction(unit) or expected

    def reopen(self, number: int, kind: str, actor: str, reason: str) -> bool:
        """Send a succeeded job back to `pending` with fresh attempts (its result is cleared), with an audit row
        like `retry_failed`'s. False, and nothing written, when the job is not `succeeded` (already reopened)."""

        def unit(session: Session) -> bool:
            job = _job_row(session, number, kind)
            if job.state != JobState.SUCCEEDED:
                return False
            session.add(
                JobRetry(
                    job_id=job.id,
                    iteration=number,
                    kind=kind,
                    previous_attempts=job.attempts,
                    previous_error=None,
                    actor=actor,
                    recorded_by=process_identity(),
                    reason=reason,
                )
            )
            job.attempts, job.state, job.result = 0, JobState.PENDING, None
            return True

        return self.db.transaction(unit)

    def retries(self) -> list[JobRetry]:
        return self.db.query(lambda session: list(session.scalars(select(JobRetry).order_by(JobRetry.id))))

    def set_params(self, ref: JobRef, params: dict[str, Any]) -> None:
        def unit(session: Session) -> None:
            job = session.get(Job, ref.id)
            assert job is not None
            job.params = {**(job.params or {}), **params}

        self.db.transaction(unit)

    def result(self, number: int, kind: str) -> dict[str, Any]:
        return dict(self.job(number, kind).result or {})

    def finish_iteration(self, number: int, summary: IterationSummary) -> None:
        stored = summary.to_json()

        def unit(session: Session) -> None:
            iteration = session.scalars(select(Iteration).where(Iteration.number == number)).one()
            iteration.state, iteration.summary, iteration.finished_at = IterationState.DONE, stored, utcnow()

        self.db.transaction(unit)

    def summaries(self) -> list[IterationSummary]:
        """Finished iterations' summaries, oldest first (rows stored by older versions parse too)."""

        def unit(session: Session) -> list[IterationSummary]:
            done = select(Iteration).where(Iteration.state == IterationState.DONE).order_by(Iteration.number)
            rows = session.scalars(done)
            return [s for s in (parse_summary(r.summary) for r in rows) if s is not None]

        return self.db.query(unit)


def _job_row(session: Session, number: int, kind: str) -> Job:
    return session.scalars(select(Job).join(Iteration).where(Iteration.number == number, Job.kind == kind)).one()


class Heartbeat:
    """Calls `beat` every `interval` seconds on a daemon thread while a job runs."""

    def __init__(self, beat: Callable[[], None], interval: float) -> None:
        self._beat = beat
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="flywheel-heartbeat")
        self.error: BaseException | None = None

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._beat()
            except Exception as exc:
                if isinstance(exc, DatabaseUnavailableError) or is_transient_db_error(exc):
                    continue  # an outage: the job's own database work waits it out; a missed beat is no failure
                self.error = exc
                return
            except BaseException as exc:  # surfaced by the scheduler after the job
                self.error = exc
                return

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def job_heartbeat(db: Database, job_id: int) -> None:
    def unit(session: Session) -> None:
        job = session.get(Job, job_id)
        if job is not None:
            job.heartbeat_at = utcnow()

    db.transaction(unit)
