"""bench.insertion_alignment: the peg's pose against the socket's axis, and which episodes it is read from."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.insertion_alignment import (
    LIFT_SETTLE_STEPS,
    SOCKET_STAGE,
    Alignment,
    GripHeights,
    episode_group,
    moment_frames,
    peg_alignment,
    summarise,
)

ROOT = Path(__file__).resolve().parents[1]


def _quat(axis: tuple[float, float, float], degrees: float) -> np.ndarray:
    """wxyz quaternion of a rotation by `degrees` about the unit `axis`."""
    half = np.radians(degrees) / 2
    return np.array([np.cos(half), *(np.sin(half) * np.asarray(axis, dtype=float))])


def _pose(position: tuple[float, float, float], quat: np.ndarray) -> np.ndarray:
    return np.array([*position, *quat])


def test_offsets_and_tilts_are_read_in_the_sockets_axis_frame() -> None:
    socket = _pose((0.1, 0.5, 0.2), _quat((0, 0, 1), 0))
    # the peg 12 cm ahead along the bore, 2 mm across, 8 mm low, its nose pitched 10° (about the across axis)
    peg = _pose((0.22, 0.502, 0.192), _quat((0, 1, 0), 10))
    a = peg_alignment(peg, socket)
    assert a.along == pytest.approx(0.12) and a.sideways == pytest.approx(0.002, abs=1e-9)
    assert a.vertical == pytest.approx(-0.008, abs=1e-9)
    assert abs(np.degrees(a.pitch)) == pytest.approx(10, abs=1e-6) and a.yaw == pytest.approx(0, abs=1e-9)
    # the same scene turned 90° about the vertical: nothing relative changes
    turn = _quat((0, 0, 1), 90)
    w1, v1, w2, v2 = turn[0], turn[1:], _quat((0, 1, 0), 10)[0], _quat((0, 1, 0), 10)[1:]
    peg_turned = np.array([w1 * w2 - v1 @ v2, *(w1 * v2 + w2 * v1 + np.cross(v1, v2))])
    b = peg_alignment(_pose((0.1 - 0.002, 0.5 + 0.12, 0.192), peg_turned), _pose((0.1, 0.5, 0.2), turn))
    for name in ("along", "sideways", "vertical", "yaw", "pitch"):
        assert getattr(b, name) == pytest.approx(getattr(a, name), abs=1e-9), name
    # a peg whose axis points the other way is the same peg
    flipped = peg_alignment(_pose((0.22, 0.502, 0.192), _quat((0, 0, 1), 180)), socket)
    assert flipped.yaw == pytest.approx(0, abs=1e-9) and flipped.pitch == pytest.approx(0, abs=1e-9)


def test_episodes_are_grouped_by_where_their_first_takeover_began() -> None:
    reached = np.array([0, 1, 2, 3, 3, 3, 4])
    assert episode_group(True, True, [], reached) == "demo"
    assert episode_group(False, True, [], reached) == "solved alone"
    assert episode_group(False, False, [], reached) is None  # failed alone: no operator, no stall to read
    assert episode_group(False, True, [5], reached) == "stalled at the socket"
    assert episode_group(False, True, [3, 5], reached) is None  # the first takeover began before the socket
    assert episode_group(False, True, [0], reached) is None


def snapshots(
    states: np.ndarray, reward: np.ndarray, group: str, starts: list[int], peg: slice, socket: slice
) -> dict[str, Alignment] | None:
    """The alignment at each moment `moment_frames` finds, as `alignment_by_group` reads it."""
    frames = moment_frames(states, np.maximum.accumulate(reward), group, starts, peg, socket)
    if frames is None:
        return None
    return {moment: peg_alignment(states[i][peg], states[i][socket]) for moment, i in frames.items()}


def test_snapshots_read_the_approach_before_contact_and_the_frame_before_the_takeover() -> None:
    socket = _pose((0.0, 0.5, 0.2), _quat((0, 0, 1), 0))
    alongs = [0.30, 0.20, 0.13, 0.11, 0.10, 0.10]
    states = np.array([np.concatenate([_pose((x, 0.5, 0.19), _quat((0, 0, 1), 0)), socket]) for x in alongs])
    reward = np.array([2, 2, 2, SOCKET_STAGE, SOCKET_STAGE, SOCKET_STAGE])
    peg, sock = slice(0, 7), slice(7, 14)
    stalled = snapshots(states, reward, "stalled at the socket", [5], peg, sock)
    assert stalled is not None
    assert stalled["approach"].along == pytest.approx(0.13) and stalled["contact"].along == pytest.approx(0.11)
    assert stalled["takeover"].along == pytest.approx(0.10)  # the frame before the operator took over
    assert stalled["lifted"].along == pytest.approx(0.13)  # the lift snapshot never falls after the approach
    slow = np.concatenate([np.repeat(states[:1], LIFT_SETTLE_STEPS + 2, axis=0), states[2:]])
    slow[LIFT_SETTLE_STEPS, 0] = 0.25  # the frame LIFT_SETTLE_STEPS after the lift
    late = snapshots(
        slow, np.concatenate([np.full(LIFT_SETTLE_STEPS + 2, 2), reward[2:]]), "solved alone", [], peg, sock
    )
    assert late is not None and late["lifted"].along == pytest.approx(0.25)
    solved = snapshots(states, reward, "solved alone", [], peg, sock)
    assert solved is not None and solved["contact"].along == pytest.approx(0.11) and "takeover" not in solved
    assert snapshots(states[3:], reward[3:], "solved alone", [], peg, sock) is None  # no approach before contact
    summary = summarise([stalled["approach"], stalled["contact"]])
    assert summary["episodes"] == 2 and summary["vertical_mm_median"] == pytest.approx(10.0)
    assert summary["vertical_mm_mean"] == pytest.approx(-10.0) and summarise([]) == {"episodes": 0}


def test_grip_heights_match_the_simulators_own_tool_points() -> None:
    from sim.constants import home_action
    from sim.env import make_env, object_pose_key, state_layout
    from sim.kinematics import ArmKinematics

    env = make_env("insertion", max_steps=20)
    env.reset(seed=7)
    action = home_action()
    action[1] += 0.2  # the left shoulder and the right elbow moved: the tool points stand at different heights
    action[9] -= 0.15
    for _ in range(10):
        env.step(action)
    layout = state_layout("insertion")
    peg, socket = layout[object_pose_key("peg")], layout[object_pose_key("socket")]
    state = env.state_vector()
    heights = GripHeights(peg, socket)(state)
    kinematics = ArmKinematics(env.model)
    grip = {arm: kinematics.tcp_pose(env.data, arm).pos[2] for arm in ("left", "right")}
    assert heights.peg_below_grip == pytest.approx(grip["right"] - state[peg][2], abs=1e-5)
    assert heights.socket_below_grip == pytest.approx(grip["left"] - state[socket][2], abs=1e-5)
    assert heights.grips_apart == pytest.approx(grip["right"] - grip["left"], abs=1e-5)
    env.close()


def test_a_home_without_a_store_is_refused(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "bench.insertion_alignment", "--home", str(tmp_path), "--out", str(tmp_path / "o")]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode != 0 and "insertion_alignment: no store in" in done.stderr
    assert not (tmp_path / "o").exists()
