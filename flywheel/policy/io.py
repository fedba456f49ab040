"""The one processor between observations and the policy's networks, and between sampled chunks and actions.

`PolicyIO` pairs a checkpoint's `InputSpec` (`flywheel.policy.input_spec`) with its normalisation statistics. It is
the single place where an observation becomes network inputs (select the state entries, normalise, clamp, stack the
images) and where a sampled chunk becomes actions. Training, `PolicyRunner`, batched collection, evaluation, the
console, the server and ONNX export all go through it, so no path can hand a camera policy a state entry its spec
does not list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from flywheel.policy.input_spec import InputSpec
from flywheel.policy.normalize import NormStats


@dataclass(frozen=True)
class PolicyIO:
    """Observation → normalised network inputs, and normalised chunks → actions, for one checkpoint."""

    spec: InputSpec
    norm: NormStats

    def state_inputs(self, states: np.ndarray, where: str = "observation") -> torch.Tensor:
        """Normalised, clamped state inputs (B, S) from env state vectors (B, env_state_dim)."""
        return self.norm.state.normalize(torch.from_numpy(np.ascontiguousarray(self.spec.select_state(states, where))))

    def image_inputs(self, images: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor] | None:
        """Camera images (B, H, W, 3) uint8 → (B, 3, H, W) float in [0, 255], the spec's cameras only."""
        if not self.spec.cameras:
            return None
        return {c: torch.as_tensor(np.asarray(images[c])).permute(0, 3, 1, 2).float() for c in self.spec.cameras}

    def inputs(
        self, observations: Sequence[Mapping[str, Any]], device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """Network inputs for a batch of env observations `{"state": (S,), "images": {camera: (H, W, 3)}}`."""
        states = np.stack([np.asarray(o["state"], dtype=np.float32).reshape(-1) for o in observations])
        state = self.state_inputs(states).to(device)
        if not self.spec.cameras:
            return state, None
        given = [obs.get("images") or {} for obs in observations]
        for images_of_one in given:
            self.spec.check_images(images_of_one, "observation")
        stacked = {c: np.stack([np.asarray(g[c], dtype=np.uint8) for g in given]) for c in self.spec.cameras}
        images = self.image_inputs(stacked)
        assert images is not None
        return state, {c: v.to(device) for c, v in images.items()}

    def normalize_actions(self, actions: np.ndarray) -> torch.Tensor:
        return self.norm.action.normalize(torch.from_numpy(np.ascontiguousarray(actions, dtype=np.float32)))

    def actions(self, chunks: torch.Tensor) -> np.ndarray:
        """Environment-unit actions (..., H, A) float32 from normalised chunks."""
        return self.norm.action.denormalize(chunks.float().cpu()).numpy().astype(np.float32)
