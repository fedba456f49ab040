"""Arm kinematics: tool-centre-point poses and damped-least-squares differential IK on MuJoCo Jacobians.

IK runs on a private scratch `MjData`, so solving never disturbs the simulated state.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from sim.constants import ARM_JOINTS, ARMS

# Tool centre point in the gripper_link frame: between the finger pads (x is the approach axis, y the axis the
# fingers close along, z the gripper's "up").
TCP_LOCAL = np.array([0.135, 0.0, 0.0])


@dataclass(frozen=True)
class IKConfig:
    """Damped least squares settings. Reached = both errors under their tolerances."""

    damping: float = 0.05
    max_iterations: int = 25
    max_joint_step: float = 0.25  # rad per iteration
    rotation_weight: float = 0.3  # metres per radian in the stacked error
    position_tolerance: float = 0.004
    rotation_tolerance: float = 0.06

    def __post_init__(self) -> None:
        if self.damping <= 0 or self.max_iterations < 1 or self.max_joint_step <= 0 or self.rotation_weight < 0:
            raise ValueError(f"invalid IKConfig {self}")


@dataclass(frozen=True)
class IKResult:
    """Joint targets for one arm and how close they get. `reached` False means the pose is out of reach."""

    q: np.ndarray  # (6,) finite joint positions within the joint limits
    position_error: float
    rotation_error: float
    reached: bool


@dataclass(frozen=True)
class Pose:
    """A world pose: position (3,) and rotation matrix (3, 3)."""

    pos: np.ndarray
    rot: np.ndarray


def rotation_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Axis-angle vector (world frame) that rotates `current` onto `target`."""
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, (target @ current.T).reshape(-1))
    vel = np.empty(3)
    mujoco.mju_quat2Vel(vel, quat, 1.0)
    return vel


class ArmKinematics:
    """Forward kinematics and IK for the two ViperX arms of a model."""

    def __init__(self, model: mujoco.MjModel, config: IKConfig | None = None) -> None:
        self.model = model
        self.config = config or IKConfig()
        self._scratch = mujoco.MjData(model)
        self.qpos_idx: dict[str, np.ndarray] = {}
        self.dof_idx: dict[str, np.ndarray] = {}
        self.limits: dict[str, np.ndarray] = {}
        self.body: dict[str, int] = {}
        self.base: dict[str, np.ndarray] = {}
        for arm in ARMS:
            jids = [model.joint(f"vx300s_{arm}/{j}").id for j in ARM_JOINTS]
            self.qpos_idx[arm] = np.array([model.jnt_qposadr[j] for j in jids])
            self.dof_idx[arm] = np.array([model.jnt_dofadr[j] for j in jids])
            self.limits[arm] = np.array([model.jnt_range[j] for j in jids])
            self.body[arm] = int(model.body(f"vx300s_{arm}/gripper_link").id)
            self.base[arm] = model.body(f"vx300s_{arm}").pos.copy()

    def tcp_pose(self, data: mujoco.MjData, arm: str) -> Pose:
        """Current TCP pose of `arm` in `data` (uses its already computed kinematics)."""
        b = self.body[arm]
        rot = data.xmat[b].reshape(3, 3).copy()
        return Pose(data.xpos[b] + rot @ TCP_LOCAL, rot)

    def forward(self, arm: str, q: np.ndarray) -> Pose:
        """TCP pose of `arm` at joint positions `q` (6,)."""
        d = self._scratch
        d.qpos[self.qpos_idx[arm]] = q
        mujoco.mj_kinematics(self.model, d)
        return self.tcp_pose(d, arm)

    def solve(self, arm: str, target: Pose, q_init: np.ndarray) -> IKResult:
        """Iterate DLS from `q_init` toward `target`; never returns non-finite joints."""
        cfg = self.config
        m, d = self.model, self._scratch
        lo, hi = self.limits[arm][:, 0], self.limits[arm][:, 1]
        q = np.clip(np.asarray(q_init, dtype=np.float64), lo, hi)
        jacp = np.zeros((3, m.nv))
        jacr = np.zeros((3, m.nv))
        dofs = self.dof_idx[arm]
        err = np.zeros(6)
        pos_err = rot_err = np.inf
        for _ in range(cfg.max_iterations):
            d.qpos[self.qpos_idx[arm]] = q
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            pose = self.tcp_pose(d, arm)
            err[:3] = target.pos - pose.pos
            err[3:] = rotation_error(target.rot, pose.rot)
            pos_err = float(np.linalg.norm(err[:3]))
            rot_err = float(np.linalg.norm(err[3:]))
            if pos_err < cfg.position_tolerance * 0.25 and rot_err < cfg.rotation_tolerance * 0.25:
                break
            mujoco.mj_jac(m, d, jacp, jacr, pose.pos, self.body[arm])
            jac = np.vstack([jacp[:, dofs], cfg.rotation_weight * jacr[:, dofs]])
            e = np.concatenate([err[:3], cfg.rotation_weight * err[3:]])
            dq = jac.T @ np.linalg.solve(jac @ jac.T + cfg.damping**2 * np.eye(6), e)
            if not np.isfinite(dq).all():
                break
            norm = float(np.max(np.abs(dq)))
            if norm > cfg.max_joint_step:
                dq *= cfg.max_joint_step / norm
            q = np.clip(q + dq, lo, hi)
        if not np.isfinite(q).all():
            q = np.clip(np.asarray(q_init, dtype=np.float64), lo, hi)
        reached = pos_err < cfg.position_tolerance and rot_err < cfg.rotation_tolerance
        return IKResult(q=q, position_error=pos_err, rotation_error=rot_err, reached=reached)
