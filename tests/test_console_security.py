"""The console's transport security on a real `flywheel console` (Streamlit under uvicorn) on loopback, probed with
real HTTP and WebSocket clients: sign-in, the Host allow-list, same-origin WebSockets, throttling, pinned
Streamlit options, TLS; and the start-up rules (password strength, TLS off loopback)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from flywheel.cli.console import ConsoleStartError, check_bind
from flywheel.config import Settings
from flywheel.console_auth import COOKIE_NAME, SIGNIN_PATH, SessionSigner, SignInThrottle, check_password
from flywheel.live.episode_video import pack_video, views_dir
from flywheel.live.video_route import video_url
from flywheel.netutil import allowed_hosts, host_header_allowed
from tests.e2e_support import ROOT, ConsoleProcess

PASSWORD = "correct horse battery staple"
STREAM = "/_stcore/stream"


# -- rules, no server --------------------------------------------------------------------------------------------


def test_host_allow_list() -> None:
    allowed = allowed_hosts("127.0.0.1", ["console.lab.example"])
    for ok in ("127.0.0.1:8501", "localhost", "LOCALHOST:1", "[::1]:8501", "console.lab.example:443"):
        assert host_header_allowed(ok, allowed), ok
    for bad in (None, "", "evil.example", "127.0.0.1.evil.example", "user@127.0.0.1", "127.0.0.1/x", "[::1]:99999"):
        assert not host_header_allowed(bad, allowed), bad
    assert "192.168.1.5" in allowed_hosts("192.168.1.5")


def test_password_rules_and_tls_off_loopback(tmp_path: Path) -> None:
    for weak in ("a", " ", "s3cret", "  eleven-chr  "):
        with pytest.raises(ConsoleStartError, match="at least 12 characters"):
            check_bind("127.0.0.1", Settings(console_password=weak))
    check_password(PASSWORD)
    check_bind("127.0.0.1", Settings(console_password=PASSWORD))
    with pytest.raises(ConsoleStartError, match="set an operator password"):
        check_bind("0.0.0.0", Settings())
    with pytest.raises(ConsoleStartError, match="over plain HTTP"):
        check_bind("0.0.0.0", Settings(console_password=PASSWORD))
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    with pytest.raises(ConsoleStartError, match="both a certificate and its key"):
        check_bind("0.0.0.0", Settings(console_password=PASSWORD, console_tls_cert=cert))
    with pytest.raises(ConsoleStartError, match="not a readable file"):
        check_bind("0.0.0.0", Settings(console_password=PASSWORD, console_tls_cert=cert, console_tls_key=key))
    key.write_text("x")
    check_bind("0.0.0.0", Settings(console_password=PASSWORD, console_tls_cert=cert, console_tls_key=key))


def test_session_cookie_signature_and_age() -> None:
    signer = SessionSigner(b"k" * 32, max_age_s=60)
    token = signer.issue(now=1000)
    assert signer.valid(token, now=1030)
    assert not signer.valid(token, now=1061)  # expired
    issued, nonce, mac = token.split(".")
    assert not signer.valid(f"{int(issued) + 50}.{nonce}.{mac}", now=1030)  # re-dated
    assert not SessionSigner(b"x" * 32).valid(token, now=1030)  # another server's key
    assert not any(signer.valid(t) for t in (None, "", "a.b", "a.b.c.d"))


def test_throttle_backs_off_per_address() -> None:
    now = [0.0]
    throttle = SignInThrottle(free_attempts=3, base_delay_s=2.0, max_delay_s=10.0, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.retry_after("a") == 0
        throttle.failed("a")
    assert throttle.retry_after("a") == 2.0 and throttle.retry_after("b") == 0
    now[0] = 2.0
    assert throttle.retry_after("a") == 0
    for _ in range(5):
        throttle.failed("a")
    assert throttle.retry_after("a") == 10.0  # capped
    throttle.succeeded("a")
    assert throttle.retry_after("a") == 0


def test_throttle_allows_one_sign_in_in_progress_per_address() -> None:
    throttle = SignInThrottle()
    assert throttle.begin("a") and not throttle.begin("a") and throttle.begin("b")
    throttle.end("a")
    assert throttle.begin("a")


def _flywheel(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_CONSOLE")}
    return subprocess.run(
        [sys.executable, "-m", "flywheel", "--home", str(home), "console", *args],
        cwd=ROOT,
        env={**full, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_refuses_weak_password_and_plain_http_off_loopback(tmp_path: Path) -> None:
    weak = _flywheel(tmp_path / "h", FLYWHEEL_CONSOLE_PASSWORD="hunter2")
    assert weak.returncode == 2 and "at least 12 characters" in weak.stderr, weak.stderr
    plain = _flywheel(tmp_path / "h", "--host", "0.0.0.0", FLYWHEEL_CONSOLE_PASSWORD=PASSWORD)
    assert plain.returncode == 2 and "over plain HTTP" in plain.stderr and "--tls-cert" in plain.stderr, plain.stderr
    assert "Traceback" not in weak.stderr + plain.stderr


# -- a real console with a password -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleProcess]:
    root = tmp_path_factory.mktemp("console")
    fake_home = root / "user"  # a stray ~/.streamlit/config.toml and STREAMLIT_* variables try to weaken it
    (fake_home / ".streamlit").mkdir(parents=True)
    (fake_home / ".streamlit" / "config.toml").write_text(
        '[server]\nenableXsrfProtection = false\nenableCORS = false\n[client]\nshowErrorDetails = "full"\n'
    )
    env = {
        "FLYWHEEL_CONSOLE_PASSWORD": PASSWORD,
        "HOME": str(fake_home),
        "STREAMLIT_SERVER_ENABLE_XSRF_PROTECTION": "false",
        "STREAMLIT_CLIENT_TOOLBAR_MODE": "developer",
    }
    process = ConsoleProcess(root / "home", root / "console.log", env=env)
    try:
        yield process.start()
    finally:
        process.stop()


def _ws_url(console: ConsoleProcess) -> str:
    return console.url.replace("http", "ws", 1) + STREAM


async def _handshake(url: str, connect_to: int | None = None, **headers: str) -> str:
    """'open' after a completed handshake and a first message from Streamlit, else the refusal. With
    `connect_to`, the socket goes to that loopback port whatever host `url` names (a rebound DNS name)."""
    target = {"host": "127.0.0.1", "port": connect_to} if connect_to else {}
    try:
        async with websockets.connect(url, subprotocols=["streamlit"], additional_headers=headers, **target) as ws:
            rerun = BackMsg()
            rerun.rerun_script.query_string = ""
            await ws.send(rerun.SerializeToString())
            msg = ForwardMsg()
            msg.ParseFromString(await asyncio.wait_for(ws.recv(), 60))
            return "open"
    except websockets.InvalidStatus as exc:
        return f"refused {exc.response.status_code}"


def _sign_in(console: ConsoleProcess, password: str, **client: object) -> httpx.Response:
    with httpx.Client(base_url=console.url, timeout=30, **client) as c:  # type: ignore[arg-type]
        return c.post(SIGNIN_PATH, data={"password": password})


def _cookie(reply: httpx.Response) -> str:
    return reply.headers["set-cookie"].split(";")[0]


def test_unauthenticated_clients_get_nothing(console: ConsoleProcess) -> None:
    with httpx.Client(base_url=console.url, timeout=30) as c:
        assert c.get("/_stcore/health").text == "ok"  # liveness stays open
        page = c.get("/", headers={"accept": "text/html"})
        assert page.status_code == 303 and page.headers["location"] == SIGNIN_PATH
        for path in ("/media/0123456789abcdef.png", "/_stcore/host-config", "/_stcore/metrics", "/static/x.js"):
            assert c.get(path).status_code == 401, path
        form = c.get(SIGNIN_PATH)
        assert form.status_code == 200 and 'type="password"' in form.text and "streamlit" not in form.text.lower()
    assert asyncio.run(_handshake(_ws_url(console))) == "refused 403"
    forged = f"{COOKIE_NAME}={SessionSigner(b'z' * 32).issue()}"
    assert asyncio.run(_handshake(_ws_url(console), Cookie=forged)) == "refused 403"


def test_sign_in_sets_a_signed_http_only_cookie_that_opens_the_websocket(console: ConsoleProcess) -> None:
    wrong = _sign_in(console, "not the password at all")
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers and "Wrong password" in wrong.text
    right = _sign_in(console, PASSWORD)
    assert right.status_code == 303 and right.headers["location"] == "/"
    attrs = [a.strip().lower() for a in right.headers["set-cookie"].split(";")]
    assert "httponly" in attrs and "samesite=strict" in attrs and "secure" not in attrs  # no TLS on this one
    cookie = _cookie(right)
    with httpx.Client(base_url=console.url, timeout=30, headers={"cookie": cookie}) as c:
        assert c.get("/").status_code == 200 and c.get("/_stcore/host-config").status_code == 200
    assert asyncio.run(_handshake(_ws_url(console), Cookie=cookie)) == "open"
    # Cross-site WebSocket hijacking: the browser sends the cookie, but the Origin is another site's.
    evil = asyncio.run(_handshake(_ws_url(console), Cookie=cookie, Origin="https://evil.example"))
    assert evil == "refused 403"


def test_episode_videos_need_the_sign_in(console: ConsoleProcess) -> None:
    """The episode player's video route (flywheel/live/video_route.py) is mounted behind the guard: a cached
    video is served to a signed-in browser only."""
    name = "episode-1-0123456789abcdef.fwv"
    video = pack_video({"top": [b"jpeg bytes"]}, (1, 1))
    cache = views_dir(console.home)
    cache.mkdir(parents=True, exist_ok=True)
    (cache / name).write_bytes(video)
    with httpx.Client(base_url=console.url, timeout=30) as c:
        refused = c.get(video_url(name))
        assert refused.status_code == 401 and b"jpeg bytes" not in refused.content
    cookie = _cookie(_sign_in(console, PASSWORD))
    with httpx.Client(base_url=console.url, timeout=30, headers={"cookie": cookie}) as c:
        assert c.get(video_url(name)).content == video
        assert c.get(video_url("episode-2-0123456789abcdef.fwv")).status_code == 404


def test_foreign_host_gets_no_page(console: ConsoleProcess) -> None:
    cookie = _cookie(_sign_in(console, PASSWORD))
    with httpx.Client(base_url=console.url, timeout=30) as c:
        for path in ("/", "/_stcore/health", SIGNIN_PATH, "/media/x.png"):
            reply = c.get(path, headers={"host": "rebound.evil.example", "cookie": cookie, "accept": "text/html"})
            assert reply.status_code == 421 and "<html" not in reply.text.lower(), (path, reply.text)
    rebound = f"ws://rebound.evil.example:{console.port}{STREAM}"
    assert asyncio.run(_handshake(rebound, connect_to=console.port, Cookie=cookie)) == "refused 403"
    assert asyncio.run(_handshake(_ws_url(console), Cookie=cookie)) == "open"  # the same client, by its real name


def test_streamlit_security_options_are_pinned(console: ConsoleProcess) -> None:
    """The fixture's STREAMLIT_* variables and ~/.streamlit/config.toml turn XSRF protection off; the command
    line wins, so Streamlit still issues its XSRF cookie (SameSite=Strict)."""
    health = httpx.get(f"{console.url}/_stcore/health", timeout=30)
    assert "_streamlit_xsrf=" in health.headers.get("set-cookie", "")
    assert "samesite=strict" in health.headers["set-cookie"].lower()


def test_failed_sign_ins_are_throttled_and_logged(console: ConsoleProcess) -> None:
    # From its own loopback source address, so the other tests' client (127.0.0.1) is not throttled.
    source = {"transport": httpx.HTTPTransport(local_address="127.0.0.77")}
    for _ in range(SignInThrottle().free_attempts):
        assert _sign_in(console, "guess guess guess", **source).status_code == 401
    blocked = _sign_in(console, PASSWORD, **source)  # even the right password is not checked now
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
    assert "set-cookie" not in blocked.headers
    assert _sign_in(console, PASSWORD).status_code == 303  # another address is not affected
    assert "console sign-in failed from 127.0.0.77 (5 in a row)" in console.output()


def test_sign_in_over_tls_sets_a_secure_cookie(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    process = ConsoleProcess(
        tmp_path / "home",
        tmp_path / "console.log",
        env={"FLYWHEEL_CONSOLE_PASSWORD": PASSWORD},
        args=("--tls-cert", str(cert), "--tls-key", str(key)),
        scheme="https",
    )
    try:
        process.start()
        with httpx.Client(base_url=process.url, timeout=30, verify=str(cert)) as c:
            assert c.get("/", headers={"accept": "text/html"}).status_code == 303
            right = c.post(SIGNIN_PATH, data={"password": PASSWORD})
            assert right.status_code == 303 and "secure" in right.headers["set-cookie"].lower()
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{process.port}/_stcore/health", timeout=5)  # no plain HTTP
    finally:
        process.stop()
