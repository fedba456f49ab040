"""`flywheel console`: the operator console (Streamlit) on loopback by default.

Binding any other address needs an operator password (`console_password` in the config file or
`FLYWHEEL_CONSOLE_PASSWORD`); without one the command refuses to start. The app opens the same store as the
command: home, database URL, directories, operator and password travel to it through `FLYWHEEL_*` variables.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import FrameType

import typer
from rich.console import Console

from flywheel.cli.context import state
from flywheel.config import Settings
from flywheel.errors import FlywheelError
from flywheel.netutil import is_loopback

APP_PATH = Path(__file__).resolve().parents[2] / "app" / "console.py"
HOME_HELP = "data directory (overrides FLYWHEEL_HOME and the global --home)"


class ConsoleStartError(FlywheelError):
    """The console cannot start with these settings."""


def check_bind(host: str, settings: Settings) -> None:
    """Refuse a non-loopback address unless an operator password is configured."""
    if not is_loopback(host) and not settings.console_password:
        raise ConsoleStartError(
            f"refusing to serve the console on {host}: it is reachable from other machines; set an operator password "
            "(FLYWHEEL_CONSOLE_PASSWORD or console_password in the config file) or bind 127.0.0.1"
        )


def check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as exc:
            raise ConsoleStartError(
                f"cannot listen on {host}:{port} ({exc.strerror}); pick another port with --port"
            ) from None


def console_env(settings: Settings) -> dict[str, str]:
    """The environment of the Streamlit process: the same store and identity as this command."""
    env = dict(os.environ)
    env.update(
        {
            "FLYWHEEL_HOME": str(settings.home.resolve()),
            "FLYWHEEL_DB_URL": settings.database_url,
            "FLYWHEEL_EPISODES_DIR": str(settings.episodes_root),
            "FLYWHEEL_CHECKPOINTS_DIR": str(settings.checkpoints_root),
            "FLYWHEEL_OPERATOR": settings.operator,
            "FLYWHEEL_SQLITE_BUSY_TIMEOUT_MS": str(settings.sqlite_busy_timeout_ms),
            "MUJOCO_GL": env.get("MUJOCO_GL", "egl"),
            "WANDB_MODE": env.get("WANDB_MODE", "offline"),
        }
    )
    if settings.console_password:
        env["FLYWHEEL_CONSOLE_PASSWORD"] = settings.console_password
    root = str(APP_PATH.parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def streamlit_command(host: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_PATH),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--browser.gatherUsageStats",
        "false",
        "--global.developmentMode",
        "false",
        "--client.toolbarMode",
        "minimal",
    ]


def console(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind; off loopback needs a console password"),
    port: int = typer.Option(8501, "--port", min=1, max=65535, help="TCP port"),
    home: Path | None = typer.Option(None, "--home", help=HOME_HELP),
) -> None:
    """Start the operator console: teleop / live, episodes, review & label, dashboards, policies, jobs."""
    cli = state(ctx, home=home)
    settings = cli.settings
    check_bind(host, settings)
    if not APP_PATH.is_file():
        raise ConsoleStartError(f"console app {APP_PATH} is missing; reinstall flywheel from a full checkout")
    cli.store()  # connect and migrate now: a bad database URL is a one-line error here, not in the browser
    check_port_free(host, port)
    shown = f"[{host}]" if ":" in host else host
    Console(stderr=True).print(
        f"flywheel console on http://{shown}:{port} (store {settings.home.resolve()}); Ctrl+C stops it"
    )
    proc = subprocess.Popen(streamlit_command(host, port), env=console_env(settings))

    def forward(signum: int, _frame: FrameType | None) -> None:
        proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
    if code not in (0, -signal.SIGINT, -signal.SIGTERM):
        raise typer.Exit(code)
