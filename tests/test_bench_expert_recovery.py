"""bench/expert_recovery.py: finding the first takeover, and the expert finishing from a replayed state."""

from __future__ import annotations

import numpy as np
import pytest

from bench.expert_recovery import first_takeover, recover, summarise
from sim.constants import home_action
from sim.env import make_env


def test_first_takeover_is_the_first_handover_after_policy_control() -> None:
    assert first_takeover(np.array([1, 1, 0, 0, 1, 0], dtype=bool)) == 2
    assert first_takeover(np.array([0, 0, 1, 1, 0], dtype=bool)) == 4  # a leading demo part is no takeover
    assert first_takeover(np.ones(5, dtype=bool)) is None
    assert first_takeover(np.zeros(5, dtype=bool)) is None


@pytest.mark.parametrize("align_handed_peg", [False, True])
def test_expert_finishes_from_a_replayed_idle_start(align_handed_peg: bool) -> None:
    """Either steering finishes from an idle start: the expert grasped the peg itself (tests/test_sim_experts.py)."""
    actions = np.repeat(home_action()[None].astype(np.float32), 30, axis=0)
    row = recover(make_env("insertion", max_steps=400), 3, actions, 30, 150, align_handed_peg)
    assert row["best_stage"] == 0
    assert row["raised_within_window"] and row["success"]
    summary = summarise([row, {**row, "best_stage": 3, "raised_within_window": False, "success": False}])
    assert summary["all"]["success"]["count"] == 1
    assert summary["by_best_stage"]["3"]["takeovers"] == 1
