"""Pure ASGI building blocks shared by the console and the policy server: header lookup, refusals that work for
HTTP and WebSocket alike, and the Host allow-list middleware (DNS-rebinding defence)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from flywheel.netutil import host_header_allowed

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

WS_POLICY_VIOLATION = 1008  # closing before accepting: the server answers the handshake with 403


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of a request header (`name` in lower case), or None."""
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None


def header_text(scope: Scope, name: bytes) -> str | None:
    value = header(scope, name)
    return None if value is None else value.decode("latin-1")


async def send_response(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = b"text/plain; charset=utf-8",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """A complete HTTP response."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def refuse(scope: Scope, send: Send, status: int, text: str) -> None:
    """Refuse an HTTP request with a short plain-text body, or a WebSocket handshake (the client sees 403)."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": WS_POLICY_VIOLATION})
        return
    await send_response(send, status, text.encode())


class TrustedHostMiddleware:
    """421 (or a refused WebSocket handshake) unless the `Host` header names one of `allowed` (port ignored)."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not host_header_allowed(
            header_text(scope, b"host"), self.allowed
        ):
            await refuse(scope, send, 421, "unknown host name: this server answers only the names it is configured for")
            return
        await self.app(scope, receive, send)
