"""IQL pieces: expectile loss, chunked Bellman targets with terminal masking, Q on a chain MDP."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flywheel.policy.config import CriticConfig, EncoderConfig
from flywheel.policy.recap import IqlCritic, RewardConfig, chunk_targets, expectile_loss, frame_rewards

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_expectile_loss_matches_definition() -> None:
    diff = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.5])
    tau = 0.7
    expected = [(1 - tau) * 4.0, (1 - tau) * 0.25, 0.0, tau * 0.09, tau * 2.25]
    assert torch.allclose(expectile_loss(diff, tau), torch.tensor(expected))


def _sample_expectile(x: np.ndarray, tau: float) -> float:
    lo, hi = float(x.min()), float(x.max())
    for _ in range(100):  # the root of τ·E[(x-e)+] = (1-τ)·E[(e-x)+]
        e = (lo + hi) / 2
        g = tau * np.clip(x - e, 0, None).mean() - (1 - tau) * np.clip(e - x, 0, None).mean()
        lo, hi = (e, hi) if g > 0 else (lo, e)
    return (lo + hi) / 2


@pytest.mark.parametrize("tau", [0.5, 0.7, 0.9])
def test_value_recovers_expectile_of_known_distribution(tau: float) -> None:
    rng = np.random.default_rng(0)
    x = rng.exponential(1.0, 4000).astype(np.float32)
    v = torch.zeros((), requires_grad=True)
    opt = torch.optim.Adam([v], lr=0.05)
    xs = torch.from_numpy(x)
    for _ in range(600):
        opt.zero_grad()
        expectile_loss(xs - v, tau).mean().backward()
        opt.step()
    v = v.detach()
    assert abs(float(v) - _sample_expectile(x, tau)) < 0.02
    if tau == 0.5:
        assert abs(float(v) - float(x.mean())) < 0.02
    assert tau == 0.5 or float(v) > float(x.mean())


def test_chunk_targets_hand_computed() -> None:
    ret, nxt, boot = chunk_targets(np.array([1, 2, 3, 4, 5], np.float32), gamma=0.5, chunk=2)
    np.testing.assert_allclose(ret, [1 + 0.5 * 2, 2 + 0.5 * 3, 3 + 0.5 * 4, 4 + 0.5 * 5, 5])
    np.testing.assert_array_equal(nxt, [2, 3, 4, 4, 4])
    # t=3: s_{t+H} = s_5 is past the last frame → terminal, no bootstrap; t=4: chunk runs off the end
    np.testing.assert_allclose(boot, [0.25, 0.25, 0.25, 0.0, 0.0])


def test_chunk_longer_than_episode_is_all_terminal() -> None:
    ret, _, boot = chunk_targets(np.array([1.0, 1.0, 1.0]), gamma=0.9, chunk=5)
    np.testing.assert_allclose(ret, [1 + 0.9 + 0.81, 1 + 0.9, 1], rtol=1e-6)
    assert (boot == 0).all()


def test_frame_rewards_shaping_and_success() -> None:
    cfg = RewardConfig(step_cost=0.01, stage_bonus=0.25, success_bonus=1.0)
    stage = np.array([0, 1, 1, 0, 2, 4, 4], np.float32)  # a drop back to 0 earns nothing, regaining nothing
    r = frame_rewards(stage, success=True, cfg=cfg)
    expected = -0.01 + 0.25 * np.array([0, 1, 0, 0, 1, 2, 0], np.float32)
    expected[-1] += 1.0
    np.testing.assert_allclose(r, expected, rtol=1e-6)
    assert frame_rewards(stage, success=False, cfg=cfg)[-1] == pytest.approx(-0.01)


def _fitted_critic(
    gamma: float, states: torch.Tensor, ret: np.ndarray, boot: np.ndarray, next_states: torch.Tensor
) -> IqlCritic:
    """An IQL critic over one-hot states and a single one-step action, fitted to the given chunk targets."""
    torch.manual_seed(0)
    cfg = CriticConfig(hidden_dim=64, layers=2, gamma=gamma, expectile=0.7, tau=0.05)
    critic = IqlCritic(cfg, EncoderConfig(hidden_dim=64), states.shape[1], 1, 1, [], None)
    actions = torch.ones(len(states), 1, 1)
    ret_t, boot_t = torch.from_numpy(ret), torch.from_numpy(boot)
    opt = torch.optim.Adam(critic.parameters(), lr=2e-3)
    for _ in range(1500):
        opt.zero_grad()
        q_loss, v_loss = critic.losses(states, None, None, actions, ret_t, boot_t, next_states, None, None)
        (q_loss.mean() + v_loss.mean()).backward()
        opt.step()
        critic.polyak_update()
    return critic


def test_q_converges_on_chain_mdp() -> None:
    """5-state chain, reward 1 on the last (terminal) frame: Q(s_t, a_t) = V(s_t) = γ^(4-t)."""
    gamma, n = 0.9, 5
    states = torch.eye(n)
    actions = torch.ones(n, 1, 1)
    ret, nxt, boot = chunk_targets(np.array([0, 0, 0, 0, 1], np.float32), gamma, chunk=1)
    critic = _fitted_critic(gamma, states, ret, boot, states[torch.from_numpy(nxt).long()])
    expected = torch.tensor([gamma ** (n - 1 - t) for t in range(n)])
    with torch.no_grad():
        feat = critic.features(states, None, None)
        q = torch.minimum(critic.q1(feat, actions), critic.q2(feat, actions))
        v = critic.value(states, None, None)
    assert torch.allclose(q, expected, atol=0.03), q
    assert torch.allclose(v, expected, atol=0.03), v


def test_truncated_chunk_targets_bootstrap_from_the_last_frame() -> None:
    rewards = np.array([1, 2, 3, 4, 5], np.float32)
    ret, nxt, boot = chunk_targets(rewards, gamma=0.5, chunk=2, truncated=True)
    terminal_ret, _, terminal_boot = chunk_targets(rewards, gamma=0.5, chunk=2)
    # the same rewards, the last one included; past the end, the last reward's one-time part (all of it with no
    # step cost) is taken off the stand-in, γ^(T-t) ahead
    np.testing.assert_allclose(ret, terminal_ret - np.array([0, 0, 0, 0.25 * 5, 0.5 * 5]))
    np.testing.assert_array_equal(nxt, [2, 3, 4, 4, 4])
    # t=3 and t=4: the unseen s_5 is stood in for by s_4, γ^(5-t) ahead
    np.testing.assert_allclose(boot, [0.25, 0.25, 0.25, 0.25, 0.5])
    np.testing.assert_allclose(terminal_boot, [0.25, 0.25, 0.25, 0.0, 0.0])


def test_only_failed_episodes_truncate_and_only_when_asked() -> None:
    assert not RewardConfig().truncates(success=False)
    truncating = RewardConfig(failed_episode_end="truncated")
    assert truncating.truncates(success=False)
    assert not truncating.truncates(success=True)
    with pytest.raises(ValueError):
        RewardConfig(failed_episode_end="bootstrap")


def _q_after_training(truncated: bool) -> torch.Tensor:
    """Two episodes over one-hot states s0..s2, one action: A = (s0, s1) fails and ends, B = (s1, s2) succeeds
    with reward 1 on s2. Returns min Q(s0), Q(s1) after fitting."""
    gamma = 0.9
    eye = torch.eye(3)
    ret_a, nxt_a, boot_a = chunk_targets(np.array([0, 0], np.float32), gamma, 1, truncated=truncated)
    ret_b, nxt_b, boot_b = chunk_targets(np.array([0, 1], np.float32), gamma, 1)
    next_states = eye[[[0, 1][i] for i in nxt_a] + [[1, 2][i] for i in nxt_b]]
    critic = _fitted_critic(
        gamma, eye[[0, 1, 1, 2]], np.concatenate([ret_a, ret_b]), np.concatenate([boot_a, boot_b]), next_states
    )
    return _min_q(critic, eye[:2])


def _min_q(critic: IqlCritic, states: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        feat = critic.features(states, None, None)
        actions = torch.ones(len(states), 1, 1)
        return torch.minimum(critic.q1(feat, actions), critic.q2(feat, actions))


def test_a_truncated_failure_keeps_the_value_of_where_it_stopped() -> None:
    """Cut off at s1, from which B shows success follows. Q(s1) regresses γ·V(s1) (A) and γ·1 (B) alike, so
    V(s1) = γ / (2 - γ) and Q(s0) = γ·V(s1); a terminal end makes A's target 0, so V(s1) = γ / 2."""
    gamma = 0.9
    v1_truncated, v1_terminal = gamma / (2 - gamma), gamma / 2
    truncated = _q_after_training(truncated=True)
    assert torch.allclose(truncated, torch.tensor([gamma * v1_truncated, v1_truncated]), atol=0.06), truncated
    terminal = _q_after_training(truncated=False)
    assert torch.allclose(terminal, torch.tensor([gamma * v1_terminal, v1_terminal]), atol=0.06), terminal


