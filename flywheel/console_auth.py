"""The console's sign-in at the transport: every route of the Streamlit server (page, WebSocket, media, static
files) answers only a browser holding a signed session cookie, issued by a throttled password form.

`ConsoleGuard` is a pure ASGI middleware placed in front of Streamlit's own (`app/console_server.py`). In order it:

1. refuses a `Host` header that is not one of the allowed names (421; a WebSocket handshake gets 403);
2. refuses a cross-origin WebSocket (its `Origin` must name the host it connects to);
3. serves the sign-in form at `SIGNIN_PATH` and sign-out at `SIGNOUT_PATH`;
4. with a password set, passes a request on only with a valid cookie (`SessionSigner`); otherwise a page
   request is redirected to the form, anything else gets 401, and a WebSocket handshake is refused.

Failed sign-ins are logged with the client address; after `SignInThrottle.free_attempts` failures in a row an
address must wait (doubling each failure, capped) before its next attempt is even checked.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from flywheel.errors import FlywheelError
from flywheel.netutil import host_header_allowed
from flywheel.webguard import ASGIApp, Message, Receive, Scope, Send, header_text, refuse, send_response

MIN_PASSWORD_CHARS = 12
COOKIE_NAME = "flywheel_console"
SESSION_KEY_ENV = "FLYWHEEL_CONSOLE_SESSION_KEY"  # hex; shared by the guard and the in-script check (one process)
SESSION_MAX_AGE_S = 12 * 3600
SIGNIN_PATH = "/_flywheel/signin"
SIGNOUT_PATH = "/_flywheel/signout"
OPEN_PATHS = frozenset({"/_stcore/health"})  # liveness for supervisors and scripts: answers "ok", nothing else
MAX_FORM_BYTES = 4096
SECURITY_HEADERS = [(b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer")]

log = logging.getLogger("flywheel.console.auth")


class ConsoleAuthError(FlywheelError):
    """The console's access settings are unsafe or incomplete."""


def check_password(password: str | None) -> None:
    """Refuse a console password that does not protect: shorter than `MIN_PASSWORD_CHARS` or mostly blank."""
    if password is None:
        return
    if len(password.strip()) < MIN_PASSWORD_CHARS:
        raise ConsoleAuthError(
            f"the console password must be at least {MIN_PASSWORD_CHARS} characters (not counting surrounding "
            "spaces); set a longer FLYWHEEL_CONSOLE_PASSWORD or console_password in the config file"
        )


class SessionSigner:
    """Issues and checks session cookies: `<issued>.<nonce>.<HMAC-SHA256>`, valid for `max_age_s`."""

    def __init__(self, key: bytes, max_age_s: int = SESSION_MAX_AGE_S) -> None:
        if len(key) < 16:
            raise ConsoleAuthError("the console session key must be at least 16 bytes")
        self._key = key
        self.max_age_s = max_age_s

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SessionSigner | None:
        """The signer whose key `SESSION_KEY_ENV` holds (hex), or None when it is unset or not hex."""
        value = (os.environ if environ is None else environ).get(SESSION_KEY_ENV, "")
        try:
            return cls(bytes.fromhex(value)) if value else None
        except (ValueError, ConsoleAuthError):
            return None

    def _mac(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()

    def issue(self, now: float | None = None) -> str:
        payload = f"{int(time.time() if now is None else now)}.{secrets.token_hex(16)}"
        return f"{payload}.{self._mac(payload)}"

    def valid(self, token: str | None, now: float | None = None) -> bool:
        if not token or token.count(".") != 2:
            return False
        payload, _, mac = token.rpartition(".")
        if not hmac.compare_digest(mac, self._mac(payload)):
            return False
        issued = payload.partition(".")[0]
        if not issued.isdigit():
            return False
        age = (time.time() if now is None else now) - int(issued)
        return -60 <= age <= self.max_age_s


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0


@dataclass
class SignInThrottle:
    """Per client address: `free_attempts` failures in a row are free; after that each attempt waits
    `base_delay_s * 2**(failures - free_attempts)` seconds (at most `max_delay_s`) after the last failure."""

    free_attempts: int = 5
    base_delay_s: float = 2.0
    max_delay_s: float = 900.0
    clock: Callable[[], float] = time.monotonic
    max_clients: int = 10_000
    _failures: dict[str, _Failures] = field(default_factory=dict)
    _in_flight: set[str] = field(default_factory=set)

    def begin(self, client: str) -> bool:
        """Reserve `client`'s one sign-in in progress; False while another is (parallel guesses would all pass
        `retry_after` before any failure is recorded)."""
        if client in self._in_flight:
            return False
        self._in_flight.add(client)
        return True

    def end(self, client: str) -> None:
        self._in_flight.discard(client)

    def retry_after(self, client: str) -> float:
        """Seconds until `client` may try again (0: now)."""
        seen = self._failures.get(client)
        if seen is None or seen.count < self.free_attempts:
            return 0.0
        delay = min(self.base_delay_s * 2 ** (seen.count - self.free_attempts), self.max_delay_s)
        return max(0.0, seen.last + delay - self.clock())

    def failed(self, client: str) -> int:
        """Record a failure; returns how many in a row `client` has now."""
        if client not in self._failures and len(self._failures) >= self.max_clients:
            oldest = min(self._failures, key=lambda c: self._failures[c].last)
            del self._failures[oldest]
        seen = self._failures.setdefault(client, _Failures())
        seen.count += 1
        seen.last = self.clock()
        return seen.count

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)


