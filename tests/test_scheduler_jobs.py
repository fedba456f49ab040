"""Scheduler lock and job bookkeeping on a real database."""

from __future__ import annotations

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


def test_lock_of_a_killed_scheduler_is_taken_over(store: EpisodeStore) -> None:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(proc.stdout)
    handle = SchedulerLockHandle(store.db, "me")
    with store.db.write() as session:
        session.add(SchedulerLock(name="scheduler", holder="killed run", pid=dead_pid, host=handle.host))
    handle.acquire()  # same host, pid gone: taken over


def test_stale_heartbeat_is_taken_over(store: EpisodeStore) -> None:
    with store.db.write() as session:
        session.add(
            SchedulerLock(
                name="scheduler",
                holder="remote run",
                pid=1,
                host="other-host",
                heartbeat_at=utcnow() - timedelta(minutes=5),
            )
        )
    SchedulerLockHandle(store.db, "me", stale_after=timedelta(seconds=60)).acquire()


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
