"""The failure-mode taxonomy operators label segments with: defaults, or a YAML file.

Configuration: `<home>/taxonomy.yaml` when it exists (or an explicit path), a mapping with one key::

    failure_modes:
      - {name: missed_grasp, description: "closed the gripper beside the object"}
      - {name: slipped, description: "lost the object while carrying it"}

Names are lower snake_case and unique; descriptions are optional (a plain list of names also works).
Without a file the defaults below apply.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flywheel.config import Settings
from flywheel.errors import ConfigError, describe_validation_error
from flywheel.review.errors import ReviewError

TAXONOMY_FILE = "taxonomy.yaml"


class FailureMode(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="lower snake_case identifier")
    description: str = Field(default="", max_length=200)


DEFAULT_MODES = (
    FailureMode(name="missed_grasp", description="the gripper closed beside the object"),
    FailureMode(name="dropped_object", description="the object was lost after being grasped"),
    FailureMode(name="collision", description="an arm hit the table, the other arm or the scene"),
    FailureMode(name="wrong_target", description="went for the wrong object, peg or place"),
    FailureMode(name="stuck", description="no progress: oscillating or frozen"),
    FailureMode(name="other", description="anything else (say what in the note)"),
)


class FailureTaxonomy(BaseModel):
    """The allowed failure modes, in display order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    failure_modes: tuple[FailureMode, ...] = Field(default=DEFAULT_MODES, min_length=1)

    @field_validator("failure_modes", mode="before")
    @classmethod
    def _names_as_modes(cls, value: object) -> object:
        """Allow a plain list of names (`failure_modes: [missed_grasp, stuck]`)."""
        if isinstance(value, list | tuple):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("failure_modes")
    @classmethod
    def _unique(cls, modes: tuple[FailureMode, ...]) -> tuple[FailureMode, ...]:
        names = [m.name for m in modes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate failure modes {duplicates}")
        return modes

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.failure_modes]

    def check(self, name: str) -> str:
        """`name` if it is in the taxonomy, else a ReviewError listing the allowed names."""
        if name not in self.names:
            raise ReviewError(f"unknown failure mode {name!r}: use one of {', '.join(self.names)}")
        return name


def load_taxonomy(settings: Settings, path: Path | None = None) -> FailureTaxonomy:
    """The taxonomy from `path`, else `<home>/taxonomy.yaml` when present, else the defaults."""
    source = path or settings.home / TAXONOMY_FILE
    if not source.exists():
        if path is not None:
            raise ConfigError(f"taxonomy file {path} does not exist")
        return FailureTaxonomy()
    try:
        data = yaml.safe_load(source.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"taxonomy file {source} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"taxonomy file {source} must be a mapping with a 'failure_modes' list")
    try:
        return FailureTaxonomy(**data)
    except (ValidationError, TypeError) as exc:
        problem = describe_validation_error(exc) if isinstance(exc, ValidationError) else str(exc)
        raise ConfigError(f"invalid taxonomy in {source} ({problem})") from None
