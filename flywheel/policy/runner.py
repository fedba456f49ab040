"""Inference: load a verified checkpoint and act, chunk by chunk, with receding-horizon execution."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from flywheel.policy.expert import POSITIVE
from flywheel.policy.loading import LoadedPolicy, load_policy


class PolicyRunner:
    """`act(obs)` returns one action, re-planning a chunk every `execute_steps` calls; `reset()` per episode.

    obs: {"state": float32 (S,), "images": {camera: uint8 (H, W, 3)}} (images only for pixel policies).
    """

    def __init__(
        self,
        loaded: LoadedPolicy,
        device: str | torch.device = "cpu",
        seed: int = 0,
        num_steps: int | None = None,
        cfg_beta: float | None = None,
        execute_steps: int | None = None,
    ) -> None:
        inf = loaded.model_config.inference
        self.loaded = loaded
        self.device = torch.device(device)
        self.num_steps = num_steps or inf.num_steps
        beta = inf.cfg_beta if cfg_beta is None else cfg_beta
        conditioned = bool(loaded.meta.get("conditioned", True))
        # β = 1 is plain conditional sampling; skip the unconditional pass. BC checkpoints have no indicator.
        self.cfg_beta = beta if conditioned and beta != 1.0 else None
        self.indicator = POSITIVE if conditioned else 2
        self.execute_steps = min(execute_steps or inf.execute_steps, loaded.model_config.expert.chunk)
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

    def _obs_tensors(self, obs: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        spec = self.loaded.spec
        state = np.asarray(obs["state"], dtype=np.float32).reshape(-1)
        if state.shape[0] != spec.state_dim:
            raise ValueError(f"policy expects a state of size {spec.state_dim}, got {state.shape[0]}")
        s = self.loaded.norm.state.normalize(torch.from_numpy(state)[None]).to(self.device)
        cams = self.loaded.policy.encoder.cameras
        if not cams:
            return s, None
        given = obs.get("images") or {}
        missing = [c for c in cams if c not in given]
        if missing:
            raise ValueError(f"policy needs camera images {missing}")
        images = {
            c: torch.from_numpy(np.ascontiguousarray(given[c]))[None].permute(0, 3, 1, 2).float().to(self.device)
            for c in cams
        }
        return s, images

    def _noise(self) -> torch.Tensor:
        """The next (1, H, A) sampling noise from this runner's generator."""
        return torch.randn((1, self.chunk_size, self.loaded.spec.action_dim), generator=self._gen)

    def act_chunk(self, obs: dict) -> np.ndarray:
        """A fresh (H, A) chunk of actions in environment units."""
        state, images = self._obs_tensors(obs)
        chunk = self.loaded.policy.sample_chunk(
            state,
            images,
            self._noise().to(self.device),
            self.num_steps,
            indicator=self.indicator,
            cfg_beta=self.cfg_beta,
        )
        return self.loaded.norm.action.denormalize(chunk[0].float().cpu()).numpy().astype(np.float32)

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
    chunk at its next `act`; the rows differ from one-by-one sampling only by floating-point rounding.
    """
    if len(runners) != len(observations):
        raise ValueError(f"plan_chunks: {len(runners)} runners but {len(observations)} observations")
    if not runners:
        return
    lead = runners[0]
    settings = (lead.loaded, lead.num_steps, lead.cfg_beta, lead.indicator, lead.device)
    if any((r.loaded, r.num_steps, r.cfg_beta, r.indicator, r.device) != settings for r in runners):
        raise ValueError("plan_chunks: the runners must share one loaded policy and its sampling settings")
    tensors = [r._obs_tensors(obs) for r, obs in zip(runners, observations, strict=True)]
    state = torch.cat([s for s, _ in tensors])
    images = None
    if tensors[0][1] is not None:
        images = {cam: torch.cat([imgs[cam] for _, imgs in tensors]) for cam in tensors[0][1]}  # type: ignore[index]
    noise = torch.cat([r._noise() for r in runners]).to(lead.device)
    chunks = lead.loaded.policy.sample_chunk(
        state, images, noise, lead.num_steps, indicator=lead.indicator, cfg_beta=lead.cfg_beta
    )
    actions = lead.loaded.norm.action.denormalize(chunks.float().cpu()).numpy().astype(np.float32)
    for runner, chunk in zip(runners, actions, strict=True):
        runner._start_chunk(chunk)
