"""Secrets never printed: one function renders any database URL the project shows, password-free."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

MASK = "***"
UNPARSEABLE = "<a malformed database URL, not shown>"
SECRET_QUERY_KEYS = frozenset({"password", "passwd", "pwd", "secret", "token", "sslpassword", "api_key"})


def redact_url(url: object) -> str:
    """`url` without its secrets: the userinfo password and secret query parameters (`password=`, `token=`, ...)
    become `***`; a URL that does not parse is never echoed (it may be a password pasted in the wrong place)."""
    try:
        parsed = make_url(str(url))
    except (ArgumentError, ValueError, TypeError):
        return UNPARSEABLE
    query = {key: (MASK if key.lower() in SECRET_QUERY_KEYS else value) for key, value in parsed.query.items()}
    rendered = parsed.set(query=query).render_as_string(hide_password=True)
    return rendered.replace("=%2A%2A%2A", f"={MASK}")  # the renderer percent-encodes the mask


def url_has_secret(url: str) -> bool:
    """Whether a (parseable) URL carries a password, in its userinfo or its query."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError):
        return False
    return parsed.password is not None or any(key.lower() in SECRET_QUERY_KEYS for key in parsed.query)
