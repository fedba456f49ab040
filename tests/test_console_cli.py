"""`flywheel console`: refuses to bind off loopback without a password; serves Streamlit on loopback and stops."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from flywheel.cli.console import ConsoleStartError, check_bind, is_loopback
from flywheel.config import Settings

ROOT = Path(__file__).resolve().parents[1]


def _console(home: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "FLYWHEEL_CONSOLE_PASSWORD"}
    full_env.update({"FLYWHEEL_HOME": str(home), **env})
    return subprocess.Popen(
        [sys.executable, "-m", "flywheel", "console", *args],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_loopback_detection_and_password_rule() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "192.168.1.5", "::", "example.com"))
    check_bind("127.0.0.1", Settings(console_password="twelve chars"))
    with pytest.raises(ConsoleStartError, match=r"refusing to serve the console on 0\.0\.0\.0"):
        check_bind("0.0.0.0", Settings())


def test_non_loopback_without_password_is_refused(tmp_path: Path) -> None:
    proc = _console(tmp_path, "--host", "0.0.0.0")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, out + err
    assert "refusing to serve the console on 0.0.0.0" in err and "FLYWHEEL_CONSOLE_PASSWORD" in err
    assert "Traceback" not in err


def test_busy_port_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _console(tmp_path, "--port", str(port))
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in err


def test_serves_on_loopback_and_stops(tmp_path: Path) -> None:
    port = _free_port()
    proc = _console(tmp_path / "home", "--port", str(port))
    try:
        deadline = time.monotonic() + 90
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.5)
        assert health is not None, proc.stderr.read() if proc.stderr else ""
        assert health.status_code == 200 and health.text == "ok"
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
        assert (tmp_path / "home" / "flywheel.db").is_file()  # the command opened (and migrated) the same store
        proc.send_signal(signal.SIGTERM)  # forwarded to Streamlit; both exit
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
