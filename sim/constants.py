"""Fixed constants of the bimanual ViperX (ALOHA) simulation, matching gym-aloha 0.1.5."""

from __future__ import annotations

from pathlib import Path

import gym_aloha
import numpy as np

ASSETS_DIR: Path = Path(gym_aloha.__file__).parent / "assets"

CONTROL_DT: float = 0.02  # 50 Hz control, as gym-aloha's DT
PHYSICS_DT: float = 0.002  # the MJCF default timestep of the gym-aloha scenes
N_SUBSTEPS: int = round(CONTROL_DT / PHYSICS_DT)  # 10, what dm_control derives for gym-aloha
ACTION_DIM: int = 14
ARMS: tuple[str, str] = ("left", "right")

# Joint order of actions and of the qpos/qvel part of the state (gym-aloha's JOINTS).
JOINT_NAMES: tuple[str, ...] = tuple(
    f"{side}_arm_{j}"
    for side in ARMS
    for j in ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")
)
ARM_JOINTS: tuple[str, ...] = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")

# Raw MuJoCo qpos of both arms at reset (6 arm joints + 2 finger slides per arm).
START_ARM_QPOS: np.ndarray = np.array([0, -0.96, 1.16, 0, -0.3, 0, 0.02239, -0.02239] * 2, dtype=np.float64)

# Finger slide positions that the normalized gripper value 0 (closed) / 1 (open) maps to.
GRIPPER_POSITION_CLOSE: float = 0.01844
GRIPPER_POSITION_OPEN: float = 0.05800
GRIPPER_OPEN: float = 1.0
GRIPPER_CLOSED: float = 0.0


def normalize_gripper_position(x: np.ndarray | float) -> np.ndarray | float:
    """Finger slide position (m) → normalized gripper value (0 closed, 1 open)."""
    return (x - GRIPPER_POSITION_CLOSE) / (GRIPPER_POSITION_OPEN - GRIPPER_POSITION_CLOSE)


def unnormalize_gripper_position(x: np.ndarray | float) -> np.ndarray | float:
    """Normalized gripper value → finger slide position (m)."""
    return x * (GRIPPER_POSITION_OPEN - GRIPPER_POSITION_CLOSE) + GRIPPER_POSITION_CLOSE


def normalize_gripper_velocity(x: np.ndarray | float) -> np.ndarray | float:
    """Finger slide velocity (m/s) → normalized gripper velocity."""
    return x / (GRIPPER_POSITION_OPEN - GRIPPER_POSITION_CLOSE)


def home_action() -> np.ndarray:
    """The 14-D joint-position action that holds the reset pose (grippers as at reset)."""
    arm = START_ARM_QPOS[:6]
    grip = float(normalize_gripper_position(START_ARM_QPOS[6]))
    return np.concatenate([arm, [grip], arm, [grip]]).astype(np.float64)
