"""The console's server: Streamlit's ASGI app (`st.App`) for `console.py`, behind `ConsoleGuard`.

`flywheel console` runs `streamlit run app/console_server.py` with Streamlit's security options pinned on the
command line (flywheel/cli/console.py); Streamlit sees the `st.App` below and serves it with uvicorn. The guard
wraps every route (page, WebSocket, media, static files, the live stream `flywheel.live.stream.STREAM_PATH` and the
episode videos `flywheel.live.video_route.VIDEO_PATH`):
the Host allow-list always, and with a console password the signed session cookie (flywheel/console_auth.py).
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # this checkout's `app` and `flywheel`, whatever the venv points at
    sys.path.insert(0, str(HERE.parent))

import streamlit as st  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
from streamlit import config as streamlit_config  # noqa: E402

from app.live_owner import MANAGERS  # noqa: E402
from flywheel.config import load_settings  # noqa: E402
from flywheel.console_auth import SESSION_KEY_ENV, ConsoleGuard, SessionSigner  # noqa: E402
from flywheel.live.episode_video import views_dir  # noqa: E402
from flywheel.live.stream import stream_route  # noqa: E402
from flywheel.live.video_route import video_route  # noqa: E402
from flywheel.netutil import allowed_hosts  # noqa: E402


def guard_options() -> dict[str, object]:
    """The guard's settings: the store's settings (password, extra host names) and the bound address and TLS
    files as Streamlit's configuration holds them. The session key is this process's (the page script checks
    cookies with it too), made here unless `flywheel console` passed one."""
    settings = load_settings()
    os.environ.setdefault(SESSION_KEY_ENV, secrets.token_hex(32))
    signer = SessionSigner.from_env()
    assert signer is not None
    bind = str(streamlit_config.get_option("server.address") or "0.0.0.0")
    return {
        "allowed_hosts": allowed_hosts(bind, settings.console_allowed_hosts),
        "password": settings.console_password,
        "signer": signer,
        "secure_cookie": bool(streamlit_config.get_option("server.sslCertFile")),
    }


@asynccontextmanager
async def close_live_sessions(_app: object) -> AsyncIterator[None]:
    """Save every open live session when the server shuts down. uvicorn re-raises SIGTERM/SIGINT once it has
    stopped, so the process dies by the signal and atexit handlers never run: this is the shutdown hook that does."""
    yield
    MANAGERS.close()


auth_log = logging.getLogger("flywheel.console.auth")
if not auth_log.handlers:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    auth_log.addHandler(handler)
    auth_log.setLevel(logging.INFO)
    auth_log.propagate = False

app = st.App(
    str(HERE / "console.py"),
    # behind the guard like every Streamlit route
    routes=[stream_route(MANAGERS.by_stream_token), video_route(views_dir(load_settings().home))],
    middleware=[Middleware(ConsoleGuard, **guard_options())],
    lifespan=close_live_sessions,
)
