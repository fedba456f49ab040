"""The vision diagnostic's measurements: the expert's reach follows the object, the probe recovers a linear map."""

from __future__ import annotations

import numpy as np

from bench.vision_diagnose import _ridge, reach_slopes


def test_the_experts_reach_follows_the_cube() -> None:
    reach = reach_slopes("transfer_cube", seeds=list(range(8)), steps=120, loaded=None)
    slopes = reach["right->box"]
    assert slopes["slope_x"] > 0.8 and slopes["slope_y"] > 0.8


def test_the_probe_recovers_a_linear_map_on_held_out_rows() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(400, 12))
    targets = features @ rng.normal(size=(12, 2)) + 0.3
    predicted = _ridge(features[:300], targets[:300], features[300:], lam=1e-6)
    np.testing.assert_allclose(predicted, targets[300:], atol=1e-3)
