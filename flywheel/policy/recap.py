"""RECAP labelling and the baselines' sample weights: advantages → indicator, AWR weights, source weights."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from flywheel.policy.expert import NEGATIVE, POSITIVE, UNCONDITIONAL


@dataclass(frozen=True)
class Labels:
    """Per-frame indicator (0 negative / 1 positive) and the per-task thresholds ε that produced it."""

    indicator: np.ndarray
    thresholds: dict[int, float]

    @property
    def positive_fraction(self) -> float:
        return float((self.indicator == POSITIVE).mean()) if self.indicator.size else 0.0


def binarize_advantages(
    advantages: np.ndarray,
    task_ids: np.ndarray,
    forced_positive: np.ndarray,
    quantile: float,
    forced_negative: np.ndarray | None = None,
) -> Labels:
    """I = 1[A > ε_task] with ε_task the `quantile` of all of that task's advantages; human/expert frames
    (`forced_positive`) are positive and `forced_negative` frames negative whatever their advantage.
    """
    adv = np.asarray(advantages, dtype=np.float64)
    tasks = np.asarray(task_ids)
    forced = np.asarray(forced_positive, dtype=bool)
    indicator = np.full(adv.shape, NEGATIVE, dtype=np.int64)
    thresholds: dict[int, float] = {}
    for task in np.unique(tasks).tolist():
        sel = tasks == task
        eps = float(np.quantile(adv[sel], quantile))
        thresholds[int(task)] = eps
        indicator[sel & (adv > eps)] = POSITIVE
    if forced_negative is not None:
        indicator[np.asarray(forced_negative, dtype=bool)] = NEGATIVE
    indicator[forced] = POSITIVE
    return Labels(indicator=indicator, thresholds=thresholds)


def awr_weights(advantages: np.ndarray, beta: float, max_weight: float) -> np.ndarray:
    """Clipped exp(β·Â) with Â = A / std(A) (scale-free temperature)."""
    adv = np.asarray(advantages, dtype=np.float64)
    std = float(adv.std()) or 1.0
    return np.minimum(np.exp(beta * adv / std), max_weight).astype(np.float32)


def source_weights(tags: np.ndarray, weights: Mapping[str, float]) -> np.ndarray:
    """Per-frame loss weight from its episode's tag name."""
    return np.array([weights[str(t)] for t in np.asarray(tags).tolist()], dtype=np.float32)


def drop_indicator(indicator: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Replace a `rate` fraction of indicators by UNCONDITIONAL so the model also learns p(A | s)."""
    drop = torch.rand(indicator.shape, generator=generator, device=indicator.device) < rate
    return torch.where(drop, torch.full_like(indicator, UNCONDITIONAL), indicator)
