"""Secrets never printed: one function renders any database URL the project shows, password-free."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

MASK = "***"
UNPARSEABLE = "<a malformed database URL, not shown>"
SECRET_QUERY_KEYS = frozenset({"password", "passwd", "pwd", "secret", "token", "sslpassword", "api_key"})
USERINFO_PASSWORD = re.compile(r"://[^/?#]*:[^/?#]*@")  # `scheme://user:pass@`, whether or not the rest parses


def redact_url(url: object) -> str:
    """`url` without its secrets: the userinfo password and secret query parameters (`password=`, `token=`, ...)
    become `***`; a URL that does not parse is never echoed (it may be a password pasted in the wrong place)."""
    try:
        parsed = make_url(str(url))
    except (ArgumentError, ValueError, TypeError):
        return UNPARSEABLE
    if "@" in (parsed.host or "") or "@" in (parsed.username or ""):
        return UNPARSEABLE  # an unencoded `@` in the password: part of it would land in the host
    query = {key: (MASK if key.lower() in SECRET_QUERY_KEYS else value) for key, value in parsed.query.items()}
    rendered = parsed.set(query=query).render_as_string(hide_password=True)
    return rendered.replace("=%2A%2A%2A", f"={MASK}")  # the renderer percent-encodes the mask


def url_has_secret(url: str) -> bool:
    """Whether a URL carries a password, in its userinfo or its query (a malformed one too, when it has the
    `user:password@` shape)."""
    if USERINFO_PASSWORD.search(url):
        return True
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError):
        return False
    return parsed.password is not None or any(key.lower() in SECRET_QUERY_KEYS for key in parsed.query)


def database_identity(url: str) -> str:
    """Which database a URL names, whatever the credentials, driver options or driver: backend, host, port and
    database (`postgresql://db.lab:5432/flywheel`, `sqlite:///abs/path.db`). Moving a password into a pgpass file
    or changing the driver leaves it unchanged."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError):
        return UNPARSEABLE
    backend, database = parsed.get_backend_name(), parsed.database or ""
    if backend == "sqlite" and database and database != ":memory:":
        database = str(Path(database).resolve())  # the same file, whichever directory the command ran in
    host = parsed.host or ""
    port = f":{parsed.port}" if parsed.port else ""
    return f"{backend}://{host}{port}/{database}"
