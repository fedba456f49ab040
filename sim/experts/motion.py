"""Speed-limited end-effector motion for one arm: moves a setpoint toward a waypoint and solves IK for it."""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from sim.kinematics import ArmKinematics, IKResult, Pose, rotation_error


@dataclass(frozen=True)
class MotionLimits:
    """Per-control-step limits on setpoint motion (50 Hz: 0.012 m/step = 0.6 m/s)."""

    linear_step: float = 0.012
    angular_step: float = 0.08

    def __post_init__(self) -> None:
        if self.linear_step <= 0 or self.angular_step <= 0:
            raise ValueError(f"invalid MotionLimits {self}")


def _rotate_towards(current: np.ndarray, target: np.ndarray, max_angle: float) -> np.ndarray:
    vec = rotation_error(target, current)
    angle = float(np.linalg.norm(vec))
    if angle <= max_angle:
        return target.copy()
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, current.reshape(-1))
    mujoco.mju_quatIntegrate(quat, np.ascontiguousarray(current.T @ vec), max_angle / angle)
    rot = np.empty(9)
    mujoco.mju_quat2Mat(rot, quat)
    return rot.reshape(3, 3)


class ArmMotion:
    """Keeps a pose setpoint and joint targets for one arm; the setpoint chases waypoints under `MotionLimits`."""

    def __init__(self, kin: ArmKinematics, arm: str, limits: MotionLimits | None = None) -> None:
        self.kin = kin
        self.arm = arm
        self.limits = limits or MotionLimits()
        self.setpoint = Pose(np.zeros(3), np.eye(3))
        self.q = np.zeros(6)
        self.last: IKResult | None = None

    def sync(self, data: mujoco.MjData) -> None:
        """Restart from the arm's measured state (used on reset and on takeover)."""
        self.q = data.qpos[self.kin.qpos_idx[self.arm]].copy()
        self.setpoint = self.kin.tcp_pose(data, self.arm)
        self.last = None

    def step_towards(self, waypoint: Pose, speed_scale: float = 1.0) -> np.ndarray:
        """Advance the setpoint one control step toward `waypoint` and return the arm's joint targets (6,)."""
        delta = waypoint.pos - self.setpoint.pos
        dist = float(np.linalg.norm(delta))
        max_lin = self.limits.linear_step * speed_scale
        pos = waypoint.pos.copy() if dist <= max_lin else self.setpoint.pos + delta * (max_lin / dist)
        rot = _rotate_towards(self.setpoint.rot, waypoint.rot, self.limits.angular_step * speed_scale)
        target = Pose(pos, rot)
        result = self.kin.solve(self.arm, target, self.q)
        self.last = result
        self.q = result.q
        if result.reached:
            self.setpoint = target
        else:
            # Out of reach: keep the setpoint where the arm actually can be, so it never runs away.
            self.setpoint = Pose(self.kin.forward(self.arm, result.q).pos, rot)
        return self.q.copy()

    def distance_to(self, data: mujoco.MjData, waypoint: Pose) -> float:
        """Measured TCP distance (m) to a waypoint's position."""
        return float(np.linalg.norm(self.kin.tcp_pose(data, self.arm).pos - waypoint.pos))