def test_a_truncated_end_seen_nowhere_else_is_anchored() -> None:
    """A failed episode stuck at s1 (step cost c every frame), s1 seen only there: its value settles at the cost of
    staying forever, -c / (1 - γ), instead of drifting with the expectile's upward pull."""
    gamma, cost = 0.9, 0.1
    eye = torch.eye(2)
    ret, nxt, boot = chunk_targets(np.array([-cost, -cost], np.float32), gamma, 1, truncated=True, step_cost=cost)
    critic = _fitted_critic(gamma, eye, ret, boot, eye[torch.from_numpy(nxt).long()])
    stay = -cost / (1 - gamma)
    assert torch.allclose(_min_q(critic, eye), torch.tensor([-cost + gamma * stay, stay]), atol=0.08)


def test_a_stage_reached_on_a_truncated_last_frame_counts_once() -> None:
    """Rewards [-c, b - c]: the last state is worth its bonus once, then the step cost forever, b - c / (1 - γ),
    not (b - c) / (1 - γ)."""
    gamma, cost, bonus = 0.5, 0.1, 1.0
    ret, nxt, boot = chunk_targets(
        np.array([-cost, bonus - cost], np.float32), gamma, 1, truncated=True, step_cost=cost
    )
    np.testing.assert_allclose(ret, [-cost, bonus - cost - gamma * bonus], rtol=1e-6)
    np.testing.assert_array_equal(nxt, [1, 1])
    np.testing.assert_allclose(boot, [gamma, gamma])
    value = ret[1] / (1 - boot[1])  # the last frame's fixed point: V = ret + boot · V
    assert value == pytest.approx(bonus - cost / (1 - gamma))
