"""Rebuild a policy (and optionally its critic) from a verified checkpoint directory."""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from flywheel.policy.checkpoint import (
    CheckpointError,
    checkpoint_sha256,
    read_document,
    read_tensors,
    verify_checkpoint,
)
from flywheel.policy.config import ModelConfig
from flywheel.policy.expert import POSITIVE, UNCONDITIONAL
from flywheel.policy.input_spec import InputSpec, read_checkpoint_inputs
from flywheel.policy.io import PolicyIO
from flywheel.policy.model import FlywheelPolicy, PolicySpec
from flywheel.policy.normalize import NormStats
from flywheel.policy.packed_bf16 import PackedBlockStack
from flywheel.policy.recap import IqlCritic


@dataclass
class LoadedPolicy:
    policy: FlywheelPolicy
    io: PolicyIO
    model_config: ModelConfig
    spec: PolicySpec
    meta: dict[str, Any]
    sha256: str
    _packed_blocks: PackedBlockStack | None = field(default=None, init=False, repr=False, compare=False)
    _packing: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    @property
    def norm(self) -> NormStats:
        return self.io.norm

    @property
    def input_spec(self) -> InputSpec:
        """What this policy consumes (the checkpoint's `io.json`)."""
        return self.io.spec

    @property
    def conditioned(self) -> bool:
        """Whether it was trained on the advantage indicator (RECAP); BC and AWR checkpoints were not."""
        return bool(self.meta.get("conditioned", True))

    @property
    def acting_indicator(self) -> int:
        """The indicator it acts with: positive where it learned one, else unconditional."""
        return POSITIVE if self.conditioned else UNCONDITIONAL

    def packed_blocks(self) -> PackedBlockStack:
        """The expert's transformer stack with bf16 weights packed for oneDNN, built once and shared by every
        runner of this checkpoint (the lanes of a lockstep worker, the console's sessions)."""
        with self._packing:
            if self._packed_blocks is None:
                self._packed_blocks = PackedBlockStack(self.policy.expert.blocks)
            return self._packed_blocks


def model_document(cfg: ModelConfig, spec: PolicySpec, meta: dict[str, Any]) -> dict[str, Any]:
    """The `model.json` content: enough to rebuild the networks."""
    return {"model": cfg.model_dump(mode="json"), "spec": dataclasses.asdict(spec), "meta": meta}


CRITIC_NORM = "critic_norm"
"""The checkpoint file holding a privileged critic's state normaliser (the policy's is `norm`)."""


def build_critic(
    cfg: ModelConfig, spec: PolicySpec, policy: FlywheelPolicy, privileged_state_dim: int | None = None
) -> IqlCritic:
    """A critic for `policy`: reading the policy's inputs (its encoder layout, its backbone tokens), or, with
    `critic.observations: privileged`, the env's full state vector (`privileged_state_dim` entries) alone."""
    if cfg.critic.observations == "privileged":
        if privileged_state_dim is None:
            raise ValueError("a privileged critic needs the width of the full state vector")
        state_only = cfg.encoder.model_copy(update={"vision": "none", "backbone": None})
        return IqlCritic(cfg.critic, state_only, privileged_state_dim, spec.action_dim, cfg.expert.chunk, [], None)
    backbone_dim = int(policy.backbone.out_dim) if policy.backbone is not None else None
    return IqlCritic(
        cfg.critic,
        cfg.encoder,
        spec.state_dim,
        spec.action_dim,
        cfg.expert.chunk,
        list(policy.encoder.cameras),
        backbone_dim,
    )


def _load_state(module: torch.nn.Module, tensors: dict[str, torch.Tensor], what: str, where: Path) -> None:
    missing, unexpected = module.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {where}: {what} weights do not match the config "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


def load_policy(
    directory: str | Path, device: str | torch.device = "cpu", expected_sha256: str | None = None
) -> LoadedPolicy:
    """Verify every file's sha256, then rebuild policy + normaliser on `device` in eval mode."""
    directory = Path(directory)
    verify_checkpoint(directory, expected_sha256)
    doc = read_document(directory, "model")
    cfg = ModelConfig.model_validate(doc["model"])
    spec_d = doc["spec"]
    spec = PolicySpec(
        state_dim=int(spec_d["state_dim"]),
        action_dim=int(spec_d["action_dim"]),
        cameras=tuple(spec_d["cameras"]),
        task=str(spec_d["task"]),
    )
    policy = FlywheelPolicy(cfg, spec)
    _load_state(policy, read_tensors(directory, "policy"), "policy", directory)
    norm = NormStats.from_tensors(read_tensors(directory, "norm"))
    policy.to(device).eval()
    io = PolicyIO(read_input_spec(directory, spec), norm)
    return LoadedPolicy(policy, io, cfg, spec, doc.get("meta", {}), checkpoint_sha256(directory))


def read_input_spec(directory: Path, spec: PolicySpec) -> InputSpec:
    """The checkpoint's input spec (`read_checkpoint_inputs`), checked against the networks it was loaded into."""
    io_spec = read_checkpoint_inputs(directory)
    if io_spec.state_dim != spec.state_dim or tuple(io_spec.cameras) != tuple(spec.cameras):
        raise CheckpointError(
            f"checkpoint {directory}: io.json ({io_spec.describe()}) disagrees with the network's inputs "
            f"(state {spec.state_dim}, cameras {list(spec.cameras)})"
        )
    return io_spec


def load_critic_norm(directory: str | Path) -> NormStats | None:
    """A privileged critic's state normaliser stored with a policy, or None when its critic reads the policy's
    inputs."""
    path = Path(directory)
    if not (path / f"{CRITIC_NORM}.safetensors").is_file():
        return None
    return NormStats.from_tensors(read_tensors(path, CRITIC_NORM))


def load_critic(directory: str | Path, loaded: LoadedPolicy, device: str | torch.device = "cpu") -> IqlCritic:
    """The critic stored next to a policy (already verified by `load_policy`)."""
    critic_norm = load_critic_norm(directory)
    width = None if critic_norm is None else int(critic_norm.state.shift.shape[0])
    critic = build_critic(loaded.model_config, loaded.spec, loaded.policy, width)
    _load_state(critic, read_tensors(Path(directory), "critic"), "critic", Path(directory))
    return critic.to(device)
