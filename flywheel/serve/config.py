"""Server settings: where to bind, who may call, how large a request may be, how often to look for a new champion."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from flywheel.errors import FlywheelError
from flywheel.netutil import is_loopback

MIN_TOKEN_CHARS = 16
TOKEN_ENV = "FLYWHEEL_SERVE_TOKEN"


class ServeError(FlywheelError):
    """The policy server cannot start or serve as configured."""


class ServeConfig(BaseModel):
    """Validated settings of one policy server.

    A token, once given, is always required; `require_token` demands one on loopback (off loopback it is
    required anyway). `allowed_hosts` are Host names clients may use besides loopback and the bound address.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: str = Field(default="champion", min_length=1, description="version id or alias to serve")
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8000, ge=0, le=65_535)
    token: SecretStr | None = Field(default=None, description="bearer token; required off loopback")
    require_token: bool | None = Field(default=None, description="refuse to start without a token on loopback too")
    allowed_hosts: tuple[str, ...] = Field(default=(), description="extra Host header names (DNS rebinding)")
    max_body_bytes: int = Field(default=4 << 20, ge=1024, le=1 << 30, description="larger requests get 413")
    reload_interval_s: float = Field(default=2.0, ge=0.0, le=3600.0, description="alias poll period; 0 = off")
    image_size: tuple[int, int] | None = Field(default=None, description="(height, width) every camera must have")
    device: str = Field(default="cpu", pattern=r"^(cpu|cuda(:\d+)?)$")

    @field_validator("image_size")
    @classmethod
    def _image_size(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not all(8 <= v <= 4096 for v in value):
            raise ValueError(f"image_size (height, width) must lie in [8, 4096], got {value}")
        return value

    @model_validator(mode="after")
    def _token_when_exposed(self) -> ServeConfig:
        if self.token is not None and len(self.token.get_secret_value()) < MIN_TOKEN_CHARS:
            raise ValueError(f"the token must be at least {MIN_TOKEN_CHARS} characters")
        if self.token_required and self.token is None:
            where = f"bound to {self.host} (not loopback)" if not is_loopback(self.host) else "require_token is set"
            raise ValueError(f"{where}: a bearer token is required; pass --token-file PATH or set {TOKEN_ENV}")
        return self

    @property
    def token_required(self) -> bool:
        """A given token is always checked; without one, only off loopback or with `require_token` is it needed."""
        return self.token is not None or bool(self.require_token) or not is_loopback(self.host)


def read_token(token_file: Path | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The bearer token from `token_file` (first line, surrounding whitespace stripped) or `FLYWHEEL_SERVE_TOKEN`;
    never from the command line, where every local user can read it in the process list."""
    from_env = (os.environ if environ is None else environ).get(TOKEN_ENV) or None
    if token_file is None:
        return from_env
    if from_env is not None:
        raise ServeError(f"give the token once: --token-file {token_file} or {TOKEN_ENV}, not both")
    try:
        mode = token_file.stat().st_mode
        text = token_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ServeError(f"cannot read the token file {token_file}: {exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(f"warning: token file {token_file} is readable by other users; chmod 600 it", file=sys.stderr)
    lines = text.strip().splitlines()
    if not lines:
        raise ServeError(f"the token file {token_file} is empty")
    return lines[0].strip()


def serve_config(**values: object) -> ServeConfig:
    """Build a `ServeConfig`, turning validation problems into one actionable `ServeError` line."""
    try:
        return ServeConfig(**values)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) + ': ' if e['loc'] else ''}{e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise ServeError(f"refusing to start the policy server: {problems}") from None
