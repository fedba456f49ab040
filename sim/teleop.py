"""Human teleoperation: per-arm end-effector jogs (x/y/z, gripper) mapped to joint targets through the IK.

The console calls `jog` / `set_gripper` when a button is pressed and `act` once per simulation step; between
jogs the controller holds its joint targets, so the simulation can wait for the operator indefinitely.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from flywheel.vocab import ControllerKind
from sim.constants import ARMS, GRIPPER_CLOSED, GRIPPER_OPEN, normalize_gripper_position
from sim.env import AlohaSimEnv
from sim.experts.motion import ArmMotion, MotionLimits
from sim.kinematics import ArmKinematics, IKConfig, Pose


@dataclass(frozen=True)
class JogResult:
    """Outcome of one jog: the new TCP target and whether the IK can reach it (if not, the target is kept)."""

    arm: str
    target: np.ndarray
    reachable: bool
    position_error: float


class TeleopController:
    """End-effector jog teleop for both arms; `kind` is `human`."""

    kind = ControllerKind.HUMAN

    def __init__(self, max_jog: float = 0.05, limits: MotionLimits | None = None, ik: IKConfig | None = None):
        if max_jog <= 0:
            raise ValueError(f"max_jog must be > 0, got {max_jog}")
        self.max_jog = max_jog
        self._limits = limits or MotionLimits(linear_step=0.006)
        self._ik = ik or IKConfig()
        self._kin: ArmKinematics | None = None
        self._model_id: int | None = None
        self.motion: dict[str, ArmMotion] = {}
        self.targets: dict[str, Pose] = {}
        self.gripper: dict[str, float] = {}

    def reset(self, env: AlohaSimEnv) -> None:
        """Start from the arms' current pose (works at episode start and mid-episode)."""
        if self._model_id != id(env.model):
            self._kin = ArmKinematics(env.model, self._ik)
            self._model_id = id(env.model)
            self.motion = {arm: ArmMotion(self._kin, arm, self._limits) for arm in ARMS}
        for i, arm in enumerate(ARMS):
            self.motion[arm].sync(env.data)
            self.targets[arm] = self.motion[arm].setpoint
            finger = env.data.qpos[8 * i + 6]
            self.gripper[arm] = GRIPPER_OPEN if normalize_gripper_position(finger) > 0.5 else GRIPPER_CLOSED

    def _check_arm(self, arm: str) -> None:
        if arm not in ARMS:
            raise ValueError(f"unknown arm {arm!r}: use one of {', '.join(ARMS)}")
        if self._kin is None:
            raise RuntimeError("call teleop.reset(env) before jogging")

    def jog(self, arm: str, delta_xyz: np.ndarray | tuple[float, float, float]) -> JogResult:
        """Move `arm`'s TCP target by `delta_xyz` metres (world frame); unreachable targets are refused."""
        self._check_arm(arm)
        delta = np.asarray(delta_xyz, dtype=np.float64)
        if delta.shape != (3,) or not np.isfinite(delta).all():
            raise ValueError(f"jog delta must be 3 finite numbers, got {delta_xyz!r}")
        norm = float(np.linalg.norm(delta))
        if norm > self.max_jog:
            delta *= self.max_jog / norm
        current = self.targets[arm]
        wanted = Pose(current.pos + delta, current.rot)
        assert self._kin is not None
        result = self._kin.solve(arm, wanted, self.motion[arm].q)
        if result.reached:
            self.targets[arm] = wanted
        return JogResult(arm, self.targets[arm].pos.copy(), result.reached, result.position_error)

    def set_gripper(self, arm: str, open_: bool) -> None:
        self._check_arm(arm)
        self.gripper[arm] = GRIPPER_OPEN if open_ else GRIPPER_CLOSED

    def act(self, obs: dict[str, Any] | None, env: AlohaSimEnv) -> np.ndarray:
        if self._kin is None:
            self.reset(env)
        action = np.zeros(14)
        for i, arm in enumerate(ARMS):
            action[7 * i : 7 * i + 6] = self.motion[arm].step_towards(self.targets[arm])
            action[7 * i + 6] = self.gripper[arm]
        return action
