"""State shared by CLI commands: settings resolved once, the store opened on first use."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from flywheel.config import Settings, load_settings
from flywheel.errors import ConfigError
from flywheel.redact import redact_url, url_has_secret
from flywheel.store import EpisodeStore


def check_argv_db_url(url: str | None) -> None:
    """Refuse a password in a command-line database URL: every local user can read a process's arguments."""
    if url and url_has_secret(url):
        raise ConfigError(
            f"--db-url {redact_url(url)} carries a password, which every user of this machine can read in the "
            "process list; drop it from the command line and set FLYWHEEL_DB_URL or `db_url:` in a config file "
            "readable only by you (chmod 600), or keep the password in PGPASSFILE / ~/.pgpass"
        )


@dataclass
class CliState:
    overrides: dict[str, Any] = field(default_factory=dict)
    _settings: Settings | None = None
    _store: EpisodeStore | None = None

    def __post_init__(self) -> None:
        check_argv_db_url(self.overrides.get("db_url"))

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.overrides)
        return self._settings

    def store(self, migrate: bool = True) -> EpisodeStore:
        if self._store is None:
            self._store = EpisodeStore.open(self.settings, migrate=migrate)
        return self._store


def state(ctx: typer.Context, home: Path | None = None) -> CliState:
    """The shared CLI state; a command-level `--home` overrides the global one."""
    obj = ctx.find_root().obj
    if not isinstance(obj, CliState):
        obj = CliState()
        ctx.find_root().obj = obj
    if home is not None and obj.overrides.get("home") != home:
        obj.overrides["home"] = home
        obj._settings = None
        obj._store = None
    return obj
