"""A throwaway PostgreSQL server on loopback for tests (initdb + pg_ctl; runs as `postgres` when root)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
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
        return cls(f"postgresql+psycopg://flywheel@127.0.0.1:{port}/postgres", datadir, bindir, run_as)

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
