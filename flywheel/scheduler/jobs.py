"""Iterations and jobs as rows: created once, claimed with attempts counted, finished with a result."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from flywheel.errors import FlywheelError
from flywheel.store.db import Database
from flywheel.store.models import Iteration, Job, utcnow

PHASES = ("collect", "train", "eval", "promote")


class JobFailedError(FlywheelError):
    """A job used up its attempts."""


@dataclass(frozen=True)
class JobRef:
    id: int
    iteration: int
    kind: str
    attempts: int
    params: dict[str, Any]


class JobBook:
    """Reads and writes iteration/job rows."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def ensure_iteration(self, number: int, task: str, max_attempts: int) -> None:
        with self.db.write() as session:
            if session.scalars(select(Iteration).where(Iteration.number == number)).first() is not None:
                return
            iteration = Iteration(number=number, task=task, state="running")
            iteration.jobs = [Job(kind=kind, state="pending", max_attempts=max_attempts) for kind in PHASES]
            session.add(iteration)

    def completed_iterations(self) -> list[int]:
        with self.db.read() as session:
            return list(
                session.scalars(select(Iteration.number).where(Iteration.state == "done").order_by(Iteration.number))
            )

    def latest_iteration(self) -> int | None:
        with self.db.read() as session:
            return session.scalars(select(Iteration.number).order_by(Iteration.number.desc())).first()

    def job(self, number: int, kind: str) -> Job:
        with self.db.read() as session:
            return session.scalars(
                select(Job).join(Iteration).where(Iteration.number == number, Job.kind == kind)
            ).one()

    def claim(self, number: int, kind: str) -> JobRef | None:
        """Mark a job running (attempt +1) unless it already succeeded; a `running` job left by a killed
        scheduler is re-claimed (the lock guarantees nobody else is running it)."""
        with self.db.write() as session:
            job = session.scalars(select(Job).join(Iteration).where(Iteration.number == number, Job.kind == kind)).one()
            if job.state == "succeeded":
                return None
            if job.attempts >= job.max_attempts:
                job.state = "failed"
                raise JobFailedError(
                    f"iteration {number} {kind} job failed {job.attempts} time(s), the limit; last error: "
                    f"{(job.error or 'killed while running').splitlines()[-1]}"
                )
            job.state = "running"
            job.attempts += 1
            job.started_at = job.heartbeat_at = utcnow()
            job.error = None
            return JobRef(job.id, number, kind, job.attempts, dict(job.params or {}))

    def succeed(self, ref: JobRef, result: dict[str, Any]) -> None:
        with self.db.write() as session:
            job = session.get(Job, ref.id)
            assert job is not None
            job.state, job.result, job.progress, job.finished_at = "succeeded", result, 1.0, utcnow()

    def fail(self, ref: JobRef, error: str) -> None:
        with self.db.write() as session:
            job = session.get(Job, ref.id)
            assert job is not None
            job.error = error
            job.state = "failed" if job.attempts >= job.max_attempts else "pending"
            job.finished_at = utcnow()

    def set_params(self, ref: JobRef, params: dict[str, Any]) -> None:
        with self.db.write() as session:
            job = session.get(Job, ref.id)
            assert job is not None
            job.params = {**(job.params or {}), **params}

    def result(self, number: int, kind: str) -> dict[str, Any]:
        return dict(self.job(number, kind).result or {})

    def finish_iteration(self, number: int, summary: dict[str, Any]) -> None:
        with self.db.write() as session:
            iteration = session.scalars(select(Iteration).where(Iteration.number == number)).one()
            iteration.state, iteration.summary, iteration.finished_at = "done", summary, utcnow()

    def summaries(self) -> list[dict[str, Any]]:
        with self.db.read() as session:
            rows = session.scalars(select(Iteration).where(Iteration.state == "done").order_by(Iteration.number))
            return [dict(r.summary or {}) for r in rows]


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
    with db.write() as session:
        job = session.get(Job, job_id)
        if job is not None:
            job.heartbeat_at = utcnow()
