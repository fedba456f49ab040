"""The flywheel loop's configuration: one validated model, loadable from YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from flywheel.collect.spec import POLICY_DEVICE_PATTERN
from flywheel.config import TaskName
from flywheel.errors import ConfigError
from flywheel.evaluate.runner import EvalConfig
from flywheel.train.config import TrainConfig
from flywheel.vocab import DEFAULT_CAMERA, DEFAULT_IMAGE_SIZE


class FlywheelConfig(BaseModel):
    """What `flywheel run` does each iteration. The defaults are the `quickstart` preset (`flywheel.presets`)."""

    model_config = ConfigDict(extra="forbid")

    task: TaskName = "transfer_cube"
    obs_mode: str = Field("state", pattern="^(state|pixels)$", description="what demos record (pixels: cameras)")
    cameras: list[str] = Field(
        default_factory=lambda: [DEFAULT_CAMERA], min_length=1, description="pixels: cameras to record"
    )
    image_size: tuple[int, int] = Field(DEFAULT_IMAGE_SIZE, description="pixels: (height, width) of every camera")
    demos: int = Field(50, ge=1, le=100_000, description="expert demos seeded when the store has none")
    bootstrap_steps: int | None = Field(
        4000, ge=1, le=10_000_000, description="policy steps with no champion to warm-start from (None: train.steps)"
    )
    bootstrap_lr: float | None = Field(
        None, gt=0.0, le=1.0, description="peak learning rate with no champion to warm-start from (None: train.lr)"
    )
    episodes_per_iteration: int = Field(20, ge=1, le=10_000)
    workers: int = Field(2, ge=1, le=256)
    envs_per_worker: int = Field(
        32, ge=1, le=64, description="collection: episodes each worker steps in lockstep (one batched policy pass)"
    )
    policy_device: str = Field(
        "cpu", pattern=POLICY_DEVICE_PATTERN, description="collection: where the policy samples (cpu | cuda[:N])"
    )
    max_steps: int = Field(400, ge=1)
    operator: dict[str, Any] = Field(default_factory=dict, description="simulated operator settings")
    operator_mode: str = Field("simulated", pattern="^(simulated|console)$", description="console: ask a person")
    console_timeout_seconds: float = Field(60.0, gt=0, le=86_400, description="console mode: wait, then simulated")
    console_claim_timeout_seconds: float = Field(30.0, gt=0, le=3_600, description="claim heartbeat older: fall back")
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=lambda: EvalConfig(episodes=100, workers=2))
    max_attempts: int = Field(3, ge=1, le=100, description="attempts per job before the iteration fails")
    heartbeat_seconds: float = Field(5.0, gt=0, le=600)

    def bootstrap_train(self) -> TrainConfig:
        """The training config with no champion to warm-start from (iteration 0: demos only): `train` with
        `bootstrap_steps` and `bootstrap_lr` where they are set, so the warm-started fine-tunes can keep their own."""
        update: dict[str, Any] = {}
        if self.bootstrap_steps is not None:
            update["steps"] = self.bootstrap_steps
        if self.bootstrap_lr is not None:
            update["lr"] = self.bootstrap_lr
        return self.train.model_copy(update=update)


def load_flywheel_config(path: Path | None, preset: str | None = None, task: str | None = None) -> FlywheelConfig:
    """The named preset (`preset`, else the file's `preset:` key, else `quickstart`) with the YAML file's
    values laid over it, and `task` over both; a `--preset` that contradicts the file's `preset:` key is an
    error."""
    from flywheel.presets import DEFAULT_PRESET, flywheel_config

    data: dict[str, Any] = {}
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"flywheel config {path} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping, got {type(loaded).__name__}")
        data = dict(loaded)
    named = data.pop("preset", None)
    if task is not None:
        data["task"] = task
    if preset is not None and named is not None and named != preset:
        raise ConfigError(f"{path} names preset {named!r} but --preset is {preset!r}; drop one of them")
    return flywheel_config(preset or named or DEFAULT_PRESET, data, source=str(path) if path else "flywheel config")
