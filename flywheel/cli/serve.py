"""`flywheel serve`: the HTTP policy server (FastAPI + uvicorn) for a registry version or alias."""

from __future__ import annotations

import re
from pathlib import Path

import typer
from rich.console import Console

from flywheel.cli.context import state


def parse_image_size(text: str | None) -> tuple[int, int] | None:
    """`HxW` (e.g. `96x128`) → (height, width)."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if match is None:
        raise typer.BadParameter(f"{text!r} is not HEIGHTxWIDTH, e.g. 96x128")
    return int(match[1]), int(match[2])


def serve(
    ctx: typer.Context,
    policy: str = typer.Option("champion", "--policy", help="version id or alias (an alias is followed live)"),
    host: str = typer.Option("127.0.0.1", help="bind address; anything but loopback needs a token"),
    port: int = typer.Option(8000, min=0, max=65_535),
    token_file: Path | None = typer.Option(
        None, "--token-file", help="file holding the bearer token (>= 16 chars); or set FLYWHEEL_SERVE_TOKEN"
    ),
    token: str | None = typer.Option(None, "--token", hidden=True, help="refused: use --token-file"),
    require_token: bool = typer.Option(False, "--require-token", help="refuse to start without a token on loopback"),
    allow_host: list[str] = typer.Option(
        [], "--allow-host", help="another Host name clients use to reach the server (repeatable)"
    ),
    max_body_bytes: int = typer.Option(4 << 20, "--max-body-bytes", help="larger requests are refused with 413"),
    reload_interval: float = typer.Option(2.0, "--reload-interval", help="seconds between alias polls; 0 = off"),
    image_size: str | None = typer.Option(None, "--image-size", help="HxW every camera frame must have"),
    device: str = typer.Option("cpu", help="cpu | cuda[:N]"),
    threads: int | None = typer.Option(None, "--threads", min=1, help="torch intra-op threads (default: torch's)"),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level"),
) -> None:
    """Serve a policy over HTTP: GET /health, GET /version, POST /act (observation → action chunk)."""
    from flywheel.serve.config import TOKEN_ENV, ServeError, read_token, serve_config

    if token is not None:
        raise ServeError(
            f"--token puts the secret in the process list, readable by every local user; put it in a file "
            f"(chmod 600) and pass --token-file PATH, or set {TOKEN_ENV}"
        )
    config = serve_config(
        policy=policy,
        host=host,
        port=port,
        token=read_token(token_file),
        require_token=True if require_token else None,
        allowed_hosts=tuple(allow_host),
        max_body_bytes=max_body_bytes,
        reload_interval_s=reload_interval,
        image_size=parse_image_size(image_size),
        device=device,
    )
    import torch

    from flywheel.registry import PolicyRegistry
    from flywheel.serve.app import create_app
    from flywheel.serve.server import run_server
    from flywheel.serve.source import RegistrySource

    if threads is not None:
        torch.set_num_threads(threads)
    source = RegistrySource(PolicyRegistry(state(ctx).store().db), config.policy, config.device)
    app = create_app(config, source)
    served = app.state.holder.current
    follow = f" (following {served.alias} every {config.reload_interval_s:g} s)" if served.alias else ""
    auth = "bearer token required" if config.token_required else "no token (loopback)"
    Console(stderr=True).print(
        f"serving policy {served.version_id}{follow}, sha256 {served.sha256[:12]}…, {served.obs_mode} obs, "
        f"chunk {served.chunk_size}; {auth}; http://{config.host}:{config.port}",
        highlight=False,
        soft_wrap=True,
    )
    run_server(app, config, log_level)
