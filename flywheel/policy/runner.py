"""Inference: load a verified checkpoint and act, chunk by chunk, with receding-horizon execution."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from flywheel.policy.config import Precision
from flywheel.policy.loading import LoadedPolicy, load_policy
from flywheel.policy.packed_bf16 import resolve_precision


class PolicyRunner:
    """`act(obs)` returns one action, re-planning a chunk every `execute_steps` calls; `reset()` per episode.

    obs: {"state": float32 (S,), "images": {camera: uint8 (H, W, 3)}}: the env's observation; the checkpoint's
    `PolicyIO` picks what the policy reads from it (`loaded.input_spec`).
    """

    def __init__(
        self,
        loaded: LoadedPolicy,
        device: str | torch.device = "cpu",
        seed: int = 0,
        num_steps: int | None = None,
        cfg_beta: float | None = None,
        execute_steps: int | None = None,
        precision: Precision | None = None,
    ) -> None:
        inf = loaded.model_config.inference
        self.loaded = loaded
        self.device = torch.device(device)
        self.num_steps = num_steps or inf.num_steps
        beta = inf.cfg_beta if cfg_beta is None else cfg_beta
        # β = 1 is plain conditional sampling; skip the unconditional pass. BC checkpoints have no indicator.
        self.cfg_beta = beta if loaded.conditioned and beta != 1.0 else None
        self.indicator = loaded.acting_indicator
        self.execute_steps = min(execute_steps or inf.execute_steps, loaded.model_config.expert.chunk)
        self.precision: Precision = precision or inf.precision
        self.seed = seed
        self._gen = torch.Generator().manual_seed(seed)
        self._chunk: np.ndarray | None = None
        self._cursor = 0

    @classmethod
    def load(
        cls,
        checkpoint_dir: str | Path,
        device: str = "cpu",
        expected_sha256: str | None = None,
        **kwargs: object,
    ) -> PolicyRunner:
        """Verify (sha256 of every file, and the registered sha256 when given) and load."""
        return cls(load_policy(checkpoint_dir, device, expected_sha256), device=device, **kwargs)  # type: ignore[arg-type]

    @property
    def sha256(self) -> str:
        return self.loaded.sha256

    @property
    def chunk_size(self) -> int:
        return self.loaded.model_config.expert.chunk

    def reset(self, seed: int | None = None) -> None:
        """Drop the cached chunk (new episode); optionally reseed the sampling noise."""
        self._chunk = None
        self._cursor = 0
        if seed is not None:
            self._gen = torch.Generator().manual_seed(seed)

    def _noise(self) -> torch.Tensor:
        """The next (1, H, A) sampling noise from this runner's generator."""
        return torch.randn((1, self.chunk_size, self.loaded.spec.action_dim), generator=self._gen)

    def sample(self, state: torch.Tensor, images: dict[str, torch.Tensor] | None, noise: torch.Tensor) -> torch.Tensor:
        """Normalised chunks (B, H, A) from normalised inputs, in the precision this runner resolves for B rows."""
        blocks, autocast = None, False
        if resolve_precision(self.precision, self.device, rows=state.shape[0]) == "bf16":
            if self.device.type == "cpu":
                blocks = self.loaded.packed_blocks()
            else:
                autocast = True
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=autocast):
            chunks = self.loaded.policy.sample_chunk(
                state, images, noise, self.num_steps, indicator=self.indicator, cfg_beta=self.cfg_beta, blocks=blocks
            )
        return chunks.float()

    def act_chunk(self, obs: dict) -> np.ndarray:
        """A fresh (H, A) chunk of actions in environment units."""
        state, images = self.loaded.io.inputs([obs], self.device)
        chunk = self.sample(state, images, self._noise().to(self.device))
        return self.loaded.io.actions(chunk[0])

    @property
    def needs_chunk(self) -> bool:
        """Whether the next `act` re-plans (no chunk yet, or its executed part is used up)."""
        return self._chunk is None or self._cursor >= self.execute_steps

    def act(self, obs: dict) -> np.ndarray:
        """The next action (A,), re-planning when the executed part of the current chunk is used up."""
        if self.needs_chunk:
            self._start_chunk(self.act_chunk(obs))
        assert self._chunk is not None
        action = self._chunk[self._cursor]
        self._cursor += 1
        return action.copy()

    def _start_chunk(self, chunk: np.ndarray) -> None:
        self._chunk = chunk
        self._cursor = 0


def plan_chunks(runners: Sequence[PolicyRunner], observations: Sequence[dict]) -> None:
    """Re-plan several runners of one policy in a single batched forward pass (vectorised collection).

    Each runner draws its noise from its own generator, exactly as `act_chunk` would, and starts executing its new
    chunk at its next `act`; the rows differ from one-by-one sampling only by rounding (bf16 rounding when the
    runners' precision resolves to bf16 for the batch and fp32 for one row, see `InferenceConfig.precision`).
    """
    if len(runners) != len(observations):
        raise ValueError(f"plan_chunks: {len(runners)} runners but {len(observations)} observations")
    if not runners:
        return
    lead = runners[0]
    settings = (lead.loaded, lead.num_steps, lead.cfg_beta, lead.indicator, lead.device, lead.precision)
    if any((r.loaded, r.num_steps, r.cfg_beta, r.indicator, r.device, r.precision) != settings for r in runners):
        raise ValueError("plan_chunks: the runners must share one loaded policy and its sampling settings")
    state, images = lead.loaded.io.inputs(observations, lead.device)
    noise = torch.cat([r._noise() for r in runners]).to(lead.device)
    actions = lead.loaded.io.actions(lead.sample(state, images, noise))
    for runner, chunk in zip(runners, actions, strict=True):
        runner._start_chunk(chunk)
