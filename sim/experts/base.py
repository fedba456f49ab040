"""Shared machinery of the closed-loop scripted experts: per-arm motion, phase bookkeeping, status."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sim.constants import ARMS, GRIPPER_OPEN, START_ARM_QPOS
from sim.env import AlohaSimEnv
from sim.experts.motion import ArmMotion, MotionLimits
from sim.kinematics import ArmKinematics, IKConfig, Pose

UP = np.array([0.0, 0.0, 1.0])


def grasp_rotation(base: np.ndarray, point: np.ndarray, pitch: float) -> np.ndarray:
    """Gripper rotation that approaches `point` from the arm's `base`, tilted `pitch` rad below horizontal.

    Columns: approach axis (gripper x), closing axis (gripper y, kept horizontal), gripper z.
    """
    return heading_rotation(np.asarray(point) - np.asarray(base), pitch)


def heading_rotation(heading: np.ndarray, pitch: float) -> np.ndarray:
    """Gripper rotation whose approach axis points along the horizontal `heading`, tilted `pitch` rad down."""
    h = np.array([heading[0], heading[1], 0.0])
    h /= max(float(np.linalg.norm(h)), 1e-9)
    approach = np.cos(pitch) * h - np.sin(pitch) * UP
    closing = np.cross(UP, h)
    return np.column_stack([approach, closing, np.cross(approach, closing)])


@dataclass
class ExpertStatus:
    """What the expert is doing; `unreachable` names arms whose last IK target was out of reach."""

    phase: str = "start"
    phase_steps: int = 0
    unreachable: tuple[str, ...] = ()
    ik_errors: dict[str, float] = field(default_factory=dict)

    def as_info(self) -> dict[str, Any]:
        return {"phase": self.phase, "unreachable": list(self.unreachable), "ik_errors": dict(self.ik_errors)}


@dataclass(frozen=True)
class ArmGoal:
    """Where one arm should go this step and what its gripper should do (1 open, 0 closed)."""

    pose: Pose
    gripper: float
    speed: float = 1.0


class ClosedLoopExpert(ABC):
    """Reads the current physics state every step, picks a phase, and reaches end-effector goals with IK.

    `reset(env)` may be called at any time (episode start or mid-episode takeover): the phase is re-inferred
    from the world, so the expert finishes the task from wherever it is handed control.
    """

    def __init__(self, limits: MotionLimits | None = None, ik: IKConfig | None = None) -> None:
        self._limits = limits or MotionLimits()
        self._ik = ik or IKConfig()
        self._kin: ArmKinematics | None = None
        self._model_id: int | None = None
        self.motion: dict[str, ArmMotion] = {}
        self.status = ExpertStatus()
        self._recovering: set[str] = set()
        self._settle: dict[str, int] = {}

    def reset(self, env: AlohaSimEnv) -> None:
        if self._model_id != id(env.model):
            self._kin = ArmKinematics(env.model, self._ik)
            self._model_id = id(env.model)
            self.motion = {arm: ArmMotion(self._kin, arm, self._limits) for arm in ARMS}
        for motion in self.motion.values():
            motion.sync(env.data)
        self.status = ExpertStatus(phase=self.infer_phase(env))
        # Arms left in odd configurations (e.g. by a bad policy) first return to the home posture in joint
        # space, so the IK starts from the usual branch; an arm holding an object is never sent home.
        self._settle = {}
        self._recovering = {
            arm
            for arm in ARMS
            if not self.arm_busy(env, arm)
            and float(np.max(np.abs(self.motion[arm].q - self._home_q(arm)))) > self.recover_threshold
        }

    def resync(self, env: AlohaSimEnv) -> None:
        """Re-anchor the arm setpoints on the measured state, keeping the phase (for shadow proposals)."""
        if self._kin is None or self._model_id != id(env.model):
            self.reset(env)
            return
        for motion in self.motion.values():
            motion.sync(env.data)

    @property
    def kin(self) -> ArmKinematics:
        if self._kin is None:
            raise RuntimeError("call expert.reset(env) before act()")
        return self._kin

    def set_phase(self, phase: str) -> None:
        if phase != self.status.phase:
            self.status.phase = phase
            self.status.phase_steps = 0

    recover_threshold: float = 0.35  # rad, max joint deviation from home that triggers a joint-space return
    recover_step: float = 0.05  # rad per control step

    def _home_q(self, arm: str) -> np.ndarray:
        return START_ARM_QPOS[:6] if arm == "left" else START_ARM_QPOS[8:14]

    def arm_busy(self, env: AlohaSimEnv, arm: str) -> bool:
        """True if `arm` holds a task object (then it must not be sent home)."""
        return False

    def _recover(self, env: AlohaSimEnv) -> np.ndarray:
        action = np.zeros(14)
        for i, arm in enumerate(ARMS):
            motion = self.motion[arm]
            if arm in self._recovering:
                home = self._home_q(arm)
                motion.q = motion.q + np.clip(home - motion.q, -self.recover_step, self.recover_step)
                measured = env.data.qpos[self.kin.qpos_idx[arm]]
                arrived = np.allclose(motion.q, home)
                self._settle[arm] = self._settle.get(arm, 0) + 1 if arrived else 0
                if arrived and (float(np.max(np.abs(measured - home))) < 0.1 or self._settle[arm] > 20):
                    self._recovering.discard(arm)
                    motion.sync(env.data)
                action[7 * i : 7 * i + 6] = motion.q
                action[7 * i + 6] = GRIPPER_OPEN
            else:
                action[7 * i : 7 * i + 6] = motion.step_towards(motion.setpoint)
                action[7 * i + 6] = float(env.data.ctrl[8 * i + 6] > 0.04)
        if not self._recovering:
            for motion in self.motion.values():
                motion.sync(env.data)
        self.status.phase_steps += 1
        return action

    def act(self, obs: dict[str, Any] | None, env: AlohaSimEnv) -> np.ndarray:
        """The 14-D joint-position action for the current state."""
        if self._kin is None:
            self.reset(env)
        if self._recovering:
            return self._recover(env)
        goals = self.plan(env)
        action = np.zeros(14)
        unreachable = []
        for i, arm in enumerate(ARMS):
            goal = goals[arm]
            action[7 * i : 7 * i + 6] = self.motion[arm].step_towards(goal.pose, goal.speed)
            action[7 * i + 6] = goal.gripper
            last = self.motion[arm].last
            if last is not None:
                self.status.ik_errors[arm] = last.position_error
                if not last.reached:
                    unreachable.append(arm)
        self.status.unreachable = tuple(unreachable)
        self.status.phase_steps += 1
        return action

    def tcp(self, env: AlohaSimEnv, arm: str) -> Pose:
        return self.kin.tcp_pose(env.data, arm)

    def hold(self, arm: str, gripper: float) -> ArmGoal:
        """Stay at the current setpoint."""
        return ArmGoal(self.motion[arm].setpoint, gripper)

    @abstractmethod
    def infer_phase(self, env: AlohaSimEnv) -> str:
        """The phase to (re)start from, judged from the current world state."""

    @abstractmethod
    def plan(self, env: AlohaSimEnv) -> dict[str, ArmGoal]:
        """Update the phase from the world and return each arm's goal for this step."""
