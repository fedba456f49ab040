"""Rollouts on real physics: tags and segments derived from who acted, policy failure handling."""

from __future__ import annotations

import numpy as np
import pytest

from flywheel.vocab import CONTROLLER_CODES, SIMULATED_OPERATOR, ControllerKind, SegmentSpan, Tag
from sim import EpisodeRunner, RandomWalkPolicy, SimOperatorConfig, SimulatedOperator, make_env, run_episode


@pytest.fixture(scope="module")
def env():
    return make_env("transfer_cube")


def test_expert_only_episode_is_a_successful_demo(env) -> None:
    result = run_episode(env, seed=1)
    assert result.error is None
    assert result.frames is not None and result.tag == Tag.DEMO
    assert result.success and result.length < 400
    assert [(s.controller, s.trigger) for s in result.segments] == [(ControllerKind.EXPERT, "start")]
    assert not result.frames.policy_action_valid.any()
    assert result.episode_return == pytest.approx(float(result.frames.reward.sum()))
    assert result.frames.reward.max() == 4


def test_random_policy_only_is_autonomous(env) -> None:
    result = run_episode(env, seed=2, policy=RandomWalkPolicy(seed=2), max_steps=120)
    assert result.tag == Tag.AUTONOMOUS and not result.success
    assert result.length == 120 and result.frames.policy_action_valid.all()
    np.testing.assert_array_equal(result.frames.action, result.frames.policy_action)


def test_policy_with_operator_is_intervention_with_segments(env) -> None:
    sim_operator = SimulatedOperator(
        SimOperatorConfig(no_progress_steps=40, handback_after_steps=30, min_policy_steps=0)
    )
    result = run_episode(env, seed=3, policy=RandomWalkPolicy(seed=3), sim_operator=sim_operator, max_steps=200)
    frames = result.frames
    assert result.tag == Tag.INTERVENTION
    segs = result.segments
    assert segs[0].start == 0 and segs[-1].end == result.length
    assert segs[0].controller == ControllerKind.POLICY and segs[0].trigger == "start"
    # 40 steps without progress at the earliest (a random walk may bring the parts closer now and then)
    assert segs[1] == SegmentSpan(segs[1].start, segs[1].end, ControllerKind.EXPERT, SIMULATED_OPERATOR, "no_progress")
    assert segs[1].start >= 40
    assert segs[2].controller == ControllerKind.POLICY and segs[2].trigger in ("handback_steps", "handback_progress")
    for seg in segs:
        assert (frames.controller[seg.start : seg.end] == CONTROLLER_CODES[seg.controller]).all()
    # The policy was consulted under the expert too, and its proposals differ from what was executed.
    expert = frames.controller == CONTROLLER_CODES[ControllerKind.EXPERT]
    assert frames.policy_action_valid.all()
    assert not np.allclose(frames.action[expert], frames.policy_action[expert])


def test_action_distance_trigger(env) -> None:
    config = SimOperatorConfig(no_progress_steps=None, action_distance=0.5, handback_after_steps=20, max_takeovers=1)
    result = run_episode(env, 4, RandomWalkPolicy(seed=4, scale=0.2), SimulatedOperator(config), max_steps=80)
    triggers = [s.trigger for s in result.segments]
    assert triggers[:3] == ["start", "action_distance", "handback_steps"] and result.takeovers == 1


class _NaNPolicy:
    def __init__(self, bad_step: int, shape: tuple[int, ...] = (14,)) -> None:
        self.bad_step, self.shape, self.t = bad_step, shape, 0

    def reset(self) -> None:
        self.t = 0

    def act(self, obs: dict) -> np.ndarray:
        self.t += 1
        action = np.zeros(self.shape)
        if self.t > self.bad_step:
            action[0] = np.nan
        return action


def test_nan_policy_action_fails_episode_and_keeps_earlier_frames(env) -> None:
    result = run_episode(env, 0, policy=_NaNPolicy(bad_step=7))
    assert not result.success and result.error is not None and "NaN" in result.error and "step 7" in result.error
    assert result.length == 7 and len(result.frames) == 7 and np.isfinite(result.frames.action).all()


def test_wrong_shape_policy_action_fails_at_first_step(env) -> None:
    result = run_episode(env, 0, policy=_NaNPolicy(bad_step=99, shape=(7,)))
    assert result.error is not None and "shape (7,)" in result.error
    assert result.frames is None and result.length == 0 and result.segments == []


def test_stepwise_runner_console_takeover(env) -> None:
    runner = EpisodeRunner(env, 5, policy=RandomWalkPolicy(seed=5))
    for _ in range(10):
        runner.step()
    runner.take_over(runner.expert, "console: expert assist", operator="alice")
    while not runner.done:
        runner.step()
    result = runner.result()
    assert result.success and result.tag == Tag.INTERVENTION
    assert [(s.start, s.controller, s.operator, s.trigger) for s in result.segments] == [
        (0, ControllerKind.POLICY, None, "start"),
        (10, ControllerKind.EXPERT, "alice", "console: expert assist"),
    ]
    with pytest.raises(RuntimeError):
        runner.step()


def test_sim_operator_config_validation() -> None:
    with pytest.raises(ValueError):
        SimOperatorConfig(no_progress_steps=None, action_distance=None, takeover_probability=0.0)
    with pytest.raises(ValueError):
        SimOperatorConfig(takeover_probability=1.5)


def test_pixels_rollout_records_images() -> None:
    env = make_env("insertion", obs_mode="pixels", image_size=(32, 40))
    try:
        result = run_episode(env, 0, policy=RandomWalkPolicy(seed=0), max_steps=6)
    finally:
        env.close()
    assert result.frames is not None and result.frames.images["top"].shape == (6, 32, 40, 3)
    assert result.frames.state.shape == (6, 42)
