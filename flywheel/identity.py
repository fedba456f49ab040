"""Names that enter from people and data (operators, cameras), and who the machine says is acting.

One pattern for every name: letters, digits, `_`, `.` and `-`, starting with a letter or digit, at most 64
characters. Nothing in it is markup, a path separator or whitespace, so a name can be shown, logged and used as a
key anywhere without escaping. Names from a dataset or a shared database are checked against it before they are
stored.
"""

from __future__ import annotations

import getpass
import os
import re
import socket

from flywheel.errors import FlywheelError

NAME_MAX = 64
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_RULE = "1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
UNKNOWN_OPERATOR = "unknown"  # Settings.operator's default: a placeholder, never an identity for the audit trail


class InvalidNameError(FlywheelError):
    """An operator, camera or other name does not follow NAME_PATTERN."""


def is_valid_name(name: object) -> bool:
    return isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None


def check_name(name: object, what: str = "operator name") -> str:
    """`name` if it follows NAME_PATTERN, else an InvalidNameError that shows a safe excerpt of it."""
    if is_valid_name(name):
        return str(name)
    shown = ascii(str(name)[:24]) + ("…" if len(str(name)) > 24 else "")
    raise InvalidNameError(f"{what} {shown} is not allowed: use {NAME_RULE}")


def check_actor(name: object, what: str = "operator name") -> str:
    """A name that identifies a person for the audit trail: a valid name other than the `unknown` placeholder."""
    text = str(name or "").strip()
    if not text or text == UNKNOWN_OPERATOR:
        raise InvalidNameError(
            f"a real {what} is required (got {ascii(text) if text else 'none'}): pass --operator-name, set "
            "FLYWHEEL_OPERATOR or `operator:` in the config file"
        )
    return check_name(text, what)


def os_user() -> str:
    """The operating-system account running this process (`uid<N>` when it has no name)."""
    try:
        return getpass.getuser()[:NAME_MAX]
    except (KeyError, OSError):
        return f"uid{os.getuid()}"


def acting_operator(configured: str | None, what: str = "operator name") -> str:
    """Who acts, for audit records: the configured operator name, else the OS user (validated either way)."""
    name = configured if configured and configured != UNKNOWN_OPERATOR else os_user()
    return check_name(name, what)


def process_identity() -> str:
    """Who the machine says is acting in this process: `<os user>@<host>`, recorded beside typed names."""
    return f"{os_user()}@{socket.gethostname()}"[:128]
