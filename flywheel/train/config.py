"""Training configuration: one strict pydantic model, loadable from YAML or JSON, validated before any work."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from flywheel.errors import ConfigError, describe_validation_error
from flywheel.policy.config import ModelConfig, Strict
from flywheel.policy.recap import RewardConfig
from flywheel.train.norm_fit import NormFrames
from flywheel.vocab import TAGS


class TrainConfig(Strict):
    """Everything a training run needs besides the data. `method` picks RECAP, plain BC or AWR.

    The defaults are the quickstart's (`flywheel run` and `flywheel train` with no preset): sized for five loop
    iterations within 30 minutes on 2 CPU cores, state observations. Labelling is tuned on the loop's own data
    (simulated-operator interventions, warm start from the champion): the policy frames in the operator's
    no-progress window before a takeover are negative, frames above the 70th percentile of the advantages are
    positive, and intervention episodes weigh 0.5; with a median threshold and intervention weight 2.0 the
    intervention episodes pulled every candidate below its champion. Named variants: `flywheel.presets`.
    """

    method: Literal["recap", "bc", "awr"] = "recap"
    seed: int = Field(default=0, ge=0)
    model: ModelConfig = ModelConfig()
    reward: RewardConfig = RewardConfig()

    steps: int = Field(default=1000, ge=1, le=10_000_000, description="policy optimiser steps")
    critic_steps: int = Field(default=500, ge=0, le=10_000_000, description="IQL steps (recap/awr)")
    batch_size: int = Field(default=64, ge=1, le=65_536, description="global batch per optimiser step")
    grad_accum: int = Field(default=1, ge=1, le=1024)
    lr: float = Field(default=3e-4, gt=0.0, le=1.0)
    critic_lr: float = Field(default=3e-4, gt=0.0, le=1.0)
    weight_decay: float = Field(default=1e-4, ge=0.0, le=1.0)
    warmup_steps: int = Field(default=50, ge=0)
    min_lr_ratio: float = Field(default=0.1, ge=0.0, le=1.0)
    grad_clip: float = Field(default=1.0, gt=0.0, le=1e6)
    ema_decay: float | None = Field(
        default=None,
        gt=0.0,
        lt=1.0,
        description="keep an exponential moving average of the policy's weights over its steps (e.g. 0.995: "
        "about the last 200) and save the average as the trained policy; None saves the last step's weights",
    )

    advantage: Literal["q_minus_v", "nstep"] = "q_minus_v"
    advantage_quantile: float = Field(default=0.7, ge=0.0, le=1.0, description="ε = this quantile per task")
    pre_takeover_negative_steps: int = Field(
        default=60,
        ge=0,
        le=100_000,
        description="policy frames this close before a takeover are labelled negative (the operator judged them)",
    )
    pre_takeover_since_progress: bool = Field(
        default=False,
        description="stop each pre-takeover window at the policy's last stage progress, so that it covers the "
        "no-progress run the operator's trigger measured and no frame that advanced the task; with a window as long "
        "as the task's longest operator patience, every stall is labelled whole",
    )
    failed_corrections_positive: bool = Field(
        default=True,
        description="takeover frames are labelled positive even when the takeover repaired nothing (no stage "
        "progress); False leaves those to the critic's advantage",
    )
    mask_control_changes: bool = Field(
        default=False,
        description="leave out of the flow loss each action chunk's steps from the first change of controller "
        "inside it (a takeover or hand-back), so that no frame learns another controller's actions as its own; the "
        "critic and the labels still value the executed chunk",
    )
    norm_frames: NormFrames = Field(
        default="demos",
        description="fit normalisation on demo episodes, expert/human-controlled frames or every frame "
        "(falling back in that order when a dataset has none); see flywheel.train.norm_fit",
    )
    indicator_dropout: float = Field(default=0.3, ge=0.0, le=1.0)
    source_weights: dict[str, float] = Field(
        default_factory=lambda: {"demo": 1.0, "autonomous": 1.0, "intervention": 0.5}
    )
    takeover_weight: float = Field(
        default=1.0,
        gt=0.0,
        le=1000.0,
        description="multiplies the source weight of the takeover frames of intervention episodes (an operator or "
        "the expert driving; with failed_corrections_positive false, only takeovers that repaired something), apart "
        "from the policy's own frames there",
    )
    awr_beta: float = Field(default=1.0, gt=0.0, le=100.0)
    awr_max_weight: float = Field(default=20.0, gt=0.0, le=1e6)

    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool = Field(default=True, description="bf16 autocast on CUDA")
    cpu_bf16: bool = Field(
        default=False,
        description="bf16 autocast on CPU too: faster on CPUs with native bf16 (AVX512-BF16, AMX); "
        "python -m bench.train_step measures it on this machine",
    )
    strategy: Literal["ddp", "fsdp"] = "ddp"
    cpu_threads: int | None = Field(
        default=1, ge=1, le=512, description="torch intra-op threads (CPU; null: torch's default)"
    )
    checkpoint_every: int = Field(default=250, ge=1)
    log_every: int = Field(default=50, ge=1)
    wandb: bool = True
    wandb_project: str = Field(default="flywheel", min_length=1)

    @field_validator("source_weights")
    @classmethod
    def _known_tags(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(TAGS))
        if unknown:
            raise ValueError(f"unknown tags {unknown}; use {list(TAGS)}")
        if any(w < 0 or w > 1e3 for w in value.values()):
            raise ValueError("source weights must be in [0, 1000]")
        return {**{t: 1.0 for t in TAGS}, **value}

    @model_validator(mode="after")
    def _batch_splits(self) -> TrainConfig:
        if self.batch_size % self.grad_accum:
            raise ValueError(f"batch_size {self.batch_size} must be divisible by grad_accum {self.grad_accum}")
        if self.method != "bc" and self.critic_steps == 0:
            raise ValueError(f"method {self.method!r} needs critic_steps > 0 (the advantages come from IQL)")
        return self

    @property
    def uses_critic(self) -> bool:
        return self.method != "bc"


def parse_config(data: dict, source: str = "config") -> TrainConfig:
    """Validate a dict; every problem is listed in one ConfigError."""
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        problems = describe_validation_error(exc)
        raise ConfigError(f"{source}: invalid training config: {problems}") from None


def load_config_data(path: str | Path) -> dict:
    """The mapping in a .yaml/.yml/.json training config file (not yet validated)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"training config {p} does not exist")
    text = p.read_text()
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{p}: cannot parse: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping, got {type(data).__name__}")
    return data


def load_config(path: str | Path) -> TrainConfig:
    """Load a TrainConfig from a .yaml/.yml/.json file (over the schema defaults, i.e. the quickstart's)."""
    return parse_config(load_config_data(path), str(Path(path)))
