"""Statistics for eval gates: Wilson intervals and a paired comparison on shared seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion (well-behaved at 0 and n)."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes={successes} outside [0, {n}]")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # exact at the edges: rounding would otherwise put the bound a hair inside the observed 0% or 100%
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class PairedDifference:
    """Candidate minus champion success rate on the same seeds, with a 95% interval."""

    n: int
    difference: float
    ci_low: float
    ci_high: float
    candidate_only: int  # seeds only the candidate solved
    champion_only: int  # seeds only the champion solved


def paired_difference(candidate: Sequence[bool], champion: Sequence[bool], z: float = Z95) -> PairedDifference:
    """Paired (McNemar-style) difference of proportions with a Wald interval on the discordant pairs.

    Uses the Agresti–Min adjustment (add 0.5 to each cell) so the interval does not collapse to a point
    when there are no discordant seeds.
    """
    if len(candidate) != len(champion) or not candidate:
        raise ValueError("paired comparison needs two equally long, non-empty outcome lists on the same seeds")
    n = len(candidate)
    b = sum(1 for c, h in zip(candidate, champion, strict=True) if c and not h)
    c_ = sum(1 for c, h in zip(candidate, champion, strict=True) if h and not c)
    diff = (b - c_) / n
    nb, nc, nn = b + 0.5, c_ + 0.5, n + 2.0
    adj = (nb - nc) / nn
    var = ((nb + nc) - (nb - nc) ** 2 / nn) / (nn * nn)
    half = z * math.sqrt(max(var, 0.0))
    return PairedDifference(n, diff, max(-1.0, adj - half), min(1.0, adj + half), b, c_)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _tango_statistic(b: int, c: int, n: int, delta0: float) -> float:
    """Tango's score statistic for H0: p(candidate) − p(reference) = delta0 on n paired seeds, where b seeds only
    the candidate solved and c only the reference (Tango 1998, Statistics in Medicine 17:891)."""
    a_ = 2.0 * n
    b_ = -b - c + (2.0 * n - b + c) * delta0
    c_ = -c * delta0 * (1.0 - delta0)
    p21 = (-b_ + math.sqrt(max(b_ * b_ - 4.0 * a_ * c_, 0.0))) / (2.0 * a_)  # restricted MLE of p(reference only)
    var = n * (2.0 * p21 + delta0 * (1.0 - delta0))
    if var <= 0.0:
        return math.inf if b - c - n * delta0 > 0 else (-math.inf if b - c - n * delta0 < 0 else 0.0)
    return (b - c - n * delta0) / math.sqrt(var)


def paired_score_interval(b: int, c: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The interval of differences Tango's score test does not reject at |T| ≤ z (inverted by bisection)."""

    def solve(target: float) -> float:
        lo, hi = -1.0, 1.0  # the statistic falls as delta0 rises
        for _ in range(60):
            mid = (lo + hi) / 2
            if _tango_statistic(b, c, n, mid) > target:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    return solve(z), solve(-z)
