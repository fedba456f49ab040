"""Closed-loop expert for insertion: both arms pick (socket left, peg right), meet, and the peg is pushed in.

During the meet and the insertion the peg's target is computed from the socket's *measured* pose every step, and
the right arm is moved by the measured peg error, so grasp offsets and slips are corrected as they happen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.constants import ARMS, GRIPPER_CLOSED, GRIPPER_OPEN
from sim.env import AlohaSimEnv
from sim.experts.base import ArmGoal, ClosedLoopExpert, heading_rotation
from sim.kinematics import Pose


@dataclass(frozen=True)
class InsertionPlan:
    """Geometry (metres / radians). Grasp offsets are along each object's long (x) axis from its centre."""

    pick_pitch: float = np.deg2rad(85)
    above: float = 0.08
    peg_grasp: tuple[float, float] = (0.01, 0.011)  # (along the peg, TCP height above its centre)
    socket_grasp: tuple[float, float] = (-0.03, 0.005)
    socket_meet: tuple[float, float, float] = (-0.06, 0.5, 0.2)
    pre_insert: float = 0.17  # peg centre ahead of the socket centre before insertion
    inserted: float = 0.092  # deepest peg-centre offset commanded (0.10 = tip touching the pin)
    insert_step: float = 0.003
    align_tolerance: float = 0.003
    close_steps: int = 12
    lost_steps: int = 6
    # A peg handed over in a grasp the expert did not make: turned onto the socket's axis by its measured axis
    # (True), or by the plan's heading as for its own grasps (False).
    align_handed_peg: bool = True


