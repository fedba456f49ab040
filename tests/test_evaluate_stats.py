"""Wilson intervals and paired differences against hand-computed values."""

from __future__ import annotations

import pytest

from flywheel.evaluate.stats import paired_difference, percentile, wilson_interval


def test_wilson_matches_reference_values() -> None:
    low, high = wilson_interval(45, 50)
    assert low == pytest.approx(0.7864, abs=1e-4) and high == pytest.approx(0.9565, abs=1e-4)
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(0, 20)[1] == pytest.approx(0.1611, abs=1e-4)
    assert wilson_interval(20, 20)[1] == 1.0
    for n in (7, 60, 100, 333):  # the interval always holds the observed rate (60/60 rounded to 0.99999… once)
        assert wilson_interval(n, n)[1] == 1.0 and wilson_interval(0, n)[0] == 0.0
    with pytest.raises(ValueError):
        wilson_interval(5, 3)


def test_paired_difference_counts_discordant_seeds() -> None:
    cand = [True] * 40 + [True] * 5 + [False] * 5
    champ = [True] * 40 + [False] * 5 + [False] * 5
    result = paired_difference(cand, champ)
    assert (result.candidate_only, result.champion_only) == (5, 0)
    assert result.difference == pytest.approx(0.1)
    assert result.ci_low > 0.0  # a clear improvement
    same = paired_difference([True, False] * 25, [True, False] * 25)
    assert same.difference == 0.0 and same.ci_low < 0.0 < same.ci_high


def test_percentile() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile([5.0], 95) == 5.0
    assert percentile([], 50) == 0.0
