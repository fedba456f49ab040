"""Where served policies come from: a registry reference resolved to a version, loaded from its verified checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from flywheel.policy.loading import LoadedPolicy
from flywheel.policy.runner import PolicyRunner
from flywheel.registry import PolicyRegistry
from flywheel.registry.service import ALIASES


@dataclass(frozen=True)
class ServedPolicy:
    """One loaded policy version and what the server reports about it. Immutable: a reload builds a new one."""

    loaded: LoadedPolicy
    version_id: int
    alias: str | None
    task: str
    num_steps: int
    execute_steps: int
    device: str = "cpu"
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def sha256(self) -> str:
        return self.loaded.sha256

    @property
    def state_dim(self) -> int:
        """The env state vector a request sends; the policy reads its `state_entries` (the checkpoint's spec)."""
        return self.loaded.input_spec.env_state_dim

    @property
    def state_entries(self) -> tuple[str, ...]:
        return self.loaded.input_spec.state_names

    @property
    def privileged(self) -> bool:
        return self.loaded.input_spec.privileged

    @property
    def image_size(self) -> tuple[int, int] | None:
        return self.loaded.input_spec.image_size

    @property
    def action_dim(self) -> int:
        return self.loaded.spec.action_dim

    @property
    def cameras(self) -> tuple[str, ...]:
        return self.loaded.input_spec.cameras

    @property
    def obs_mode(self) -> str:
        return self.loaded.input_spec.obs_mode

    @property
    def chunk_size(self) -> int:
        return self.loaded.model_config.expert.chunk

    def runner(self, seed: int) -> PolicyRunner:
        """A fresh runner sharing the loaded weights: per-request noise, no state shared between requests."""
        return PolicyRunner(self.loaded, device=self.device, seed=seed)


class PolicySource(Protocol):
    """What the server needs: a cheap "which version now?" poll and a (slow) verified load."""

    @property
    def alias(self) -> str | None: ...

    def current_version(self) -> int: ...

    def load(self, version_id: int) -> ServedPolicy: ...


class RegistrySource:
    """Resolves a version id or alias (`champion`, `challenger`) through the registry; loads with the sha256 pin."""

    def __init__(self, registry: PolicyRegistry, ref: str, device: str = "cpu") -> None:
        self.registry = registry
        self.ref = str(ref)
        self.device = device
        self.registry.resolve(self.ref)  # fail now, with the registry's message, on an unknown ref

    @property
    def alias(self) -> str | None:
        return self.ref if self.ref in ALIASES else None

    def current_version(self) -> int:
        return self.registry.resolve(self.ref).id

    def load(self, version_id: int) -> ServedPolicy:
        record = self.registry.get(version_id)
        runner = PolicyRunner.load(record.checkpoint_uri, device=self.device, expected_sha256=record.sha256)
        return ServedPolicy(
            loaded=runner.loaded,
            version_id=record.id,
            alias=self.alias,
            task=record.task,
            num_steps=runner.num_steps,
            execute_steps=runner.execute_steps,
            device=self.device,
        )
