"""Database engine and sessions: SQLite pragmas, write transactions that never deadlock, schema checks,
and outages (a restart, a failover, a lost connection) waited out instead of failing the caller."""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from flywheel.config import DEFAULT_DB_RETRY_SECONDS
from flywheel.errors import DatabaseUnavailableError, FlywheelError
from flywheel.redact import redact_url

IMMEDIATE = "flywheel_immediate"
T = TypeVar("T")

# SQLSTATEs that mean "try again": connection exceptions (class 08), serialization failure and deadlock,
# a read-only transaction (a standby during failover), operator intervention (admin shutdown, crash
# shutdown, cannot connect now: the server is starting up or shutting down).
TRANSIENT_SQLSTATE_CLASSES = ("08",)
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "25006", "57P01", "57P02", "57P03"})
# The same conditions as the drivers word them (psycopg raises connection failures without a SQLSTATE;
# errors passed between processes arrive as text).
TRANSIENT_MESSAGES = (
    "connection refused",
    "could not connect to server",
    "is the server running",
    "server closed the connection unexpectedly",
    "terminating connection due to administrator command",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "consuming input failed",
    "connection is closed",
    "connection already closed",
    "ssl connection has been closed unexpectedly",
    "could not receive data from server",
    "could not send data to server",
    "in a read-only transaction",
    "could not serialize access",
    "deadlock detected",
    "database is locked",
)
BACKOFF_START_S = 0.2
BACKOFF_MAX_S = 2.0


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException) and id(orig) not in seen:
            yield orig
            seen.add(id(orig))
        current = current.__cause__ or current.__context__


def is_transient_db_error(exc: BaseException) -> bool:
    """True for errors an outage causes and a retry cures: a refused or lost connection, a server shutting
    down or starting up, a serialization failure or deadlock, a read-only standby, SQLite's lock timeout."""
    for err in _exception_chain(exc):
        if isinstance(err, DatabaseUnavailableError):
            return False  # already waited out for the configured time: give up
        if isinstance(err, DBAPIError) and err.connection_invalidated:
            return True
        sqlstate = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)
        if isinstance(sqlstate, str) and (
            sqlstate in TRANSIENT_SQLSTATES or sqlstate.startswith(TRANSIENT_SQLSTATE_CLASSES)
        ):
            return True
        text_ = str(err).lower()
        if _speaks_for_database(err) and any(message in text_ for message in TRANSIENT_MESSAGES):
            return True
    return False


def _speaks_for_database(err: BaseException) -> bool:
    """Whether an error's text is the database's word: a SQLAlchemy or driver error, or a flywheel error that
    relays one from a worker process. A bare `ConnectionRefusedError` or `RuntimeError` (torch.distributed, an
    HTTP client) is not an outage to wait out."""
    return isinstance(err, SQLAlchemyError | sqlite3.Error | FlywheelError) or type(err).__module__.startswith(
        "psycopg"
    )


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return lines[0] if lines else type(orig).__name__


class OutageReporter:
    """The progress lines of one retried operation: one when the database is first unreachable, one when it
    answers again (with the stall in seconds)."""

    def __init__(self, safe_url: str, limit_s: float) -> None:
        self.safe_url = safe_url
        self.limit_s = limit_s
        self.started: float | None = None

    def _print(self, line: str) -> None:
        sys.stderr.write(line + "\n")  # one write: lines from the heartbeat thread do not interleave
        sys.stderr.flush()

    def failed(self, exc: BaseException) -> None:
        if self.started is None:
            self.started = time.monotonic()
            self._print(f"database {self.safe_url} unreachable ({_reason(exc)}); retrying for up to {self.limit_s:g} s")

    def recovered(self) -> None:
        if self.started is not None:
            self._print(f"database reachable again after {time.monotonic() - self.started:.1f} s")


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_db_engine(url: str, busy_timeout_ms: int = 30_000) -> Engine:
    """An engine for `url`; for SQLite: WAL, foreign keys, busy timeout and explicit BEGIN handling."""
    parsed = make_url(url)
    if is_sqlite(url):
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000})
        _install_sqlite_hooks(engine, busy_timeout_ms)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    return engine


