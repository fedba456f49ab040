"""Normalisation statistics for states and actions, computed from training data, stored with checkpoints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

NormKind = Literal["mean_std", "min_max"]
_EPS = 1e-6


@dataclass(frozen=True)
class Normalizer:
    """Affine map x → (x - shift) / scale (mean/std, or min/max onto [-1, 1])."""

    shift: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, arrays: Sequence[np.ndarray], kind: NormKind) -> Normalizer:
        data = np.concatenate([np.asarray(a, dtype=np.float64) for a in arrays], axis=0)
        if kind == "mean_std":
            shift, scale = data.mean(axis=0), data.std(axis=0)
        else:
            lo, hi = data.min(axis=0), data.max(axis=0)
            shift, scale = (hi + lo) / 2.0, (hi - lo) / 2.0
        scale = np.where(scale < _EPS, 1.0, scale)
        return cls(shift.astype(np.float32), scale.astype(np.float32))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self._t(self.shift, x)) / self._t(self.scale, x)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self._t(self.scale, x) + self._t(self.shift, x)

    @staticmethod
    def _t(a: np.ndarray, like: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(a, device=like.device, dtype=like.dtype)


@dataclass(frozen=True)
class NormStats:
    """State and action normalisers; serialised as flat tensors for safetensors."""

    state: Normalizer
    action: Normalizer

    @classmethod
    def fit(cls, states: Sequence[np.ndarray], actions: Sequence[np.ndarray], kind: NormKind) -> NormStats:
        return cls(Normalizer.fit(states, kind), Normalizer.fit(actions, kind))

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {
            "state.shift": torch.from_numpy(self.state.shift.copy()),
            "state.scale": torch.from_numpy(self.state.scale.copy()),
            "action.shift": torch.from_numpy(self.action.shift.copy()),
            "action.scale": torch.from_numpy(self.action.scale.copy()),
        }

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> NormStats:
        def arr(key: str) -> np.ndarray:
            return t[key].detach().cpu().numpy().astype(np.float32)

        return cls(
            Normalizer(arr("state.shift"), arr("state.scale")),
            Normalizer(arr("action.shift"), arr("action.scale")),
        )
