"""`flywheel console`: the operator console (Streamlit) on loopback by default.

Streamlit serves `app/console_server.py`: the console behind `ConsoleGuard` (flywheel/console_auth.py), which
checks the Host header on every route and, with a console password, demands a signed session cookie from a
throttled sign-in form. A password must have at least 12 characters. Binding any other address than loopback
needs a password (`console_password` in the config file or `FLYWHEEL_CONSOLE_PASSWORD`) and a TLS certificate
and key (`--tls-cert/--tls-key` or `console_tls_cert/console_tls_key`); without them the command refuses to start.
Streamlit's security options are pinned on its command line (`PINNED_OPTIONS`) and `STREAMLIT_*` variables are
not passed on, so neither the environment nor a stray `.streamlit/config.toml` can weaken them. The app opens the
same store as the command: home, database URL, directories, operator and password travel through `FLYWHEEL_*`.
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
from flywheel.console_auth import ConsoleAuthError, check_password
from flywheel.errors import FlywheelError
from flywheel.headless import headless_defaults
from flywheel.netutil import allowed_hosts, is_loopback

APP_PATH = Path(__file__).resolve().parents[2] / "app" / "console_server.py"
HOME_HELP = "data directory (overrides FLYWHEEL_HOME and the global --home)"

# Streamlit options set on its command line, which beats STREAMLIT_* variables and config.toml files.
PINNED_OPTIONS: dict[str, str] = {
    "server.headless": "true",
    "server.fileWatcherType": "none",
    "server.runOnSave": "false",
    "server.allowRunOnSave": "false",
    "server.baseUrlPath": "",  # ConsoleGuard's paths are absolute
    "server.enableCORS": "true",  # CORS *protection*: no `Access-Control-Allow-Origin: *`, same-origin WebSockets
    "server.enableXsrfProtection": "true",
    "server.xsrfCookieSameSite": "strict",
    "server.enableStaticServing": "false",
    "server.enableAgentApi": "false",
    "server.scriptHealthCheckEnabled": "false",
    "server.trustedUserHeaders": "{}",
    "browser.gatherUsageStats": "false",
    "global.developmentMode": "false",
    "client.toolbarMode": "minimal",  # no "Clear cache" / "Rerun" menu
    "client.showErrorDetails": "none",  # tracebacks go to the server's log, not the browser
    "client.showErrorLinks": "false",
}


class ConsoleStartError(FlywheelError):
    """The console cannot start with these settings."""


def check_bind(host: str, settings: Settings) -> None:
    """Refuse a weak password; off loopback, refuse to start without a password and TLS certificate and key."""
    try:
        check_password(settings.console_password)
    except ConsoleAuthError as exc:
        raise ConsoleStartError(str(exc)) from None
    cert, key = settings.console_tls_cert, settings.console_tls_key
    if (cert is None) != (key is None):
        raise ConsoleStartError("TLS needs both a certificate and its key: pass --tls-cert and --tls-key together")
    for what, path in (("certificate", cert), ("key", key)):
        if path is not None and not path.is_file():
            raise ConsoleStartError(f"TLS {what} {path} is not a readable file; check --tls-cert/--tls-key")
    if is_loopback(host):
        return
    if not settings.console_password:
        raise ConsoleStartError(
            f"refusing to serve the console on {host}: it is reachable from other machines; set an operator password "
            "(FLYWHEEL_CONSOLE_PASSWORD or console_password in the config file) or bind 127.0.0.1"
        )
    if cert is None:
        raise ConsoleStartError(
            f"refusing to serve the console on {host} over plain HTTP: the password and session would cross the "
            "network readable; pass --tls-cert and --tls-key (or console_tls_cert/console_tls_key) or bind 127.0.0.1"
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
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}
    headless_defaults(env)
    env.update(
        {
            "FLYWHEEL_HOME": str(settings.home.resolve()),
            "FLYWHEEL_DB_URL": settings.database_url,
            "FLYWHEEL_EPISODES_DIR": str(settings.episodes_root),
            "FLYWHEEL_CHECKPOINTS_DIR": str(settings.checkpoints_root),
            "FLYWHEEL_OPERATOR": settings.operator,
            "FLYWHEEL_SQLITE_BUSY_TIMEOUT_MS": str(settings.sqlite_busy_timeout_ms),
        }
    )
    if settings.console_password:
        env["FLYWHEEL_CONSOLE_PASSWORD"] = settings.console_password
    env["FLYWHEEL_CONSOLE_ALLOWED_HOSTS"] = ",".join(settings.console_allowed_hosts)
    root = str(APP_PATH.parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def streamlit_command(host: str, port: int, settings: Settings) -> list[str]:
    """`streamlit run app/console_server.py` with the address, TLS files, Host allow-list and pinned options."""
    options = {**PINNED_OPTIONS, "server.address": host.strip("[]"), "server.port": str(port)}
    if settings.console_tls_cert is not None and settings.console_tls_key is not None:
        options["server.sslCertFile"] = str(settings.console_tls_cert.resolve())
        options["server.sslKeyFile"] = str(settings.console_tls_key.resolve())
    command = [sys.executable, "-m", "streamlit", "run", str(APP_PATH)]
    for name, value in options.items():
        command += [f"--{name}", value]
    for name in sorted(allowed_hosts(host, settings.console_allowed_hosts)):  # Streamlit's own WebSocket check
        command += ["--server.allowedHosts", name]
    return command


def console(
    ctx: typer.Context,
    host: str = typer.Option(
        "127.0.0.1", "--host", help="address to bind; off loopback needs a console password and TLS"
    ),
    port: int = typer.Option(8501, "--port", min=1, max=65535, help="TCP port"),
    home: Path | None = typer.Option(None, "--home", help=HOME_HELP),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="PEM certificate (default: console_tls_cert)"),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="PEM private key (default: console_tls_key)"),
    allow_host: list[str] = typer.Option(
        [], "--allow-host", help="another Host name clients use to reach the console (repeatable)"
    ),
) -> None:
    """Start the operator console: teleop / live, episodes, review & label, dashboards, policies, jobs."""
    cli = state(ctx, home=home)
    overrides: dict[str, object] = {"console_tls_cert": tls_cert, "console_tls_key": tls_key}
    if allow_host:
        overrides["console_allowed_hosts"] = (*cli.settings.console_allowed_hosts, *allow_host)
    settings = cli.settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    check_bind(host, settings)
    if not APP_PATH.is_file():
        raise ConsoleStartError(f"console app {APP_PATH} is missing; reinstall flywheel from a full checkout")
    cli.store()  # connect and migrate now: a bad database URL is a one-line error here, not in the browser
    check_port_free(host, port)
    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if settings.console_tls_cert is not None else "http"
    access = "password sign-in" if settings.console_password else "no password (loopback)"
    Console(stderr=True).print(
        f"flywheel console on {scheme}://{shown}:{port} ({access}; store {settings.home.resolve()}); Ctrl+C stops it"
    )
    proc = subprocess.Popen(streamlit_command(host, port, settings), env=console_env(settings))

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
