"""RECAP labelling, AWR / source weights, classifier-free guidance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flywheel.policy.config import ExpertConfig
from flywheel.policy.expert import NEGATIVE, POSITIVE, UNCONDITIONAL, FlowMatchingExpert
from flywheel.policy.recap import (
    LabelInputs,
    awr_weights,
    binarize_advantages,
    drop_indicator,
    failed_correction_frames,
    label_frames,
    pre_takeover_frames,
    source_weights,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_human_and_expert_frames_are_forced_positive() -> None:
    adv = np.array([-5.0, -4.0, 1.0, 2.0, 3.0, 4.0, -9.0, -9.0])
    tasks = np.zeros(8, dtype=int)
    forced = np.array([False, False, False, False, False, False, True, True])
    labels = binarize_advantages(adv, tasks, forced, quantile=0.5)
    assert labels.indicator[6:].tolist() == [POSITIVE, POSITIVE]
    eps = labels.thresholds[0]
    assert eps == np.quantile(adv, 0.5)
    expected = [POSITIVE if a > eps else NEGATIVE for a in adv[:6]]
    assert labels.indicator[:6].tolist() == expected
    assert NEGATIVE in expected and POSITIVE in expected


def test_policy_frames_just_before_a_takeover_are_forced_negative() -> None:
    # policy 0-5, expert 6-8 (takeover at 6), policy 9-10, expert 11 (takeover at 11)
    acting = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0], dtype=bool)
    window = pre_takeover_frames(acting, 3)
    assert np.flatnonzero(window).tolist() == [3, 4, 5, 9, 10]
    assert not pre_takeover_frames(acting, 0).any()
    adv = np.full(12, 10.0)  # every frame would be positive on its advantage alone
    adv[0] = -1.0
    labels = binarize_advantages(adv, np.zeros(12, int), ~acting, quantile=0.0, forced_negative=window)
    assert labels.indicator.tolist() == [0, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 1]


def test_the_since_progress_window_covers_only_the_stall_the_operator_timed() -> None:
    # policy 0-9 (stage rises at 2 and 5), expert 10-11 (stage rises at 11), policy 12-15, expert 16-17
    acting = np.array([1] * 10 + [0, 0] + [1] * 4 + [0, 0], dtype=bool)
    stage = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3], dtype=float)
    assert np.flatnonzero(pre_takeover_frames(acting, 8)).tolist() == [2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 14, 15]
    stalls = pre_takeover_frames(acting, 8, stage)
    assert np.flatnonzero(stalls).tolist() == [6, 7, 8, 9, 12, 13, 14, 15]  # not the frame that advanced
    assert np.flatnonzero(pre_takeover_frames(acting, 2, stage)).tolist() == [8, 9, 14, 15]  # the window still caps
    assert not pre_takeover_frames(acting, 0, stage).any()


def test_thresholds_are_per_task() -> None:
    adv = np.array([0.0, 1.0, 2.0, 3.0, 100.0, 101.0, 102.0, 103.0])
    tasks = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    labels = binarize_advantages(adv, tasks, np.zeros(8, bool), quantile=0.5)
    # a global threshold would mark all of task 0 negative; per task, each task keeps its top half
    assert labels.indicator.tolist() == [0, 0, 1, 1, 0, 0, 1, 1]
    assert labels.positive_fraction == 0.5


def test_awr_and_source_weights() -> None:
    adv = np.array([-1.0, 0.0, 1.0, 10.0])
    w = awr_weights(adv, beta=1.0, max_weight=5.0)
    std = adv.std()
    np.testing.assert_allclose(w[:3], np.exp(adv[:3] / std), rtol=1e-6)
    assert w[3] == 5.0
    sw = source_weights(
        np.array(["demo", "intervention", "autonomous"], dtype=object),
        {"demo": 1.0, "intervention": 2.0, "autonomous": 0.5},
    )
    assert sw.tolist() == [1.0, 2.0, 0.5]


@pytest.mark.parametrize("method", ["bc", "recap"])
def test_takeover_weight_scales_only_the_takeover_frames(method: str) -> None:
    from flywheel.train.config import TrainConfig

    # a demo (expert), an intervention episode (policy, operator, policy), an autonomous episode
    tags = np.array(["demo", "demo", "intervention", "intervention", "intervention", "autonomous"], dtype=object)
    forced = np.array([True, True, False, True, False, False])
    frames = LabelInputs(tags, np.zeros(6, int), ["transfer_cube"], forced, np.zeros(6, bool))
    advantages = None if method == "bc" else np.arange(6, dtype=float)
    config = TrainConfig(method=method, source_weights={"intervention": 0.5}, wandb=False)
    plain = label_frames(config, frames, advantages)
    heavy = label_frames(config.model_copy(update={"takeover_weight": 4.0}), frames, advantages)
    assert plain.weight.tolist() == [1.0, 1.0, 0.5, 0.5, 0.5, 1.0]
    assert heavy.weight.tolist() == [1.0, 1.0, 0.5, 2.0, 0.5, 1.0]
    assert torch.equal(plain.indicator, heavy.indicator)  # weights only: the labels are the same


def test_indicator_dropout_rate() -> None:
    ind = torch.ones(20_000, dtype=torch.long)
    out = drop_indicator(ind, 0.3, torch.Generator().manual_seed(0))
    frac = (out == UNCONDITIONAL).float().mean().item()
    assert abs(frac - 0.3) < 0.02
    assert set(out.unique().tolist()) == {POSITIVE, UNCONDITIONAL}


def _expert() -> tuple[FlowMatchingExpert, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    expert = FlowMatchingExpert(ExpertConfig(chunk=6, dim=32, layers=2, heads=4), action_dim=3).eval()
    with torch.no_grad():  # make the indicator embedding matter
        expert.indicator.weight.mul_(10.0)
    return expert, torch.randn(4, 2, 32), torch.randn(4, 6, 3)


def test_cfg_beta_one_equals_conditional_sampling() -> None:
    expert, ctx, noise = _expert()
    cond = expert.sample(ctx, noise, num_steps=5, indicator=POSITIVE)
    guided = expert.sample(ctx, noise, num_steps=5, indicator=POSITIVE, cfg_beta=1.0)
    assert torch.allclose(cond, guided, atol=1e-5)


def test_cfg_beta_zero_is_unconditional_and_beta_two_extrapolates() -> None:
    expert, ctx, noise = _expert()
    uncond = expert.sample(ctx, noise, num_steps=5, indicator=UNCONDITIONAL)
    assert torch.allclose(expert.sample(ctx, noise, 5, indicator=POSITIVE, cfg_beta=0.0), uncond, atol=1e-5)
    cond = expert.sample(ctx, noise, num_steps=1, indicator=POSITIVE)
    unc1 = expert.sample(ctx, noise, num_steps=1, indicator=UNCONDITIONAL)
    two = expert.sample(ctx, noise, num_steps=1, indicator=POSITIVE, cfg_beta=2.0)
    # one Euler step: x1 = ε + v, so guidance extrapolates linearly
    assert torch.allclose(two, unc1 + 2.0 * (cond - unc1), atol=1e-5)
    assert not torch.allclose(cond, unc1, atol=1e-3)


def test_takeovers_that_repaired_nothing_are_failed_corrections() -> None:
    # policy 0-2 (stage 1), expert 3-5 lifts it (stage 2), policy 6-7 drops it, expert 8-10 never gets back above 2
    acting = np.array([1, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0], dtype=bool)
    stage = np.array([0, 1, 1, 1, 2, 2, 2, 1, 0, 1, 2])
    assert np.flatnonzero(failed_correction_frames(acting, stage, success=False)).tolist() == [8, 9, 10]
    assert not failed_correction_frames(acting, stage, success=True).any()  # it ended the episode solved
    assert not failed_correction_frames(np.zeros(5, bool), np.zeros(5), success=False).any()  # a demo
    assert not failed_correction_frames(np.ones(5, bool), np.zeros(5), success=False).any()  # autonomous
