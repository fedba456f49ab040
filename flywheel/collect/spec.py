"""What a collection worker needs to know (picklable; sent to each process or Ray actor)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from flywheel.collect.attended import AttendedConfig
from flywheel.config import TaskName
from flywheel.vocab import DEFAULT_CAMERA, DEFAULT_IMAGE_SIZE, SIMULATED_OPERATOR

OperatorMode = Literal["simulated", "none", "expert", "console"]
POLICY_DEVICE_PATTERN = r"^(cpu|cuda(:\d+)?)$"
PolicyPrecision = Literal["auto", "fp32", "bf16"]
"""`flywheel.policy.config.Precision`, spelled out: importing the policy package would load torch wherever a spec
is built (the console, the scheduler)."""


class CollectSpec(BaseModel):
    """One collection run. `operator_mode="expert"` records expert demos (no policy); `"simulated"` lets the
    simulated operator (`sim_operator`: its `SimOperatorConfig` settings) take over; `"console"` asks a person in the
    console at the simulated operator's first trigger and falls back to it (`attended` says how long to wait);
    `"none"`: the policy alone. `operator_name` is who the demos and simulated takeovers are recorded under."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: TaskName
    obs_mode: Literal["state", "pixels"] = "state"
    cameras: tuple[str, ...] = (DEFAULT_CAMERA,)
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE
    max_steps: int = Field(400, ge=1, le=10_000)
    operator_mode: OperatorMode = "simulated"
    sim_operator: dict[str, Any] = Field(default_factory=dict)
    operator_name: str = SIMULATED_OPERATOR
    policy_version_id: int | None = None
    policy_checkpoint: str | None = None
    policy_sha256: str | None = None
    iteration: int | None = None
    source_prefix: str = Field(..., min_length=1, description="source keys are <prefix>/seed-<seed>")
    attended: AttendedConfig | None = None
    policy_threads: int = Field(1, ge=1, le=256, description="torch threads per worker (small policies: 1 is fastest)")
    envs_per_worker: int = Field(
        1,
        ge=1,
        le=64,
        description="episodes a worker steps in lockstep, re-planning their policies in one batched forward pass",
    )
    precision: PolicyPrecision | None = Field(
        None, description="policy arithmetic (auto | fp32 | bf16); None: the checkpoint's inference.precision"
    )
    cfg_beta: float | None = Field(
        None,
        ge=0.0,
        le=20.0,  # `InferenceConfig.cfg_beta`'s bounds, spelled out for the same reason as `PolicyPrecision`
        description="classifier-free guidance β for a RECAP policy; None: the checkpoint's inference.cfg_beta",
    )
    execute_steps: int | None = Field(
        None,
        ge=1,
        le=256,  # `InferenceConfig.execute_steps`'s bounds, spelled out like `cfg_beta`'s
        description="actions executed from each sampled chunk before re-planning (capped at the chunk); None: the "
        "checkpoint's inference.execute_steps",
    )
    policy_device: str = Field(
        "cpu",
        pattern=POLICY_DEVICE_PATTERN,
        description="where the policy samples: cpu | cuda[:N] (the simulation runs on the CPU either way)",
    )

    def model_post_init(self, _context: Any) -> None:
        if self.operator_mode != "expert" and self.policy_checkpoint is None:
            raise ValueError("collecting with a policy needs policy_checkpoint (use operator_mode='expert' for demos)")
        if (self.operator_mode == "console") != (self.attended is not None):
            raise ValueError("operator_mode='console' needs attended settings (and only it takes them)")

    @classmethod
    def for_demos(cls, task: str, **settings: Any) -> CollectSpec:
        """Expert demos of `task`: one source-key prefix per task, so every caller dedupes against the same keys."""
        return cls(task=task, operator_mode="expert", operator_name="expert", source_prefix=f"demos/{task}", **settings)

    @classmethod
    def for_policy(cls, version: Any, source_prefix: str, **settings: Any) -> CollectSpec:
        """Episodes of a registered policy `version` (its task, id and checkpoint), in the env its checkpoint
        reads; `settings` say who may take over and how it samples."""
        return cls(
            task=version.task,
            **cls.observation_for(version.checkpoint_uri),
            policy_version_id=version.id,
            policy_checkpoint=version.checkpoint_uri,
            policy_sha256=version.sha256,
            source_prefix=source_prefix,
            **settings,
        )

    @classmethod
    def policy_alone(cls, version: Any, source_prefix: str, **settings: Any) -> CollectSpec:
        """Episodes of a registered policy `version` acting alone (evaluation), in the env its checkpoint reads."""
        return cls.for_policy(version, source_prefix, operator_mode="none", operator_name="eval", **settings)

    def runner_settings(self) -> dict[str, Any]:
        """How every lane's `PolicyRunner` samples: the same for all of them, as batched re-plans require."""
        return {
            "device": self.policy_device,
            "precision": self.precision,
            "cfg_beta": self.cfg_beta,
            "execute_steps": self.execute_steps,
        }

    @staticmethod
    def observation_for(checkpoint: str) -> dict[str, Any]:
        """The env settings (`obs_mode`, `cameras`, `image_size`) that render what the policy at `checkpoint` reads:
        its saved input spec, never a registry key or a default."""
        from flywheel.policy.input_spec import read_checkpoint_inputs

        inputs = read_checkpoint_inputs(checkpoint)
        settings: dict[str, Any] = {"obs_mode": inputs.obs_mode}
        if inputs.cameras:
            settings["cameras"] = inputs.cameras
        if inputs.image_size is not None:
            settings["image_size"] = inputs.image_size
        return settings

    def job_size(self, pending: int, workers: int) -> int:
        """Seeds for a worker's next job: up to `envs_per_worker`, but the tail spread over the `workers`."""
        share = -(-pending // max(1, workers))
        return max(1, min(self.envs_per_worker, share, pending))

    def source_key(self, seed: int) -> str:
        return f"{self.source_prefix}/seed-{seed}"
