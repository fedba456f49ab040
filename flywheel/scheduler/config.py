"""The flywheel loop's configuration: one validated model, loadable from YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flywheel.collect.spec import POLICY_DEVICE_PATTERN
from flywheel.errors import ConfigError, describe_validation_error
from flywheel.evaluate.runner import EvalConfig
from flywheel.train.config import TrainConfig


def default_train_config() -> TrainConfig:
    """Sized for the quickstart: five iterations within 30 minutes on 2 CPU cores (state mode).

    Labelling is tuned on the loop's own data (simulated-operator interventions, warm start from the champion):
    the policy frames in the operator's no-progress window before a takeover are negative, frames above the 70th
    percentile of the advantages are positive, and intervention episodes weigh 0.5. With the trainer's defaults
    (median threshold, weight 2.0) the intervention episodes pulled every candidate below its champion.
    """
    return TrainConfig(
        method="recap",
        steps=1000,
        critic_steps=500,
        batch_size=64,
        warmup_steps=50,
        checkpoint_every=250,
        log_every=50,
        cpu_threads=1,
        advantage_quantile=0.7,
        pre_takeover_negative_steps=60,
        source_weights={"demo": 1.0, "autonomous": 1.0, "intervention": 0.5},
    )


class FlywheelConfig(BaseModel):
    """What `flywheel run` does each iteration."""

    model_config = ConfigDict(extra="forbid")

    task: str = "transfer_cube"
    obs_mode: str = Field("state", pattern="^(state|pixels)$", description="what demos record (pixels: cameras)")
    cameras: list[str] = Field(default_factory=lambda: ["top"], min_length=1, description="pixels: cameras to record")
    image_size: tuple[int, int] = Field((96, 128), description="pixels: (height, width) of every camera")
    demos: int = Field(50, ge=1, le=100_000, description="expert demos seeded when the store has none")
    bootstrap_steps: int | None = Field(
        4000, ge=1, le=10_000_000, description="policy steps with no champion to warm-start from (None: train.steps)"
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
    train: TrainConfig = Field(default_factory=default_train_config)
    eval: EvalConfig = Field(default_factory=lambda: EvalConfig(episodes=100, workers=2))
    max_attempts: int = Field(3, ge=1, le=100, description="attempts per job before the iteration fails")
    heartbeat_seconds: float = Field(5.0, gt=0, le=600)


def load_flywheel_config(path: Path | None) -> FlywheelConfig:
    if path is None:
        return FlywheelConfig()
    if not path.is_file():
        raise ConfigError(f"flywheel config {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
        return FlywheelConfig.model_validate(data)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        problems = describe_validation_error(exc)
        raise ConfigError(f"{path}: invalid flywheel config: {problems}") from None
