"""Normalisation statistics for states and actions, computed from training data, stored with checkpoints."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch

NormKind = Literal["mean_std", "min_max", "quantile"]
NORM_KINDS: tuple[str, ...] = get_args(NormKind)
QUANTILE_RANGE = (0.01, 0.99)
_EPS = 1e-6


@dataclass(frozen=True)
class Normalizer:
    """Affine map x → (x - shift) / scale, then clamped to ±clip (inf: no clamp).

    `mean_std` uses mean and std; `min_max` maps [min, max] onto [-1, 1]; `quantile` maps the 1st..99th
    percentile onto [-1, 1], so a few extreme frames (a flung object, a flailing policy) do not stretch the scale.
    """

    shift: np.ndarray
    scale: np.ndarray
    clip: float = math.inf

    @classmethod
    def fit(cls, arrays: Sequence[np.ndarray], kind: NormKind, clip: float = math.inf) -> Normalizer:
        if kind not in NORM_KINDS:
            raise ValueError(f"unknown normalisation {kind!r}: use one of {', '.join(NORM_KINDS)}")
        if not clip > 0:
            raise ValueError(f"normalisation clip must be > 0, got {clip}")
        data = np.concatenate([np.asarray(a, dtype=np.float64) for a in arrays], axis=0)
        if data.shape[0] == 0:
            raise ValueError("cannot fit normalisation statistics on zero frames")
        if kind == "mean_std":
            shift, scale = data.mean(axis=0), data.std(axis=0)
        else:
            lo, hi = (
                (data.min(axis=0), data.max(axis=0)) if kind == "min_max" else np.quantile(data, QUANTILE_RANGE, axis=0)
            )
            shift, scale = (hi + lo) / 2.0, (hi - lo) / 2.0
        scale = np.where(scale < _EPS, 1.0, scale)
        return cls(shift.astype(np.float32), scale.astype(np.float32), float(clip))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        y = (x - self._t(self.shift, x)) / self._t(self.scale, x)
        return y.clamp(-self.clip, self.clip) if math.isfinite(self.clip) else y

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
    def fit(
        cls,
        states: Sequence[np.ndarray],
        actions: Sequence[np.ndarray],
        kind: NormKind,
        state_clip: float = math.inf,
    ) -> NormStats:
        return cls(Normalizer.fit(states, kind, state_clip), Normalizer.fit(actions, kind))

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {
            "state.shift": torch.from_numpy(self.state.shift.copy()),
            "state.scale": torch.from_numpy(self.state.scale.copy()),
            "state.clip": torch.tensor([self.state.clip], dtype=torch.float32),
            "action.shift": torch.from_numpy(self.action.shift.copy()),
            "action.scale": torch.from_numpy(self.action.scale.copy()),
        }

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> NormStats:
        """Inverse of `to_tensors`; checkpoints written before state clipping existed load unclipped."""

        def arr(key: str) -> np.ndarray:
            return t[key].detach().cpu().numpy().astype(np.float32)

        clip = float(t["state.clip"].reshape(-1)[0]) if "state.clip" in t else math.inf
        return cls(
            Normalizer(arr("state.shift"), arr("state.scale"), clip),
            Normalizer(arr("action.shift"), arr("action.scale")),
        )
