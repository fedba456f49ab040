"""Closed-loop expert for transfer_cube: right arm picks the cube, carries it to the middle, left arm takes it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.constants import GRIPPER_CLOSED, GRIPPER_OPEN, START_ARM_QPOS
from sim.env import AlohaSimEnv
from sim.experts.base import ArmGoal, ClosedLoopExpert, grasp_rotation
from sim.kinematics import Pose


@dataclass(frozen=True)
class TransferCubePlan:
    """Geometry of the hand-over (metres / radians, TCP positions relative to the cube centre)."""

    pick_pitch: float = np.deg2rad(60)
    above: float = 0.08
    grasp_dz: float = 0.005
    meet: tuple[float, float, float] = (0.05, 0.5, 0.22)
    left_pre_dx: float = -0.12
    left_grasp: tuple[float, float, float] = (-0.02, 0.0, 0.0)
    close_steps: int = 12
    release_steps: int = 12
    lost_steps: int = 6


# Left gripper for the hand-over: approach +x, fingers closing vertically.
_LEFT_HANDOVER_ROT = np.column_stack([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])


class TransferCubeExpert(ClosedLoopExpert):
    """Phases: approach → descend → close → lift → reach → grab → release → retreat (re-inferred on takeover)."""

    def __init__(self, plan: TransferCubePlan | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.plan_cfg = plan or TransferCubePlan()
        self._lost = 0

    def _holds(self, env: AlohaSimEnv) -> tuple[bool, bool, bool]:
        t = env.task
        box = t.box  # type: ignore[attr-defined]
        return t.holds("left", box), t.holds("right", box), t.on_table(box)

    def arm_busy(self, env: AlohaSimEnv, arm: str) -> bool:
        return env.task.touches(arm, env.task.box)  # type: ignore[attr-defined]

    def infer_phase(self, env: AlohaSimEnv) -> str:
        self._lost = 0
        left, right, table = self._holds(env)
        if left and not table:
            return "release"
        if right:
            return "lift"
        return "approach"

    def _park(self, arm: str) -> Pose:
        q = START_ARM_QPOS[:6] if arm == "left" else START_ARM_QPOS[8:14]
        return self.kin.forward(arm, q)

    def plan(self, env: AlohaSimEnv) -> dict[str, ArmGoal]:
        p = self.plan_cfg
        box = env.object_pose(0)[:3]
        left_holds, right_holds, on_table = self._holds(env)
        phase, steps = self.status.phase, self.status.phase_steps
        base_r = self.kin.base["right"]
        pick_rot = grasp_rotation(base_r, box, p.pick_pitch)
        meet = np.array(p.meet)
        right_tcp = self.tcp(env, "right").pos

        # Closed-loop checks: fall back to picking whenever the cube is no longer where the phase assumes.
        if phase in ("lift", "reach", "grab") and not right_holds and not left_holds:
            self._lost += 1
            if self._lost >= p.lost_steps:
                self.set_phase("approach")
        elif phase in ("release", "retreat") and on_table:
            self.set_phase("approach")
        else:
            self._lost = 0
        phase, steps = self.status.phase, self.status.phase_steps

        left_park = ArmGoal(Pose(self._park("left").pos, self._park("left").rot), GRIPPER_OPEN)
        left_pre = ArmGoal(Pose(box + np.array([p.left_pre_dx, 0.0, 0.0]), _LEFT_HANDOVER_ROT), GRIPPER_OPEN)

        if phase == "approach":
            above = box + np.array([0.0, 0.0, p.above])
            target = above
            if right_tcp[2] < box[2] + 0.04 and np.linalg.norm((right_tcp - box)[:2]) > 0.03:
                target = np.array([right_tcp[0], right_tcp[1], box[2] + p.above])  # clear the cube first
            goal_r = ArmGoal(Pose(target, pick_rot), GRIPPER_OPEN)
            if np.linalg.norm(right_tcp - above) < 0.015 and steps > 3:
                self.set_phase("descend")
            return {"left": left_park, "right": goal_r}
        if phase == "descend":
            grasp = box + np.array([0.0, 0.0, p.grasp_dz])
            if np.linalg.norm(right_tcp - grasp) < 0.008 or steps > 40:
                self.set_phase("close")
            return {"left": left_park, "right": ArmGoal(Pose(grasp, pick_rot), GRIPPER_OPEN, 0.5)}
        if phase == "close":
            if steps >= p.close_steps:
                self.set_phase("lift" if right_holds else "approach")
            return {"left": left_park, "right": self.hold("right", GRIPPER_CLOSED)}
        meet_rot = grasp_rotation(base_r, meet, p.pick_pitch)
        carry = ArmGoal(Pose(meet, meet_rot), GRIPPER_CLOSED)
        if phase == "lift":
            if np.linalg.norm(right_tcp - meet) < 0.015 and steps > 5:
                self.set_phase("reach")
            return {"left": left_pre, "right": carry}
        if phase == "reach":
            grasp_l = box + np.array(p.left_grasp)
            left_tcp = self.tcp(env, "left").pos
            if np.linalg.norm(left_tcp - grasp_l) < 0.008 or steps > 50:
                self.set_phase("grab")
            return {"left": ArmGoal(Pose(grasp_l, _LEFT_HANDOVER_ROT), GRIPPER_OPEN, 0.5), "right": carry}
        if phase == "grab":
            if steps >= p.close_steps:
                self.set_phase("release" if left_holds else "reach")
            return {"left": self.hold("left", GRIPPER_CLOSED), "right": carry}
        if phase == "release":
            if steps >= p.release_steps:
                self.set_phase("retreat")
            return {"left": self.hold("left", GRIPPER_CLOSED), "right": self.hold("right", GRIPPER_OPEN)}
        # retreat: the right arm backs off to the side while the left keeps the cube
        away = ArmGoal(Pose(np.array([0.25, 0.5, 0.3]), grasp_rotation(base_r, np.zeros(3), 0.3)), GRIPPER_OPEN)
        return {"left": self.hold("left", GRIPPER_CLOSED), "right": away}
