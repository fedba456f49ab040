"""Settings of live teleop sessions and what a rollout is started with."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flywheel.config import TaskName
from flywheel.errors import ConfigError, describe_validation_error
from flywheel.vocab import DEFAULT_CAMERA

ARM_AXES = ("x", "y", "z")
ENV_PREFIX = "FLYWHEEL_LIVE_"


class LiveConfig(BaseModel):
    """How sessions behave: jog size, sim steps per command, render size, idle timeout, claim heartbeats."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    jog_step_m: float = Field(0.02, gt=0, le=0.05, description="end-effector move per jog press (metres)")
    jog_sim_steps: int = Field(6, ge=1, le=100, description="sim steps advanced per jog press")
    gripper_sim_steps: int = Field(10, ge=1, le=100, description="sim steps advanced per gripper press")
    refresh_s: float = Field(0.25, ge=0.05, le=10, description="live-view refresh period (seconds)")
    stream_refresh_s: float = Field(
        2.0, ge=0.25, le=60, description="status refresh period while the live stream shows the session (seconds)"
    )
    steps_per_tick: int = Field(12, ge=1, le=400, description="sim steps per refresh while playing (12 ≈ 50 Hz)")
    image_size: tuple[int, int] = Field((240, 320), description="rendered frame (height, width)")
    idle_timeout_s: float = Field(120.0, gt=0, description="save and release a session nobody touched this long")
    claim_heartbeat_s: float = Field(2.0, gt=0, description="how often a claimed takeover request is kept alive")
    reap_every_s: float = Field(1.0, gt=0, description="how often idle sessions are looked for")
    drive_speed_mps: float = Field(0.12, gt=0, le=0.5, description="end-effector speed of a fully held input (m/s)")
    drive_mode: Literal["realtime", "step_wait"] = Field(
        "step_wait", description="while a person drives: the sim runs at the control rate, or waits for held input"
    )
    stream_quality: int = Field(80, ge=20, le=95, description="JPEG quality of the live stream")
    catch_up_steps: int = Field(5, ge=1, le=50, description="most sim steps per stream frame when rendering lags")
    lighting: Literal["default", "operator"] = Field("operator", description="render lighting of the console views")

    @field_validator("image_size")
    @classmethod
    def _size(cls, size: tuple[int, int]) -> tuple[int, int]:
        if min(size) < 16 or max(size) > 2048:
            raise ValueError(f"image_size (height, width) must be within 16..2048, got {size}")
        return size

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LiveConfig:
        """Defaults overridden by `FLYWHEEL_LIVE_<FIELD>` variables, e.g. FLYWHEEL_LIVE_IDLE_TIMEOUT_S=300."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name in cls.model_fields:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw:
                values[name] = raw.lower().split("x") if name == "image_size" else raw
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(f"invalid {ENV_PREFIX}* setting: {describe_validation_error(exc)}") from None


class RolloutSpec(BaseModel):
    """A rollout the operator starts from the console. `policy` is a version id or alias; None = expert only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: TaskName = "transfer_cube"
    policy: str | None = "champion"
    seed: int = Field(0, ge=0, le=2**31 - 1)
    camera: str = DEFAULT_CAMERA
    max_steps: int = Field(400, ge=1, le=10_000)
