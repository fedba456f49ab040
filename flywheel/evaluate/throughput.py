"""Throughput of an evaluation: time to success and successes per hour of robot time, with 95% intervals.

Intervals are percentile intervals of a paired bootstrap over seeds (2000 resamples, fixed RNG seed): the
candidate and the champion are resampled on the same seed indices, so their difference is paired. An episode
ends at success, so a successful episode's length is its time to success; robot time counts every episode's
steps (failures run to the step limit) at the simulator's control rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from sim.constants import CONTROL_DT

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20_210_521
SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class Throughput:
    """One policy on its eval seeds. Times are in control steps and seconds of robot time."""

    episodes: int
    successes: int
    mean_steps_to_success: float | None
    mean_steps_ci: tuple[float | None, float | None]
    median_steps_to_success: float | None
    median_steps_ci: tuple[float | None, float | None]
    mean_seconds_to_success: float | None
    median_seconds_to_success: float | None
    successes_per_hour: float
    successes_per_hour_ci: tuple[float, float]
    control_dt: float = CONTROL_DT

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PairedThroughput:
    """Candidate minus champion on the same seeds."""

    n: int
    successes_per_hour_diff: float
    successes_per_hour_diff_ci: tuple[float, float]
    both_succeeded: int
    slowdown: float | None  # mean steps to success on seeds both solved: candidate / champion − 1
    slowdown_ci: tuple[float | None, float | None]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _indices(n: int) -> np.ndarray:
    return np.random.default_rng(BOOTSTRAP_SEED).integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))


def _per_hour(success: np.ndarray, steps: np.ndarray) -> np.ndarray:
    hours = steps.sum(axis=-1) * CONTROL_DT / SECONDS_PER_HOUR
    return np.divide(success.sum(axis=-1), hours, out=np.zeros_like(hours, dtype=float), where=hours > 0)


def _interval(values: np.ndarray) -> tuple[float | None, float | None]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None, None
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


def _nan_stat(values: np.ndarray, mask: np.ndarray, stat: str) -> np.ndarray:
    masked = np.where(mask, values, np.nan).astype(float)
    empty = ~mask.any(axis=-1)
    masked[empty, 0] = 0.0  # keep nan-reductions quiet; the row is set back to nan below
    result = np.nanmean(masked, axis=-1) if stat == "mean" else np.nanmedian(masked, axis=-1)
    return np.where(empty, np.nan, result)


def throughput(success: Sequence[bool], steps: Sequence[int]) -> Throughput:
    if len(success) != len(steps) or not success:
        raise ValueError("throughput needs one episode length per outcome, and at least one episode")
    s = np.asarray(success, dtype=bool)
    t = np.asarray(steps, dtype=float)
    idx = _indices(len(s))
    bs, bt = s[idx], t[idx]
    mean = float(t[s].mean()) if s.any() else None
    median = float(np.median(t[s])) if s.any() else None
    per_hour_ci = _interval(_per_hour(bs, bt))
    return Throughput(
        episodes=len(s),
        successes=int(s.sum()),
        mean_steps_to_success=mean,
        mean_steps_ci=_interval(_nan_stat(bt, bs, "mean")),
        median_steps_to_success=median,
        median_steps_ci=_interval(_nan_stat(bt, bs, "median")),
        mean_seconds_to_success=None if mean is None else mean * CONTROL_DT,
        median_seconds_to_success=None if median is None else median * CONTROL_DT,
        successes_per_hour=float(_per_hour(s, t)),
        successes_per_hour_ci=(per_hour_ci[0] or 0.0, per_hour_ci[1] or 0.0),
    )


def paired_throughput(
    success: Sequence[bool], steps: Sequence[int], ref_success: Sequence[bool], ref_steps: Sequence[int]
) -> PairedThroughput:
    """Candidate (success, steps) against a reference on the same seeds, in the same order."""
    if not len(success) == len(steps) == len(ref_success) == len(ref_steps) or not success:
        raise ValueError("paired throughput needs equally long, non-empty outcome lists on the same seeds")
    s, t = np.asarray(success, bool), np.asarray(steps, float)
    rs, rt = np.asarray(ref_success, bool), np.asarray(ref_steps, float)
    idx = _indices(len(s))
    diff = _per_hour(s, t) - _per_hour(rs, rt)
    boot_diff = _per_hour(s[idx], t[idx]) - _per_hour(rs[idx], rt[idx])
    both = s & rs
    slowdown = float(t[both].mean() / rt[both].mean() - 1.0) if both.any() else None
    bb = both[idx]
    boot_slow = _nan_stat(t[idx], bb, "mean") / _nan_stat(rt[idx], bb, "mean") - 1.0
    low, high = _interval(boot_diff)
    return PairedThroughput(
        n=len(s),
        successes_per_hour_diff=float(diff),
        successes_per_hour_diff_ci=(low or 0.0, high or 0.0),
        both_succeeded=int(both.sum()),
        slowdown=slowdown,
        slowdown_ci=_interval(boot_slow),
    )


def paired_relative_change(
    before: Sequence[float], after: Sequence[float]
) -> tuple[float | None, tuple[float | None, float | None]]:
    """mean(after) / mean(before) − 1 over the same seeds (e.g. takeovers per episode of two policies), with the
    paired bootstrap's 95% interval; None where `before` sums to zero."""
    b = np.asarray(before, dtype=float)
    a = np.asarray(after, dtype=float)
    if b.shape != a.shape or b.ndim != 1 or b.size == 0:
        raise ValueError(f"need two equal-length, non-empty per-seed series; got {b.shape} and {a.shape}")
    if b.sum() == 0:
        return None, (None, None)
    idx = _indices(b.size)
    sums_b, sums_a = b[idx].sum(axis=-1), a[idx].sum(axis=-1)
    ratios = np.divide(sums_a, sums_b, out=np.full(sums_b.shape, np.nan), where=sums_b > 0) - 1.0
    return float(a.sum() / b.sum() - 1.0), _interval(ratios)
