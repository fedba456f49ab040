"""Exceptions with one-line, actionable messages shown to users by the CLI and the console."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class FlywheelError(Exception):
    """Base class: the message names the thing that is wrong and what to do about it."""


class ConfigError(FlywheelError):
    """A setting, config file or config value is invalid."""


class ForeignFolderError(ConfigError):
    """A folder this store would delete in (its checkpoints folder) is marked as another store's."""


class StalledLoopError(FlywheelError):
    """The loop would train again what its gates already rejected: no champion and nothing new to learn from."""


class StoreError(FlywheelError):
    """The episode store cannot do what was asked."""


class DatabaseUnavailableError(StoreError):
    """The database URL cannot be connected to."""


class SchemaOutOfDateError(StoreError):
    """The database is at an older (or unknown) schema revision."""


class EpisodeNotFoundError(StoreError):
    """No episode row with that id."""


class EpisodeFileError(StoreError):
    """An episode file is missing, unreadable or fails its checksum."""


class InvalidFramesError(StoreError):
    """Frames handed to the store are malformed (shape, dtype, NaN/inf)."""


def describe_validation_error(exc: ValidationError) -> str:
    """Every problem of a pydantic validation error on one line: `field.path: message; ...`."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors())
