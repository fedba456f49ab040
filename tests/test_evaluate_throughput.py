"""flywheel/evaluate/throughput.py: the paired relative change of a per-seed count between two policies."""

from __future__ import annotations

import numpy as np
import pytest

from flywheel.evaluate.throughput import paired_relative_change


def test_a_uniform_halving_is_minus_half_with_no_spread() -> None:
    change, (low, high) = paired_relative_change([2] * 50, [1] * 50)
    assert change == pytest.approx(-0.5) and low == pytest.approx(-0.5) and high == pytest.approx(-0.5)


def test_the_interval_brackets_the_change_and_widens_with_fewer_seeds() -> None:
    rng = np.random.default_rng(0)
    before = rng.poisson(0.7, size=200)
    after = rng.binomial(before, 0.6)  # each seed keeps about 60% of its takeovers
    change, (low, high) = paired_relative_change(before, after)
    assert change is not None and low is not None and high is not None
    assert low < change < high and high < 0
    _, (low_few, high_few) = paired_relative_change(before[:40], after[:40])
    assert low_few is not None and high_few is not None and high_few - low_few > high - low


def test_nothing_to_compare_against_zero_and_mismatched_series_are_refused() -> None:
    assert paired_relative_change([0, 0], [1, 0]) == (None, (None, None))
    with pytest.raises(ValueError, match="equal-length"):
        paired_relative_change([1, 2], [1])
