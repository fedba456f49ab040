"""Model configuration (pydantic, strict): encoder, action expert, critic, inference."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flywheel.policy.normalize import NormKind

Precision = Literal["auto", "fp32", "bf16"]


class Strict(BaseModel):
    """Base for every config model: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class BackboneConfig(Strict):
    """A frozen pretrained vision(-language) backbone from `transformers`.

    `path` is a local directory (`from_pretrained`, never the hub); `config` is a dict for the transformers
    config class (random init, for tests and shape benchmarks). Exactly one of them must be given.
    """

    kind: Literal["siglip", "paligemma"] = "siglip"
    path: str | None = None
    config: dict | None = None
    freeze: bool = True
    image_size: int | None = Field(default=None, ge=16, le=1024)
    max_text_tokens: int = Field(default=16, ge=1, le=256)

    @model_validator(mode="after")
    def _one_source(self) -> BackboneConfig:
        if (self.path is None) == (self.config is None):
            raise ValueError("backbone: give exactly one of `path` (local directory) or `config` (random init)")
        return self


class EncoderConfig(Strict):
    """Observation encoder: state MLP plus an optional vision path (`cnn` or a frozen backbone)."""

    vision: Literal["none", "cnn", "backbone"] = "none"
    hidden_dim: int = Field(default=256, ge=8, le=8192)
    state_layers: int = Field(default=2, ge=1, le=8)
    cnn_channels: int = Field(default=32, ge=4, le=512)
    cnn_grid: int = Field(default=4, ge=1, le=16)
    cnn_pool: Literal["avg", "spatial_softmax"] = Field(
        default="avg",
        description="avg: a cnn_grid² grid of pooled feature tokens per camera; spatial_softmax: one token per "
        "camera from the expected image position of every feature channel (keypoints)",
    )
    cnn_downsample: Literal[8, 16] = Field(
        default=16,
        description="how much smaller than the image the CNN's last feature map is: 16, four stride-2 blocks; 8, the "
        "last block keeps the resolution (finer keypoints for small objects, more compute in that block)",
    )
    augment_shift: int = Field(
        default=0,
        ge=0,
        le=32,
        description="training only: random shift of every image by up to ± this many pixels (flywheel.train.augment)",
    )
    object_aux_weight: float = Field(
        default=0.0,
        ge=0.0,
        le=100.0,
        description="simulation only, training only: weight of an auxiliary loss in which a linear head predicts "
        "the objects' (x, y) from the CNN's features. The policy still reads only its input spec (the head is "
        "never used to act); the checkpoint's meta records it (`object_aux_weight`): report such runs apart",
    )
    backbone: BackboneConfig | None = None
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _backbone_given(self) -> EncoderConfig:
        if self.vision == "backbone" and self.backbone is None:
            raise ValueError("encoder: vision='backbone' needs a `backbone` section")
        if self.object_aux_weight > 0 and self.vision != "cnn":
            raise ValueError("encoder: object_aux_weight needs vision='cnn' (the head reads the CNN's features)")
        return self


class InputsConfig(Strict):
    """Which observations the policy reads (saved with the checkpoint as its input spec, `flywheel.policy.io`).

    `state`: entries of the env state vector (`sim.env.state_layout`: `qpos`, `qvel`, object poses); None reads
    all of them, object poses included: privileged, sim-only. `cameras`: for vision encoders, the cameras to read;
    None reads every camera the training data has.
    """

    state: list[str] | None = None
    cameras: list[str] | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> InputsConfig:
        if self.state is not None and not self.state:
            raise ValueError("inputs.state: list at least one entry (e.g. qpos), or null for the whole state")
        if self.cameras is not None and not self.cameras:
            raise ValueError("inputs.cameras: list at least one camera, or null for every camera in the data")
        for name, values in (("state", self.state), ("cameras", self.cameras)):
            if values is not None and len(set(values)) != len(values):
                raise ValueError(f"inputs.{name}: {values} lists an entry twice")
        return self


class ExpertConfig(Strict):
    """Flow-matching action expert: transformer blocks over an action chunk of `chunk` steps."""

    chunk: int = Field(default=20, ge=1, le=256)
    dim: int = Field(default=128, ge=16, le=4096)
    layers: int = Field(default=4, ge=1, le=32)
    heads: int = Field(default=4, ge=1, le=64)
    mlp_ratio: float = Field(default=4.0, gt=0.0, le=16.0)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _heads_divide(self) -> ExpertConfig:
        if self.dim % self.heads:
            raise ValueError(f"expert: dim {self.dim} must be divisible by heads {self.heads}")
        return self


class CriticConfig(Strict):
    """IQL critic: twin Q(s, A_chunk), V(s), Polyak target nets."""

    hidden_dim: int = Field(default=256, ge=8, le=8192)
    layers: int = Field(default=2, ge=1, le=8)
    gamma: float = Field(default=0.99, gt=0.0, le=1.0)
    expectile: float = Field(default=0.7, gt=0.0, lt=1.0)
    tau: float = Field(default=0.005, gt=0.0, le=1.0)
    observations: Literal["policy", "privileged"] = Field(
        default="policy",
        description="policy: the critic reads what the policy reads; privileged (simulation only): the env's whole "
        "state vector, object poses included, and no camera, while the policy still reads only its own inputs. "
        "The checkpoint's meta records it (`critic_observations`): report such runs apart",
    )


class InferenceConfig(Strict):
    """Sampling: K Euler steps, classifier-free guidance β, receding horizon, arithmetic precision.

    K = 4 by default: a transfer_cube BC policy succeeded in 84% of 50 held-out episodes with 4 steps as with 10
    (80% with 3, 60% with 2, 8% with 1), at 40% of the inference cost.

    `precision`: `auto` samples batched re-plans (at least 4 episodes, as lockstep collection does) with bf16
    matrix products on a CPU with AMX, and everything else in fp32: evaluation and the console, which sample one
    episode at a time, stay fp32, and a lockstep job's last few lanes fall back to fp32. `fp32` and `bf16` force
    one (on CUDA, `bf16` autocasts the whole sampling pass, encoder included). Success on 100 held-out
    transfer_cube episodes, bf16 vs fp32: in 32 lockstep lanes BC 61% vs 59%, RECAP 79% vs 79%; one episode at a
    time BC 51% vs 53%, RECAP 83% vs 75% (95% intervals are about ±9 points: rollouts amplify rounding either way).
    """

    num_steps: int = Field(default=4, ge=1, le=1000)
    cfg_beta: float = Field(default=1.0, ge=0.0, le=20.0)
    execute_steps: int = Field(default=8, ge=1, le=256)
    precision: Precision = "auto"


class ModelConfig(Strict):
    """Everything needed to rebuild the networks (stored with every checkpoint)."""

    inputs: InputsConfig = InputsConfig()
    encoder: EncoderConfig = EncoderConfig()
    expert: ExpertConfig = ExpertConfig()
    critic: CriticConfig = CriticConfig()
    inference: InferenceConfig = InferenceConfig()
    norm: NormKind = "mean_std"
    state_clip: float = Field(
        default=5.0, gt=0.0, le=1e6, description="normalised states are clamped to ±this (robust to outlier states)"
    )

    @model_validator(mode="after")
    def _horizon_fits(self) -> ModelConfig:
        if self.inference.execute_steps > self.expert.chunk:
            raise ValueError(
                f"inference.execute_steps {self.inference.execute_steps} exceeds expert.chunk {self.expert.chunk}"
            )
        return self
