"""Network helpers shared by the console and the policy server: loopback detection and the Host allow-list."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_ADDRESSES = ("0.0.0.0", "::", "")


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback IP literals (127.0.0.0/8, ::1); any other name or address counts as
    reachable from outside."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _name(host: str) -> str:
    return host.strip().strip("[]").lower().rstrip(".")


def allowed_hosts(bind_host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The Host names a server bound to `bind_host` answers: the loopback names, the bind address itself, this
    machine's names when it binds every interface, and `extra` (names or addresses clients use to reach it).

    Anything else is refused, which defeats DNS rebinding: a page whose domain rebinds to this address still
    sends its own domain in `Host`.
    """
    names = {*LOOPBACK_NAMES, *(_name(h) for h in extra if h.strip())}
    bind = _name(bind_host)
    if bind in WILDCARD_ADDRESSES:
        names.update(_name(n) for n in (socket.gethostname(), socket.getfqdn()) if n)
    else:
        names.add(bind)
    return frozenset(names)


def host_header_allowed(header: str | None, allowed: frozenset[str]) -> bool:
    """True when a request's `Host` header (port ignored) names one of `allowed`; a missing or malformed header
    (credentials, a path) is refused."""
    if not header:
        return False
    try:
        parts = urlsplit(f"//{header.strip()}")
        _ = parts.port  # validates the port
    except ValueError:
        return False
    if parts.hostname is None or parts.username is not None or parts.path or parts.query or parts.fragment:
        return False
    return _name(parts.hostname) in allowed
