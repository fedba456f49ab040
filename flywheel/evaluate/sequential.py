"""Group-sequential paired comparison: looks after each block of seeds, valid under repeated looks.

The procedure is a one-sided group-sequential test with the Lan–DeMets O'Brien–Fleming-type alpha-spending
function α(t) = 2 − 2Φ(z_{1−α/2} / √t) (Lan & DeMets 1983, Biometrika 70:659), with boundaries found by
numerical integration of the Brownian-motion recursion (Armitage, McPherson & Rowe 1969; Jennison & Turnbull,
*Group Sequential Methods*, 2000, ch. 7 and 19). At look k the paired difference's repeated confidence interval
(Tango's score interval for paired proportions at the look's boundary c_k instead of 1.96, Tango 1998;
Jennison & Turnbull ch. 9) covers the true difference at every look at once
with probability ≥ 1 − 2α, so stopping when it clears −margin keeps the false-promotion rate at or under α.
Stopping to refuse (the interval lies wholly below −margin) is non-binding: it only lowers the error rate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

from flywheel.evaluate.stats import paired_difference, paired_score_interval

_NORMAL = NormalDist()
_GRID_STEP = 0.005
_GRID_HALF_WIDTH = 12.0


def obf_spending(t: float, alpha: float) -> float:
    """Cumulative one-sided alpha spent by information fraction t (0 < t ≤ 1); α at t = 1."""
    if t <= 0:
        return 0.0
    return 2.0 - 2.0 * _NORMAL.cdf(_NORMAL.inv_cdf(1 - alpha / 2) / math.sqrt(min(t, 1.0)))


@lru_cache(maxsize=64)
def obf_boundaries(fractions: tuple[float, ...], alpha: float) -> tuple[float, ...]:
    """One-sided z boundaries c_1..c_K for looks at increasing information fractions (the last ≤ 1)."""
    grid = np.arange(-_GRID_HALF_WIDTH, _GRID_HALF_WIDTH + _GRID_STEP / 2, _GRID_STEP)
    density: np.ndarray | None = None  # of S(t) = Z·√t on paths not yet stopped
    previous_t, spent, bounds = 0.0, 0.0, []
    for t in fractions:
        sd = math.sqrt(t - previous_t)
        if density is None:
            density = np.exp(-0.5 * (grid / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
        else:
            half = math.ceil(8 * sd / _GRID_STEP)
            offsets = np.arange(-half, half + 1) * _GRID_STEP
            kernel = np.exp(-0.5 * (offsets / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
            density = np.convolve(density, kernel, mode="same") * _GRID_STEP
        target = obf_spending(t, alpha) - spent
        cells = (density[:-1] + density[1:]) * (_GRID_STEP / 2)  # trapezoid mass of each grid cell
        tail = np.append(np.cumsum(cells[::-1])[::-1], 0.0)  # mass at or above each grid point
        index = int(np.searchsorted(-tail, -target))  # first point whose tail mass is ≤ target
        index = min(max(index, 1), len(grid) - 1)
        above, below = tail[index], tail[index - 1]  # tail is decreasing: below ≥ target ≥ above
        share = 0.0 if below == above else (below - target) / (below - above)
        bound = float(grid[index - 1] + share * _GRID_STEP)
        bounds.append(bound / math.sqrt(t))
        density = np.where(grid >= bound, 0.0, density)
        spent = obf_spending(t, alpha)
        previous_t = t
    return tuple(bounds)


def look_sizes(block: int, maximum: int) -> list[int]:
    """Seeds seen at each look: every `block`, and the maximum as the last look."""
    sizes = list(range(block, maximum, block))
    return [*sizes, maximum]


Decision = Literal["non_inferior", "inferior", "continue", "undecided"]


@dataclass(frozen=True)
class PairedLook:
    """Candidate minus a reference on the first `n` shared seeds at one look, with the repeated interval."""

    reference_id: int
    n: int
    look: int
    looks: int
    boundary: float
    difference: float
    ci_low: float
    ci_high: float
    candidate_only: int
    reference_only: int
    margin: float
    decision: Decision

    @property
    def superior(self) -> bool:
        return self.ci_low > 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"superior": self.superior}


def paired_look(
    candidate: list[bool],
    reference: list[bool],
    *,
    reference_id: int,
    look: int,
    sizes: list[int],
    alpha: float,
    margin: float,
) -> PairedLook:
    """The repeated confidence interval at look `look` (0-based) and what it decides."""
    maximum = sizes[-1]
    bounds = obf_boundaries(tuple(n / maximum for n in sizes), alpha)
    paired = paired_difference(candidate, reference)
    ci_low, ci_high = paired_score_interval(paired.candidate_only, paired.champion_only, paired.n, bounds[look])
    last = look == len(sizes) - 1
    if ci_low > -margin:
        decision: Decision = "non_inferior"
    elif ci_high < -margin:
        decision = "inferior"
    else:
        decision = "undecided" if last else "continue"
    return PairedLook(
        reference_id=reference_id,
        n=paired.n,
        look=look + 1,
        looks=len(sizes),
        boundary=bounds[look],
        difference=paired.difference,
        ci_low=ci_low,
        ci_high=ci_high,
        candidate_only=paired.candidate_only,
        reference_only=paired.champion_only,
        margin=margin,
        decision=decision,
    )


def settled(looks: list[PairedLook]) -> bool:
    """Stop when any comparison refuses the candidate, or every one has cleared the margin."""
    return any(x.decision == "inferior" for x in looks) or all(x.decision == "non_inferior" for x in looks)