def turn_onto(rot: np.ndarray, current: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """`rot` turned by the smallest rotation that takes the unit direction `current` onto `wanted`."""
    v = np.cross(current, wanted)
    c = float(np.dot(current, wanted))
    if c <= -0.999:  # opposite: no unique smallest turn; leave it to the position error
        return rot
    k = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return (np.eye(3) + k + k @ k / (1.0 + c)) @ rot


def object_axis(quat: np.ndarray) -> np.ndarray:
    """The object's x axis in world coordinates from its wxyz quaternion."""
    w, x, y, z = quat
    return np.array([1 - 2 * (y * y + z * z), 2 * (x * y + w * z), 2 * (x * z - w * y)])


class InsertionExpert(ClosedLoopExpert):
    """Phases: pick (each arm: approach → descend → close → lifted) → meet → insert (re-inferred on takeover)."""

    def __init__(self, plan: InsertionPlan | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.plan_cfg = plan or InsertionPlan()
        self.arm_phase: dict[str, str] = {}
        self.arm_steps: dict[str, int] = {}
        self._lost = 0
        self._depth = self.plan_cfg.pre_insert
        self._own_grasp: dict[str, bool] = dict.fromkeys(ARMS, False)

    def _held(self, env: AlohaSimEnv) -> dict[str, bool]:
        t = env.task
        return {"left": t.touches("left", t.socket), "right": t.touches("right", t.peg)}  # type: ignore[attr-defined]

    def arm_busy(self, env: AlohaSimEnv, arm: str) -> bool:
        return self._held(env)[arm]

    def infer_phase(self, env: AlohaSimEnv) -> str:
        held = self._held(env)
        self._lost = 0
        self._depth = self.plan_cfg.pre_insert
        self.arm_phase = {arm: "lifted" if held[arm] else "approach" for arm in ARMS}
        self.arm_steps = dict.fromkeys(ARMS, 0)
        self._own_grasp = dict.fromkeys(ARMS, False)  # whatever is held now, someone else grasped it
        return "meet" if all(held.values()) else "pick"

    def _object(self, env: AlohaSimEnv, arm: str) -> tuple[np.ndarray, np.ndarray]:
        pose = env.object_pose(0 if arm == "right" else 1)
        return pose[:3], object_axis(pose[3:])

    def _pick_goal(self, env: AlohaSimEnv, arm: str, held: bool) -> ArmGoal:
        p = self.plan_cfg
        centre, axis = self._object(env, arm)
        along, dz = p.peg_grasp if arm == "right" else p.socket_grasp
        flat = np.array([axis[0], axis[1], 0.0])
        flat /= max(float(np.linalg.norm(flat)), 1e-9)
        if flat[0] * (1 if arm == "left" else -1) < 0:
            flat = -flat  # approach direction points away from the arm's base side
        grasp = centre + along * (-flat if arm == "right" else flat) + np.array([0.0, 0.0, dz])
        rot = heading_rotation(flat, p.pick_pitch)
        tcp = self.tcp(env, arm).pos
        phase = self.arm_phase[arm]
        self.arm_steps[arm] += 1
        steps = self.arm_steps[arm]

        def go(new: str) -> None:
            self.arm_phase[arm] = new
            self.arm_steps[arm] = 0

        if phase == "approach":
            above = grasp + np.array([0.0, 0.0, p.above])
            target = above
            if tcp[2] < centre[2] + 0.04 and np.linalg.norm((tcp - grasp)[:2]) > 0.03:
                target = np.array([tcp[0], tcp[1], above[2]])
            if np.linalg.norm(tcp - above) < 0.015 and steps > 3:
                go("descend")
            return ArmGoal(Pose(target, rot), GRIPPER_OPEN)
        if phase == "descend":
            if np.linalg.norm(tcp - grasp) < 0.008 or steps > 40:
                go("close")
            return ArmGoal(Pose(grasp, rot), GRIPPER_OPEN, 0.5)
        if phase == "close":
            if steps >= p.close_steps:
                self._own_grasp[arm] = held
                go("lifted" if held else "approach")
            return self.hold(arm, GRIPPER_CLOSED)
        # lifted: raise the object and wait for the other arm
        if not held:
            go("approach")
        lift = self.motion[arm].setpoint
        return ArmGoal(Pose(np.array([lift.pos[0], lift.pos[1], max(lift.pos[2], 0.15)]), lift.rot), GRIPPER_CLOSED)

    def plan(self, env: AlohaSimEnv) -> dict[str, ArmGoal]:
        p = self.plan_cfg
        held = self._held(env)
        phase = self.status.phase
        if phase in ("meet", "insert"):
            self._lost = 0 if all(held.values()) else self._lost + 1
            if self._lost >= p.lost_steps:
                self.arm_phase = {arm: "lifted" if held[arm] else "approach" for arm in ARMS}
                self.arm_steps = dict.fromkeys(ARMS, 0)
                self._depth = p.pre_insert
                self.set_phase("pick")
        if self.status.phase == "pick":
            goals = {arm: self._pick_goal(env, arm, held[arm]) for arm in ARMS}
            if all(self.arm_phase[a] == "lifted" and self.arm_steps[a] > 5 for a in ARMS):
                self.set_phase("meet")
            return goals
        return self._meet_and_insert(env)

    def _meet_and_insert(self, env: AlohaSimEnv) -> dict[str, ArmGoal]:
        p = self.plan_cfg
        socket_c, socket_x = self._object(env, "left")
        peg_c, peg_x = self._object(env, "right")
        if socket_x[0] < 0:
            socket_x = -socket_x
        if peg_x[0] < 0:
            peg_x = -peg_x
        # Left: bring the socket centre to the meeting point (moving the TCP by the measured socket error).
        left_tcp = self.tcp(env, "left")
        left_target = left_tcp.pos + (np.array(p.socket_meet) - socket_c)
        left_goal = ArmGoal(Pose(left_target, self.motion["left"].setpoint.rot), GRIPPER_CLOSED, 0.5)
        # Right: put the peg on the socket's axis at the current depth and turn it parallel to the socket: by the
        # plan's heading when the expert grasped the peg itself, by the peg's measured axis when it was handed a
        # grasp it did not make (a policy's grasp holds the peg at any angle).
        desired = socket_c + self._depth * socket_x
        error = desired - peg_c
        right_tcp = self.tcp(env, "right")
        if self._own_grasp["right"] or not p.align_handed_peg:
            rot = heading_rotation(-socket_x, p.pick_pitch)
        else:
            rot = turn_onto(right_tcp.rot, peg_x, socket_x)
        right_goal = ArmGoal(Pose(right_tcp.pos + error, rot), GRIPPER_CLOSED, 0.5)
        lateral = error - np.dot(error, socket_x) * socket_x
        socket_error = float(np.linalg.norm(np.array(p.socket_meet) - socket_c))
        if self.status.phase == "meet":
            if np.linalg.norm(error) < p.align_tolerance and socket_error < 0.02 and self.status.phase_steps > 5:
                self.set_phase("insert")
        else:
            t = env.task
            seated = t.contacts.any_touching(t.peg, t.pin)  # type: ignore[attr-defined]
            along = abs(float(np.dot(error, socket_x)))
            if not seated and float(np.linalg.norm(lateral)) < p.align_tolerance and along < 0.005:
                self._depth = max(p.inserted, self._depth - p.insert_step)
        return {"left": left_goal, "right": right_goal}
