"""One scheduler per database: a lock row naming its holder, kept alive by heartbeats."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from flywheel.errors import FlywheelError
from flywheel.store.db import Database
from flywheel.store.models import SchedulerLock, as_utc, utcnow

LOCK_NAME = "scheduler"


class LockHeldError(FlywheelError):
    """Another scheduler holds the lock."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SchedulerLockHandle:
    """Acquire, heartbeat and release the scheduler lock.

    A lock is taken over when its heartbeat is older than `stale_after`, or when its holder ran on this
    host and that process no longer exists (a `kill -9`).
    """

    def __init__(self, db: Database, holder: str, stale_after: timedelta = timedelta(seconds=60)) -> None:
        self.db = db
        self.holder = holder
        self.pid = os.getpid()
        self.host = socket.gethostname()
        self.stale_after = stale_after

    def is_live(self, row: SchedulerLock | None, now: datetime) -> bool:
        """Whether `row` still holds the lock: its heartbeat is fresh and, on this host, its process exists."""
        if row is None:
            return False
        heartbeat = as_utc(row.heartbeat_at)
        stale = heartbeat is None or now - heartbeat > self.stale_after
        dead = row.host == self.host and not _pid_alive(row.pid)
        return not (stale or dead)

    def acquire(self) -> None:
        self.db.transaction(self._acquire)
        # IntegrityError here means a concurrent acquire won the race.

    def _acquire(self, session: Session) -> None:
        row = session.get(SchedulerLock, LOCK_NAME)
        now = utcnow()
        if row is not None and row.pid == self.pid and row.host == self.host:
            row.heartbeat_at = now  # ours already (a retried acquire whose first commit went through)
            return
        if row is not None:
            if self.is_live(row, now):
                raise LockHeldError(
                    f"another scheduler is running on this database: {row.holder} (pid {row.pid} on {row.host}, "
                    f"since {row.acquired_at:%Y-%m-%d %H:%M:%S}); stop it first or wait for it to finish"
                )
            session.delete(row)
            session.flush()
        session.add(
            SchedulerLock(
                name=LOCK_NAME, holder=self.holder, pid=self.pid, host=self.host, acquired_at=now, heartbeat_at=now
            )
        )

    def heartbeat(self) -> None:
        def unit(session: Session) -> None:
            row = session.get(SchedulerLock, LOCK_NAME)
            if row is None or row.pid != self.pid or row.host != self.host:
                raise LockHeldError("the scheduler lock was taken over by another scheduler; stopping")
            row.heartbeat_at = utcnow()

        self.db.transaction(unit)

    def release(self) -> None:
        def unit(session: Session) -> None:
            row = session.get(SchedulerLock, LOCK_NAME)
            if row is not None and row.pid == self.pid and row.host == self.host:
                session.delete(row)

        self.db.transaction(unit)


def acquire_lock(db: Database, holder: str) -> SchedulerLockHandle:
    handle = SchedulerLockHandle(db, holder)
    try:
        handle.acquire()
    except IntegrityError:
        raise LockHeldError("another scheduler acquired the lock at the same moment; try again") from None
    return handle
