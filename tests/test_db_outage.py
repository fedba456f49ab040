"""Database outages are waited out: the transient-error classifier, and retries against a real PostgreSQL
that is stopped, killed and restarted under the caller."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from flywheel.collect.pool import CollectionError
from flywheel.config import Settings
from flywheel.errors import DatabaseUnavailableError
from flywheel.scheduler import FlywheelConfig, FlywheelLoop, PhaseContext
from flywheel.scheduler.jobs import JobBook
from flywheel.scheduler.lock import acquire_lock
from flywheel.scheduler.results import CollectResult
from flywheel.store import EpisodeStore
from flywheel.store.db import Database, is_transient_db_error
from flywheel.store.models import Job, SchedulerLock
from tests.pg_server import PostgresServer, private_server


def _wrapped(orig: BaseException) -> OperationalError:
    return OperationalError("SELECT 1", {}, orig)


@pytest.mark.parametrize(
    "exc",
    [
        _wrapped(
            psycopg.OperationalError(
                'connection failed: connection to server at "127.0.0.1", port 5432 failed: Connection refused\n'
                "\tIs the server running on that host and accepting TCP/IP connections?"
            )
        ),
        _wrapped(psycopg.OperationalError("server closed the connection unexpectedly")),
        _wrapped(psycopg.errors.AdminShutdown("terminating connection due to administrator command")),
        _wrapped(psycopg.errors.CannotConnectNow("the database system is starting up")),
        _wrapped(psycopg.errors.SerializationFailure("could not serialize access due to concurrent update")),
        _wrapped(psycopg.errors.DeadlockDetected("deadlock detected")),
        _wrapped(psycopg.errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction")),
        _wrapped(sqlite3.OperationalError("database is locked")),
        CollectionError("episode with seed 3 crashed in its worker: ... server closed the connection unexpectedly"),
    ],
    ids=[
        "refused",
        "closed",
        "admin-shutdown",
        "starting-up",
        "serialization",
        "deadlock",
        "read-only",
        "sqlite-locked",
        "as-text",
    ],
)
def test_transient_errors_are_recognised(exc: BaseException) -> None:
    assert is_transient_db_error(exc)


@pytest.mark.parametrize(
    "exc",
    [
        IntegrityError("INSERT", {}, psycopg.errors.UniqueViolation("duplicate key value")),
        _wrapped(psycopg.errors.UndefinedTable('relation "episode" does not exist')),
        _wrapped(psycopg.OperationalError('password authentication failed for user "flywheel"')),
        ValueError("bad frames"),
        DatabaseUnavailableError("database still unreachable after 5 s"),
        ConnectionRefusedError(111, "Connection refused"),  # not the database's: torch.distributed, HTTP, ...
        RuntimeError("the rendezvous connection is closed"),
    ],
    ids=["unique", "undefined-table", "auth", "value", "gave-up", "socket", "runtime"],
)
def test_other_errors_are_not(exc: BaseException) -> None:
    assert not is_transient_db_error(exc)


def test_gave_up_is_not_transient_even_with_a_transient_cause() -> None:
    try:
        try:
            raise _wrapped(psycopg.OperationalError("connection refused"))
        except OperationalError as cause:
            raise DatabaseUnavailableError("still unreachable") from cause
    except DatabaseUnavailableError as exc:
        assert not is_transient_db_error(exc)


# -- a real server, stopped and started under the caller ----------------------------------------------------


@pytest.fixture(scope="module")
def own_pg() -> Iterator[PostgresServer]:
    """A server of this module's own (the session's shared server is never stopped)."""
    with private_server("flywheel-pg-outage-") as (server, _):
        yield server


@pytest.fixture
def pg_store(own_pg: PostgresServer, tmp_path: Path) -> Iterator[EpisodeStore]:
    url = own_pg.create_database(f"o_{uuid.uuid4().hex[:12]}")
    store = EpisodeStore.open(Settings(home=tmp_path / "home", db_url=url, db_retry_seconds=60))
    yield store
    store.db.dispose()


def _outage(server: PostgresServer, kind: str, down_for: float) -> threading.Thread:
    """Stop (fast) or kill -9 the server now, start it again after `down_for` seconds, on a thread."""
    if kind == "kill9":
        server.kill9()
    else:
        server.restart_stop()

    def restart() -> None:
        time.sleep(down_for)
        server.start_again()

    thread = threading.Thread(target=restart)
    thread.start()
    return thread


@pytest.mark.postgres
@pytest.mark.parametrize("kind", ["restart", "kill9"])
def test_transaction_waits_out_an_outage_and_writes_once(
    pg_store: EpisodeStore, own_pg: PostgresServer, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    book = JobBook(pg_store.db)
    book.ensure_iteration(1, "transfer_cube", max_attempts=2)
    capsys.readouterr()
    restarter = _outage(own_pg, kind, down_for=2.0)
    started = time.monotonic()
    try:
        ref = book.claim(1, "collect")
    finally:
        restarter.join()
    assert time.monotonic() - started >= 1.5  # it really waited for the server
    assert ref is not None and ref.attempts == 1  # the outage cost no attempt
    assert book.job(1, "collect").attempts == 1
    lines = capsys.readouterr().err.splitlines()
    assert "unreachable" in lines[0] and "retrying for up to 60 s" in lines[0], lines
    assert lines[-1].startswith("database reachable again after "), lines


@pytest.mark.postgres
def test_outage_longer_than_the_budget_is_a_clear_error(pg_store: EpisodeStore, own_pg: PostgresServer) -> None:
    db = Database(pg_store.db.url, retry_seconds=1.0)
    own_pg.restart_stop()
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailableError, match=r"still unreachable after 1 s .*FLYWHEEL_DB_RETRY_SECONDS"):
            db.query(lambda session: session.execute(text("SELECT 1")).scalar())
        assert time.monotonic() - started < 10
    finally:
        own_pg.start_again()
        db.dispose()


@pytest.mark.postgres
def test_connection_lost_mid_transaction_reruns_the_whole_unit(pg_store: EpisodeStore, own_pg: PostgresServer) -> None:
    """The backend is terminated inside the transaction (what a fast shutdown does): the unit runs again."""
    admin = create_engine(pg_store.db.url, isolation_level="AUTOCOMMIT")
    calls = []

    def unit(session) -> int:  # type: ignore[no-untyped-def]
        calls.append(1)
        session.add(SchedulerLock(name=f"lock-{len(calls)}", holder="t", pid=1, host="h"))
        session.flush()
        if len(calls) == 1:
            pid = session.execute(text("SELECT pg_backend_pid()")).scalar()
            with admin.connect() as conn:
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            session.execute(text("SELECT 1"))  # the lost connection surfaces here
        return len(calls)

    assert pg_store.db.transaction(unit) == 2
    with pg_store.db.read() as session:
        assert session.scalars(select(SchedulerLock.name)).all() == ["lock-2"]  # the first unit rolled back
    admin.dispose()


@pytest.mark.postgres
def test_loop_job_interrupted_by_an_outage_keeps_its_attempts(pg_store: EpisodeStore, own_pg: PostgresServer) -> None:
    """A phase whose transaction loses its connection mid-way is run again on the same attempt."""
    settings = Settings(home=pg_store.files.root.parent, db_url=pg_store.db.url)
    loop = FlywheelLoop(PhaseContext(pg_store, settings, FlywheelConfig(max_attempts=1), progress=False))
    loop._lock = acquire_lock(pg_store.db, "test")
    loop.book.ensure_iteration(1, "transfer_cube", max_attempts=1)
    admin = create_engine(pg_store.db.url, isolation_level="AUTOCOMMIT")
    runs = []

    def body() -> CollectResult:
        runs.append(1)
        with pg_store.db.write() as session:
            session.execute(select(func.count()).select_from(Job))
            if len(runs) == 1:
                pid = session.execute(text("SELECT pg_backend_pid()")).scalar()
                with admin.connect() as conn:
                    conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                session.execute(text("SELECT 1"))
        return CollectResult(episodes=len(runs))

    assert loop._job(1, "collect", CollectResult, body).episodes == 2  # the outage's attempt ran again
    job = loop.book.job(1, "collect")
    assert (job.state, job.attempts) == ("succeeded", 1)  # max_attempts=1: a counted failure would have failed it
    loop._lock.release()
    admin.dispose()
