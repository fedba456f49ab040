"""Experts, IK and teleop on real physics."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from sim import AlohaSimEnv, EpisodeRunner, RandomWalkPolicy, TeleopController, make_env, run_episode
from sim.controllers import ExpertController
from sim.experts import InsertionExpert, make_expert
from sim.experts.insertion import object_axis, turn_onto
from sim.kinematics import ArmKinematics, Pose
from sim.operator import SimOperatorConfig, SimulatedOperator


@pytest.mark.parametrize(("task", "seeds"), [("transfer_cube", (11, 12)), ("insertion", (11, 12))])
def test_expert_solves_task(task: str, seeds: tuple[int, ...]) -> None:
    env = make_env(task)
    for seed in seeds:
        result = run_episode(env, seed)
        assert result.success, (task, seed, result.length)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_expert_takes_over_from_perturbed_state(seed: int) -> None:
    env = make_env("transfer_cube")
    runner = EpisodeRunner(env, seed, policy=RandomWalkPolicy(seed=seed, scale=0.1))
    for _ in range(60 + 20 * seed):
        runner.step()
    moved = np.abs(env.data.qpos[:6] - [0, -0.96, 1.16, 0, -0.3, 0]).max()
    assert moved > 0.1  # the policy really left the arms somewhere else
    runner.take_over(runner.expert, "test")
    result = runner.run()
    assert result.success, (seed, runner.expert.expert.status)


def test_expert_takes_over_mid_transfer_holding_the_cube() -> None:
    env = make_env("transfer_cube")
    runner = EpisodeRunner(env, 3)
    while runner.expert.expert.status.phase != "reach":
        runner.step()
    runner.expert.reset(env)
    assert runner.expert.expert.status.phase == "lift"  # re-inferred: the right gripper holds the cube
    assert runner.run().success


def test_ik_unreachable_is_reported_and_finite() -> None:
    env = make_env("transfer_cube")
    env.reset(seed=0)
    kin = ArmKinematics(env.model)
    start = kin.tcp_pose(env.data, "right")
    q0 = env.data.qpos[kin.qpos_idx["right"]].copy()
    near = kin.solve("right", Pose(start.pos + np.array([-0.05, 0.02, -0.1]), start.rot), q0)
    assert near.reached and near.position_error < 0.004
    far = kin.solve("right", Pose(np.array([3.0, -2.0, 1.0]), start.rot), q0)
    assert not far.reached and np.isfinite(far.q).all()
    lo, hi = kin.limits["right"].T
    assert ((far.q >= lo) & (far.q <= hi)).all()


@pytest.mark.parametrize(("arm", "axis", "sign"), [("left", 0, 1), ("right", 2, -1), ("right", 1, 1)])
def test_teleop_jog_moves_end_effector_in_commanded_direction(arm: str, axis: int, sign: int) -> None:
    env = make_env("transfer_cube")
    obs, _ = env.reset(seed=0)
    teleop = TeleopController()
    teleop.reset(env)
    before = teleop.motion[arm].kin.tcp_pose(env.data, arm).pos.copy()
    delta = np.zeros(3)
    delta[axis] = 0.04 * sign
    assert teleop.jog(arm, delta).reachable
    for _ in range(30):
        obs, *_ = env.step(teleop.act(obs, env))
    moved = teleop.motion[arm].kin.tcp_pose(env.data, arm).pos - before
    assert moved[axis] * sign > 0.03
    assert np.abs(np.delete(moved, axis)).max() < 0.01
    other = "right" if arm == "left" else "left"
    held = teleop.motion[other].kin.tcp_pose(env.data, other).pos
    np.testing.assert_allclose(held, teleop.targets[other].pos, atol=0.01)


def test_teleop_refuses_unreachable_jog_and_toggles_gripper() -> None:
    env = make_env("transfer_cube")
    obs, _ = env.reset(seed=0)
    teleop = TeleopController(max_jog=5.0)
    teleop.reset(env)
    target_before = teleop.targets["left"].pos.copy()
    result = teleop.jog("left", (0.0, 0.0, 2.0))
    assert not result.reachable
    np.testing.assert_array_equal(teleop.targets["left"].pos, target_before)
    teleop.set_gripper("left", open_=False)
    for _ in range(20):
        obs, *_ = env.step(teleop.act(obs, env))
    assert obs["state"][6] < 0.2
    with pytest.raises(ValueError):
        teleop.jog("middle", (0, 0, 0.01))


@pytest.mark.slow
@pytest.mark.parametrize(("task", "minimum"), [("transfer_cube", 0.95), ("insertion", 0.80)])
def test_expert_success_rate_100_seeds(task: str, minimum: float) -> None:
    env = make_env(task)
    successes = sum(run_episode(env, seed).success for seed in range(100))
    assert successes / 100 >= minimum, successes


def _tilt_peg_in_grip(env: AlohaSimEnv, degrees: float) -> None:
    """Pitch the held peg about its own y axis, as a policy's off-centre grasp leaves it."""
    adr = env.task.object_qpos_adr[0]  # the peg
    tilt, tilted = np.empty(4), np.empty(4)
    mujoco.mju_axisAngle2Quat(tilt, np.array([0.0, 1.0, 0.0]), np.deg2rad(degrees))
    mujoco.mju_mulQuat(tilted, env.data.qpos[adr + 3 : adr + 7].copy(), tilt)  # in the peg's own frame
    env.data.qpos[adr + 3 : adr + 7] = tilted
    mujoco.mj_forward(env.model, env.data)


@pytest.mark.parametrize("align", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_insertion_expert_aligns_a_peg_it_did_not_grasp(seed: int, align: bool) -> None:
    """Handed a peg held at a tilt, the expert turns the gripper by the peg's measured axis and still inserts it;
    steering by the plan's heading, as for its own grasps (`align_handed_peg=False`), fails from this state."""
    env = make_env("insertion")
    expert = ExpertController("insertion", make_expert("insertion", align_handed_peg=align))
    runner = EpisodeRunner(env, seed, expert=expert)
    while runner.expert.expert.status.phase != "meet":
        runner.step()
    _tilt_peg_in_grip(env, 20.0)
    assert abs(object_axis(env.object_pose(0)[3:])[2]) > np.sin(np.deg2rad(15))
    runner.expert.reset(env)
    assert runner.expert.expert.status.phase == "meet"  # both parts still held
    assert runner.run().success == align, (seed, runner.expert.expert.status)


def test_the_simulated_operator_expert_steers_a_handed_peg_by_the_plan_unless_told() -> None:
    env = make_env("insertion")

    def aligns(sim_operator: SimulatedOperator | None) -> bool:
        expert = EpisodeRunner(env, 0, sim_operator=sim_operator).expert.expert
        assert isinstance(expert, InsertionExpert)
        return expert.plan_cfg.align_handed_peg

    assert aligns(None)  # demos (and the console's expert assist) align: their own grasps are unaffected
    assert not aligns(SimulatedOperator())
    assert aligns(SimulatedOperator(SimOperatorConfig(align_handed_peg=True)))


def test_turn_onto_is_the_smallest_rotation_between_directions() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        current, wanted = (v / np.linalg.norm(v) for v in rng.normal(size=(2, 3)))
        turned = turn_onto(np.eye(3), current, wanted)
        np.testing.assert_allclose(turned @ current, wanted, atol=1e-9)
        np.testing.assert_allclose(turned.T @ turned, np.eye(3), atol=1e-9)
        axis = np.cross(current, wanted)
        np.testing.assert_allclose(turned @ axis, axis, atol=1e-9)  # about their common normal only
