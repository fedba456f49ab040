"""ASGI middleware that runs before any body is read: a bearer-token check and a request-size bound."""

from __future__ import annotations

import json
import secrets

from starlette.exceptions import HTTPException

from flywheel.webguard import ASGIApp, Message, Receive, Scope, Send
from flywheel.webguard import header as _header


async def send_json(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BearerTokenMiddleware:
    """401 unless `Authorization: Bearer <token>` matches (constant-time compare); `open_paths` need no token."""

    def __init__(self, app: ASGIApp, token: str, open_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.open_paths:
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"authorization")
        if given is None or not secrets.compare_digest(given, self.expected):
            what = "missing" if given is None else "wrong"
            await send_json(
                send,
                401,
                f"{what} bearer token: send `Authorization: Bearer <token>`",
                [(b"www-authenticate", b"Bearer")],
            )
            return
        await self.app(scope, receive, send)


class _TooLarge(HTTPException):
    """Raised from `receive`: FastAPI re-raises HTTP exceptions met while reading a body, so it answers 413."""


class BodyLimitMiddleware:
    """413 for a body over `max_bytes`: at once from `Content-Length`, else while a chunked body streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _detail(self) -> str:
        return f"request body exceeds the server limit of {self.max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await send_json(send, 400, "invalid Content-Length header")
                return
            if declared > self.max_bytes:
                await send_json(send, 413, self._detail())
                return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge(413, self._detail())
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _TooLarge:
            if not started:
                await send_json(send, 413, self._detail())
