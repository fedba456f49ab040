"""Scheduler lock and job bookkeeping on a real database."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest

from flywheel.scheduler.jobs import JobBook, JobFailedError
from flywheel.scheduler.lock import LockHeldError, SchedulerLockHandle, acquire_lock
from flywheel.store import EpisodeStore
from flywheel.store.models import SchedulerLock, utcnow


def test_second_scheduler_is_refused_naming_the_holder(store: EpisodeStore) -> None:
    first = acquire_lock(store.db, "flywheel run (alice)")
    other = SchedulerLockHandle(store.db, "flywheel run (bob)")
    other.pid = first.pid + 1_000_000  # a different, live-looking process on another host
    other.host = "elsewhere"
    with pytest.raises(LockHeldError, match=r"flywheel run \(alice\) \(pid \d+ on "):
        other.acquire()
    first.release()
    other.acquire()
    with pytest.raises(LockHeldError, match="taken over"):
        first.heartbeat()


def _lock_row(store: EpisodeStore) -> tuple[str, int, str] | None:
    with store.db.read() as session:
        row = session.get(SchedulerLock, "scheduler")
        return None if row is None else (row.holder, row.pid, row.host)


def test_lock_of_a_killed_scheduler_is_taken_over(store: EpisodeStore) -> None:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(proc.stdout)
    handle = SchedulerLockHandle(store.db, "me")
    with store.db.write() as session:  # same host, a live process: not taken over
        session.add(SchedulerLock(name="scheduler", holder="live run", pid=os.getppid(), host=handle.host))
    with pytest.raises(LockHeldError, match=r"live run \(pid"):
        handle.acquire()
    assert _lock_row(store) == ("live run", os.getppid(), handle.host)
    with store.db.write() as session:
        session.get(SchedulerLock, "scheduler").pid = dead_pid  # type: ignore[union-attr]
        session.get(SchedulerLock, "scheduler").holder = "killed run"  # type: ignore[union-attr]
    handle.acquire()  # same host, pid gone: taken over
    assert _lock_row(store) == ("me", handle.pid, handle.host)
    handle.heartbeat()  # the lock is really ours now


def test_stale_heartbeat_is_taken_over(store: EpisodeStore) -> None:
    def remote_lock(age: timedelta) -> None:
        with store.db.write() as session:
            session.merge(
                SchedulerLock(
                    name="scheduler", holder="remote run", pid=1, host="other-host", heartbeat_at=utcnow() - age
                )
            )

    handle = SchedulerLockHandle(store.db, "me", stale_after=timedelta(seconds=60))
    remote_lock(timedelta(seconds=5))  # another host, fresh heartbeat: held
    with pytest.raises(LockHeldError, match="remote run"):
        handle.acquire()
    remote_lock(timedelta(minutes=5))
    handle.acquire()
    assert _lock_row(store) == ("me", handle.pid, handle.host)
    handle.heartbeat()


def test_retry_limit(store: EpisodeStore) -> None:
    book = JobBook(store.db)
    book.ensure_iteration(1, "transfer_cube", max_attempts=2)
    book.ensure_iteration(1, "transfer_cube", max_attempts=2)  # idempotent
    for attempt in (1, 2):
        ref = book.claim(1, "train")
        assert ref is not None and ref.attempts == attempt
        book.fail(ref, f"boom {attempt}")
    with pytest.raises(
        JobFailedError, match="iteration 1 train job failed 2 time\\(s\\), the limit; last error: boom 2"
    ):
        book.claim(1, "train")
    assert book.job(1, "train").state == "failed"


def test_succeeded_job_is_not_run_again(store: EpisodeStore) -> None:
    book = JobBook(store.db)
    book.ensure_iteration(3, "transfer_cube", max_attempts=3)
    ref = book.claim(3, "collect")
    assert ref is not None
    book.succeed(ref, {"episodes": 4})
    assert book.claim(3, "collect") is None
    assert book.result(3, "collect") == {"episodes": 4}
