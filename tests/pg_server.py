"""A throwaway PostgreSQL server on loopback for tests (initdb + pg_ctl; runs as `postgres` when root)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def find_postgres_bin() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    admin_url: str
    datadir: Path | None = None
    bindir: Path | None = None
    run_as: list[str] | None = None
    options: str = ""
    logfile: Path | None = None

    @classmethod
    def external(cls, url: str) -> PostgresServer:
        return cls(admin_url=url)

    @classmethod
    def start(cls, bindir: Path, workdir: Path) -> PostgresServer:
        run_as: list[str] = []
        if os.geteuid() == 0:
            run_as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(workdir, "postgres", "postgres")
        datadir = workdir / "data"
        port = _free_port()
        _run(
            [
                *run_as,
                str(bindir / "initdb"),
                "-D",
                str(datadir),
                "-A",
                "trust",
                "-U",
                "flywheel",
                "--no-sync",
            ]
        )
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {workdir} -c fsync=off"
        _run(
            [
                *run_as,
                str(bindir / "pg_ctl"),
                "-D",
                str(datadir),
                "-o",
                options,
                "-w",
                "-l",
                str(workdir / "log"),
                "start",
            ]
        )
        url = f"postgresql+psycopg://flywheel@127.0.0.1:{port}/postgres"
        return cls(url, datadir, bindir, run_as, options, workdir / "log")

    def create_database(self, name: str) -> str:
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def stop(self) -> None:
        if self.datadir is not None and self.bindir is not None:
            subprocess.run(
                [
                    *(self.run_as or []),
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.datadir),
                    "-m",
                    "fast",
                    "stop",
                ],
                check=False,
                capture_output=True,
            )

    # -- faults, for outage tests (a server this process started) -------------------------------------------

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        assert self.datadir is not None and self.bindir is not None, "not a server this test started"
        cmd = [*(self.run_as or []), str(self.bindir / "pg_ctl"), "-D", str(self.datadir), *args]
        return subprocess.run(cmd, capture_output=True, text=True)

    def restart_stop(self) -> None:
        """`pg_ctl -m fast stop`: sessions are terminated (admin shutdown), the server goes away."""
        proc = self._pg_ctl("-m", "fast", "-w", "stop")
        if proc.returncode != 0:
            raise RuntimeError(f"pg_ctl stop failed: {proc.stderr.strip()}")

    def kill9(self) -> None:
        """SIGKILL the postmaster (a crash): its backends notice and exit; the next start runs crash recovery."""
        assert self.datadir is not None
        pid = int(self.postmaster_pid_file().read_text().splitlines()[0])
        os.kill(pid, signal.SIGKILL)

    def postmaster_pid_file(self) -> Path:
        assert self.datadir is not None
        return self.datadir / "postmaster.pid"

    def start_again(self, timeout: float = 60) -> None:
        """Start the server after a stop or a kill (retried while the killed server's backends still exit)."""
        assert self.logfile is not None
        deadline = time.monotonic() + timeout
        while True:
            proc = self._pg_ctl("-o", self.options, "-w", "-l", str(self.logfile), "start")
            if proc.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"pg_ctl start failed: {proc.stderr.strip() or proc.stdout.strip()}")
            time.sleep(0.3)


@contextmanager
def private_server(prefix: str) -> Iterator[tuple[PostgresServer, Path]]:
    """A PostgreSQL server of the caller's own in a fresh directory, stopped and removed afterwards (tests that
    stop or kill their server never touch the session's shared one). Skips where the binaries are missing,
    unless FLYWHEEL_REQUIRE_POSTGRES makes that a failure (CI)."""
    import pytest

    bindir = find_postgres_bin()
    if bindir is None:
        missing = "PostgreSQL server binaries not found (apt-get install postgresql)"
        if os.environ.get("FLYWHEEL_REQUIRE_POSTGRES"):
            pytest.fail(missing)
        pytest.skip(missing)
    # Not under pytest's tmp dir: when tests run as root the server runs as `postgres`, which must reach it.
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    server = PostgresServer.start(bindir, workdir)
    try:
        yield server, workdir
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
