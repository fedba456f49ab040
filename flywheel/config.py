"""One validated settings object: environment variables, an optional config file, defaults.

Precedence (highest first): explicit arguments, `FLYWHEEL_*` environment variables, the config file
(`FLYWHEEL_CONFIG`, else `<home>/config.yaml` when present), defaults.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from flywheel.errors import ConfigError, describe_validation_error

DEFAULT_HOME = Path(".flywheel")
ENV_PREFIX = "FLYWHEEL_"
DEFAULT_DB_RETRY_SECONDS = 180.0


def known_task(task: str) -> str:
    """`task` if it names a simulated task, else a ValueError listing them (sim is imported on first use)."""
    from sim.errors import UnknownTaskError
    from sim.tasks import task_class

    try:
        task_class(task)
    except UnknownTaskError as exc:
        raise ValueError(str(exc)) from None
    return task


TaskName = Annotated[str, AfterValidator(known_task)]
"""A config field holding a simulated task's name, validated against `sim.tasks.TASKS`."""


class Settings(BaseModel):
    """Where flywheel keeps its data and how it reaches the database."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    home: Path = Field(default=DEFAULT_HOME, description="data directory (SQLite DB, episode files, checkpoints)")
    db_url: str | None = Field(default=None, description="SQLAlchemy URL; default: SQLite at <home>/flywheel.db")
    episodes_dir: Path | None = Field(default=None, description="episode files; default <home>/episodes")
    checkpoints_dir: Path | None = Field(default=None, description="policy checkpoints; default <home>/policies")
    operator: str = Field(default="unknown", min_length=1, max_length=64, description="who acts, for audit")
    console_password: str | None = Field(default=None, description="required to bind the console off-loopback")
    sqlite_busy_timeout_ms: int = Field(default=30_000, ge=0, le=600_000)
    db_retry_seconds: float = Field(
        default=DEFAULT_DB_RETRY_SECONDS,
        ge=0,
        le=86_400,
        description="how long an operation waits out a database outage (lost connection, restart) before failing",
    )
    # -- console transport (flywheel console): TLS, required off loopback; extra Host names it answers ------------
    console_tls_cert: Path | None = Field(default=None, description="PEM certificate; required off loopback")
    console_tls_key: Path | None = Field(default=None, description="PEM private key of console_tls_cert")
    console_allowed_hosts: tuple[str, ...] = Field(
        default=(), description="Host names besides loopback and the bound address (comma-separated in the env)"
    )

    @field_validator("console_allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        return tuple(h.strip() for h in value.split(",") if h.strip()) if isinstance(value, str) else value

    # -- end of console transport --------------------------------------------------------------------------------

    @field_validator("operator")
    @classmethod
    def _check_operator(cls, value: str) -> str:
        from flywheel.identity import InvalidNameError, check_name

        try:
            return check_name(value.strip())
        except InvalidNameError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("db_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(value)
        except ArgumentError:
            raise ValueError(
                "not a database URL (the value is not shown: it may hold a secret); e.g. "
                "postgresql+psycopg://user@host/db"
            ) from None
        return value

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{(self.home / 'flywheel.db').resolve()}"

    @property
    def episodes_root(self) -> Path:
        return (self.episodes_dir or self.home / "episodes").resolve()

    @property
    def checkpoints_root(self) -> Path:
        return (self.checkpoints_dir or self.home / "policies").resolve()


def load_settings(overrides: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Build settings from defaults, the config file, the environment and explicit overrides."""
    env = dict(os.environ if environ is None else environ)
    from_env = {
        name: env[ENV_PREFIX + name.upper()] for name in Settings.model_fields if env.get(ENV_PREFIX + name.upper())
    }
    explicit = {k: v for k, v in (overrides or {}).items() if v is not None}
    home = Path(explicit.get("home") or from_env.get("home") or DEFAULT_HOME)
    config_path = Path(env["FLYWHEEL_CONFIG"]) if env.get("FLYWHEEL_CONFIG") else home / "config.yaml"
    from_file = _read_config_file(config_path, required=bool(env.get("FLYWHEEL_CONFIG")))
    merged = {**from_file, **from_env, **explicit}
    try:
        return Settings(**merged)
    except ValidationError as exc:
        problems = describe_validation_error(exc)
        raise ConfigError(f"invalid settings ({problems}); check {config_path} and FLYWHEEL_* variables") from None


def _read_config_file(path: Path, required: bool) -> dict[str, Any]:
    if not path.exists():
        if required:
            raise ConfigError(f"config file {path} does not exist (set by FLYWHEEL_CONFIG)")
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings, got {type(data).__name__}")
    _warn_if_readable_secrets(path, data)
    return data


class InsecureConfigWarning(UserWarning):
    """A config file that holds a secret is readable by other users."""


def _warn_if_readable_secrets(path: Path, data: dict[str, Any]) -> None:
    """Warn when a config file holding a secret (console password, a database password) is group/world-readable."""
    from flywheel.redact import url_has_secret

    secrets = [k for k in ("console_password",) if data.get(k)]
    if isinstance(data.get("db_url"), str) and url_has_secret(data["db_url"]):
        secrets.append("db_url password")
    mode = path.stat().st_mode & 0o777
    if secrets and mode & 0o077:
        warnings.warn(
            f"config file {path} holds secrets ({', '.join(secrets)}) and other users can read it (mode "
            f"{mode:03o}); run `chmod 600 {path}`",
            InsecureConfigWarning,
            stacklevel=3,
        )