def _cookies(scope: Scope) -> dict[str, str]:
    raw = header_text(scope, b"cookie") or ""
    pairs = (part.strip().partition("=") for part in raw.split(";"))
    return {name: value for name, _, value in pairs if name}


def _same_origin(scope: Scope) -> bool:
    """True when the request carries no `Origin` (not a browser's cross-site request) or names its own host."""
    origin = header_text(scope, b"origin")
    if origin is None:
        return True
    host = (header_text(scope, b"host") or "").lower()
    return bool(host) and urlsplit(origin).netloc.lower() == host


SIGNIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>flywheel console · sign in</title>
<style>
body {{ font-family: system-ui, sans-serif; background: #f6f7f9; display: flex; justify-content: center;
       align-items: center; min-height: 100vh; margin: 0; }}
form {{ background: #fff; padding: 2rem 2.5rem; border-radius: 8px; box-shadow: 0 1px 4px #0002; min-width: 18rem; }}
h1 {{ font-size: 1.4rem; margin: 0 0 1.2rem; }}
label {{ display: block; margin-bottom: .4rem; }}
input {{ width: 100%; box-sizing: border-box; padding: .5rem; font-size: 1rem; margin-bottom: 1rem; }}
button {{ padding: .5rem 1.2rem; font-size: 1rem; }}
p.error {{ color: #b00020; }}
</style></head>
<body><form method="post" action="{action}">
<h1>flywheel console</h1>
{message}
<label for="password">Console password</label>
<input id="password" name="password" type="password" autocomplete="current-password" autofocus required>
<button type="submit">Sign in</button>
</form></body></html>
"""
PAGE_HEADERS = [
    *SECURITY_HEADERS,
    (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"),
]


class ConsoleGuard:
    """ASGI middleware: Host allow-list, same-origin WebSockets, and (with a password) signed-in sessions only."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: frozenset[str],
        password: str | None,
        signer: SessionSigner,
        secure_cookie: bool = False,
        throttle: SignInThrottle | None = None,
    ) -> None:
        check_password(password)
        self.app = app
        self.allowed_hosts = allowed_hosts
        self._digest = hashlib.sha256(password.encode()).digest() if password else None
        self.signer = signer
        self.secure_cookie = secure_cookie
        self.throttle = throttle or SignInThrottle()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if not host_header_allowed(header_text(scope, b"host"), self.allowed_hosts):
            await refuse(scope, send, 421, "unknown host name: this console answers only its configured names")
            return
        path = scope.get("path", "")
        if kind == "websocket" and not _same_origin(scope):
            log.warning("refused a cross-origin WebSocket from %s", header_text(scope, b"origin"))
            await refuse(scope, send, 403, "cross-origin")
            return
        if kind == "http" and path == SIGNIN_PATH:
            await self._sign_in(scope, receive, send)
            return
        if kind == "http" and path == SIGNOUT_PATH:
            await self._redirect(send, SIGNIN_PATH, self._cookie("", max_age=0))
            return
        if self._digest is None or self.signed_in(scope) or (kind == "http" and path in OPEN_PATHS):
            await self.app(scope, receive, self._with_headers(send) if kind == "http" else send)
            return
        if (
            kind == "http"
            and scope.get("method") in ("GET", "HEAD")
            and "text/html" in (header_text(scope, b"accept") or "")
        ):
            await self._redirect(send, SIGNIN_PATH)
            return
        await refuse(scope, send, 401, "sign in first")

    def signed_in(self, scope: Scope) -> bool:
        return self.signer.valid(_cookies(scope).get(COOKIE_NAME))

    @staticmethod
    def _with_headers(send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        return wrapped

    def _cookie(self, value: str, max_age: int) -> tuple[bytes, bytes]:
        attrs = f"{COOKIE_NAME}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict"
        return b"set-cookie", (attrs + ("; Secure" if self.secure_cookie else "")).encode()

    @staticmethod
    async def _redirect(send: Send, location: str, *extra: tuple[bytes, bytes]) -> None:
        await send_response(send, 303, b"", headers=[(b"location", location.encode()), *SECURITY_HEADERS, *extra])

    @staticmethod
    async def _page(send: Send, status: int, message: str = "", *extra: tuple[bytes, bytes]) -> None:
        shown = f'<p class="error">{html.escape(message)}</p>' if message else ""
        body = SIGNIN_PAGE.format(action=SIGNIN_PATH, message=shown).encode()
        await send_response(send, status, body, b"text/html; charset=utf-8", [*PAGE_HEADERS, *extra])

    async def _sign_in(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._digest is None:  # nothing to sign in to
            await self._redirect(send, "/")
            return
        method = scope.get("method")
        if method in ("GET", "HEAD"):
            await self._page(send, 200)
            return
        if method != "POST":
            await send_response(send, 405, b"use GET or POST", headers=[(b"allow", b"GET, POST")])
            return
        if not _same_origin(scope):
            await refuse(scope, send, 403, "cross-origin sign-in refused")
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        wait_s = self.throttle.retry_after(client)
        if wait_s > 0:
            log.warning("console sign-in from %s refused: throttled for %.0f s more", client, wait_s)
            retry = (b"retry-after", str(int(wait_s) + 1).encode())
            await self._page(send, 429, f"Too many failed attempts: try again in {int(wait_s) + 1} s.", retry)
            return
        if not self.throttle.begin(client):  # checked and reserved before the first await: no parallel bursts
            log.warning("console sign-in from %s refused: another attempt from it is in progress", client)
            await self._page(send, 429, "Another sign-in from this address is in progress.", (b"retry-after", b"1"))
            return
        try:
            await self._check_password(client, receive, send)
        finally:
            self.throttle.end(client)

    async def _check_password(self, client: str, receive: Receive, send: Send) -> None:
        assert self._digest is not None
        body = await self._read_form(receive)
        if body is None:
            await send_response(send, 413, b"sign-in form too large")
            return
        given = (parse_qs(body.decode("utf-8", "replace")).get("password") or [""])[0]
        if hmac.compare_digest(hashlib.sha256(given.encode()).digest(), self._digest):
            self.throttle.succeeded(client)
            log.info("console sign-in from %s", client)
            await self._redirect(send, "/", self._cookie(self.signer.issue(), self.signer.max_age_s))
            return
        failures = self.throttle.failed(client)
        log.warning("console sign-in failed from %s (%d in a row)", client, failures)
        await self._page(send, 401, "Wrong password.")

    @staticmethod
    async def _read_form(receive: Receive) -> bytes | None:
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return body
            body += message.get("body", b"")
            if len(body) > MAX_FORM_BYTES:
                return None
            if not message.get("more_body"):
                return body
