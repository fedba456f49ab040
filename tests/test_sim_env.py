"""Env contract: seeding, state layout, actions, rendering, errors."""

from __future__ import annotations

import numpy as np
import pytest

from sim import UnknownTaskError, make_env, state_layout
from sim.constants import N_SUBSTEPS, home_action
from sim.env import object_pose_key
from sim.errors import InvalidActionError


def _rollout(env, seed: int, steps: int = 30) -> np.ndarray:
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(0)
    states = [obs["state"]]
    for _ in range(steps):
        action = home_action() + rng.normal(0, 0.05, 14)
        obs, *_ = env.step(action)
        states.append(obs["state"])
    return np.stack(states)


@pytest.mark.parametrize("task", ["transfer_cube", "insertion"])
def test_same_seed_same_episode_and_different_seed_differs(task: str) -> None:
    a, b = make_env(task), make_env(task)
    first, second = _rollout(a, 7), _rollout(b, 7)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first[0], _rollout(a, 8)[0])


def test_state_layout_matches_vector() -> None:
    env = make_env("insertion")
    obs, _ = env.reset(seed=3)
    layout = state_layout("insertion")
    assert obs["state"].dtype == np.float32
    assert obs["state"].shape == (layout["socket_pose"].stop,) == (42,)
    np.testing.assert_allclose(obs["state"][layout["peg_pose"]], env.object_pose(0), atol=1e-6)
    np.testing.assert_allclose(obs["state"][layout["socket_pose"]], env.object_pose(1), atol=1e-6)
    peg = obs["state"][layout["peg_pose"]]
    assert 0.1 <= peg[0] <= 0.2 and 0.4 <= peg[1] <= 0.6
    assert state_layout("transfer_cube")["box_pose"] == slice(28, 35)


def test_insertion_approach_distance_reads_from_the_recorded_state() -> None:
    """`bench.takeover_approach` reads the approach distance from recorded poses of the task's `approach_objects`:
    the same number the simulated operator reads from the physics, after the parts moved."""
    env = make_env("insertion")
    obs, _ = env.reset(seed=5)
    rng = np.random.default_rng(0)
    for _ in range(40):
        obs, *_ = env.step(rng.uniform(-1.0, 1.0, size=env.action_space.shape).astype(np.float32))
    layout = state_layout("insertion")
    first, second = (obs["state"][layout[object_pose_key(name)]][:3] for name in env.task.approach_objects)
    recorded = float(np.linalg.norm(first - second))
    assert recorded == pytest.approx(env.task.approach_distance(env.data), abs=1e-5)
    assert make_env("transfer_cube").task.approach_objects is None


def test_unknown_task_lists_tasks() -> None:
    with pytest.raises(UnknownTaskError, match="insertion, transfer_cube"):
        make_env("stack_blocks")


def test_bad_action_is_rejected_not_clipped() -> None:
    env = make_env("transfer_cube")
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match="shape"):
        env.step(np.zeros(13))
    bad = home_action()
    bad[2] = np.nan
    with pytest.raises(InvalidActionError, match="NaN"):
        env.step(bad)
    # Targets beyond [-1, 1] are legal joint positions and must move the joint there.
    target = home_action()
    target[2] = 1.34
    for _ in range(40):
        obs, *_ = env.step(target)
    assert obs["state"][2] > 1.25


def test_pixels_mode_renders_each_camera() -> None:
    env = make_env("transfer_cube", obs_mode="pixels", cameras=("top", "angle"), image_size=(48, 64))
    try:
        obs, _ = env.reset(seed=0)
        assert set(obs["images"]) == {"top", "angle"}
        for img in obs["images"].values():
            assert img.shape == (48, 64, 3) and img.dtype == np.uint8 and img.std() > 0
        obs2, *_ = env.step(home_action())
        assert obs2["images"]["top"].shape == (48, 64, 3)
    finally:
        env.close()


def test_sibling_env_shares_the_renderer_and_renders_its_own_state() -> None:
    """Lockstep lanes render through one renderer: each sibling still sees its own scene, as a separate env would."""
    owner = make_env("transfer_cube", obs_mode="pixels", image_size=(48, 64))
    sibling = owner.sibling()
    alone = make_env("transfer_cube", obs_mode="pixels", image_size=(48, 64))
    try:
        assert sibling._renderer is owner._renderer
        owner.reset(seed=1)
        sibling.reset(seed=2)
        alone.reset(seed=2)
        for env in (owner, sibling, alone):
            env.step(home_action())
        np.testing.assert_array_equal(
            sibling.step(home_action())[0]["images"]["top"], alone.step(home_action())[0]["images"]["top"]
        )
        assert not np.array_equal(
            owner.step(home_action())[0]["images"]["top"], alone.step(home_action())[0]["images"]["top"]
        )
        sibling.close()  # leaves the shared renderer to its owner
        assert owner.step(home_action())[0]["images"]["top"].std() > 0
    finally:
        for env in (sibling, owner, alone):
            env.close()


def test_truncates_at_max_steps() -> None:
    env = make_env("transfer_cube", max_steps=5)
    env.reset(seed=0)
    flags = [env.step(home_action())[3] for _ in range(5)]
    assert flags == [False] * 4 + [True]


def _red_pixels(image: np.ndarray) -> int:
    r, g, b = (image[..., i].astype(int) for i in range(3))
    return int(((r > 120) & (g < 80) & (b < 80)).sum())


def test_table_camera_sees_the_cube_larger_than_top() -> None:
    env = make_env("transfer_cube", obs_mode="pixels", cameras=("top", "table"))
    try:
        obs, _ = env.reset(seed=3)
        top, table = _red_pixels(obs["images"]["top"]), _red_pixels(obs["images"]["table"])
        assert top > 0 and table > 3 * top
    finally:
        env.close()


@pytest.mark.parametrize("task", ["transfer_cube", "insertion"])
def test_added_cameras_leave_the_physics_of_the_plain_scene(task: str) -> None:
    import mujoco

    from sim.constants import ASSETS_DIR
    from sim.scene import ADDED_CAMERAS, CAMERAS

    env = make_env(task)
    plain = mujoco.MjModel.from_xml_path(str(ASSETS_DIR / env.task.xml_file))
    assert env.model.ncam == plain.ncam + len(ADDED_CAMERAS) == len(CAMERAS)
    for field in ("nq", "nv", "nu", "nbody", "ngeom"):
        assert getattr(env.model, field) == getattr(plain, field)
    env.reset(seed=5)
    data = mujoco.MjData(plain)
    data.qpos[:], data.ctrl[:] = env.data.qpos, env.data.ctrl
    mujoco.mj_forward(plain, data)
    action = home_action()
    action[2] = 1.0  # a move, so contacts and actuators act
    for _ in range(30):
        env.step(action)
        data.ctrl[:] = env.data.ctrl
        mujoco.mj_step2(plain, data)  # the env's stepping order (sim/env.py)
        mujoco.mj_step(plain, data, N_SUBSTEPS - 1)
        mujoco.mj_step1(plain, data)
    np.testing.assert_array_equal(env.data.qpos, data.qpos)