def _install_sqlite_hooks(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself so write transactions can take the lock up front.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # BEGIN IMMEDIATE for writers: waits on the busy timeout instead of failing with
        # "database is locked" when a read transaction is upgraded to a write.
        immediate = connection.get_execution_options().get(IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """Owns one engine; hands out read sessions and write sessions (short, lock-taking transactions).

    Outages: opening a session waits out a transient error for up to `retry_seconds`; `transaction` and
    `query` re-run a whole unit of work the same way (the unit must be idempotent: a commit whose
    acknowledgement was lost is retried). `retry_seconds=0` fails at once.
    """

    def __init__(
        self, url: str, busy_timeout_ms: int = 30_000, retry_seconds: float = DEFAULT_DB_RETRY_SECONDS
    ) -> None:
        self.url = url
        self.retry_seconds = retry_seconds
        self.engine = create_db_engine(url, busy_timeout_ms)

    def retrying(self, fn: Callable[[], T]) -> T:
        """Call `fn`, re-calling it with backoff while it fails on a transient database error, for up to
        `retry_seconds`; then raise DatabaseUnavailableError. Other errors propagate at once."""
        reporter = OutageReporter(self.safe_url, self.retry_seconds)
        deadline = time.monotonic() + self.retry_seconds
        delay = BACKOFF_START_S
        while True:
            try:
                result = fn()
            except Exception as exc:
                if not is_transient_db_error(exc):
                    raise
                reporter.failed(exc)
                if time.monotonic() + delay > deadline:
                    raise DatabaseUnavailableError(
                        f"database {self.safe_url} still unreachable after {self.retry_seconds:g} s "
                        f"({_reason(exc)}); nothing was lost: start the server (or fix FLYWHEEL_DB_URL) and re-run "
                        "the command, or raise FLYWHEEL_DB_RETRY_SECONDS to wait longer"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            reporter.recovered()
            return result

    def transaction(self, fn: Callable[[Session], T]) -> T:
        """Run `fn(session)` in a write transaction, retried as a whole on a transient error."""

        def unit() -> T:
            with self.write() as session:
                return fn(session)

        return self.retrying(unit)

    def query(self, fn: Callable[[Session], T]) -> T:
        """Run `fn(session)` in a read session, retried as a whole on a transient error."""

        def unit() -> T:
            with self.read() as session:
                return fn(session)

        return self.retrying(unit)

    def wait_until_reachable(self) -> None:
        """Block until `SELECT 1` succeeds (for up to `retry_seconds`), or raise DatabaseUnavailableError."""
        self.retrying(self._select_one)

    def _select_one(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def ping(self) -> None:
        """Connect once, or raise a one-line error naming the URL."""
        try:
            self._select_one()
        except SQLAlchemyError as exc:
            raise DatabaseUnavailableError(
                f"cannot connect to database {self.safe_url}: {_reason(exc)}; check FLYWHEEL_DB_URL and that the "
                "server is running"
            ) from None

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for queries; rolled back at the end. Waits out an outage before it starts."""
        with self.retrying(self.engine.connect) as conn, Session(bind=conn, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on any error. Waits out an outage
        before it starts; an outage inside the transaction propagates (use `transaction` to re-run it)."""
        with self.retrying(self.engine.connect) as conn:
            if is_sqlite(self.url):
                conn = conn.execution_options(**{IMMEDIATE: True})
            with Session(bind=conn, expire_on_commit=False) as session:
                try:
                    yield session
                    session.commit()
                except BaseException:
                    session.rollback()
                    raise

    def dispose(self) -> None:
        self.engine.dispose()
