"""The bimanual ViperX gymnasium env on raw MuJoCo bindings (gym-aloha's scenes and joint-space semantics).

Action (14,): [left arm joints (6), left gripper (1, normalized 0 closed .. 1 open), right arm (6), right gripper].
Arm values are absolute joint-position targets and are NOT limited to [-1, 1] (DESIGN §8); MuJoCo clamps them to
the actuators' ctrlrange. Each step holds the targets for `N_SUBSTEPS` physics steps of 2 ms (50 Hz control), with
dm_control's stepping order, so mjData (contacts, body poses) is in sync with the new qpos when observed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import mujoco
import numpy as np

from flywheel.vocab import DEFAULT_CAMERA, DEFAULT_IMAGE_SIZE
from sim.constants import (
    ACTION_DIM,
    N_SUBSTEPS,
    START_ARM_QPOS,
    normalize_gripper_position,
    normalize_gripper_velocity,
    unnormalize_gripper_position,
)
from sim.errors import InvalidActionError
from sim.render import CameraRenderer
from sim.scene import load_model
from sim.tasks import Task, task_class

ObsMode = Literal["state", "pixels"]

# Raw qpos/qvel indices of the 14 observed joints: 6 arm joints + the left finger slide of each arm.
_JOINT_QPOS_IDX = np.array([0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14])
_GRIPPER_OBS_IDX = np.array([6, 13])


PROPRIOCEPTION = ("qpos", "qvel")
"""The state entries a real robot measures itself (joint positions and velocities); every other entry is an object
pose read from the physics, which only the simulation has."""


_POSE_SUFFIX = "_pose"
POSE_COMPONENTS = ("x", "y", "z", "qw", "qx", "qy", "qz")
"""An object pose's seven entries in `state_layout`: position, then orientation quaternion (w first)."""


def object_pose_key(name: str) -> str:
    """The `state_layout` key of object `name`'s pose slice."""
    return f"{name}{_POSE_SUFFIX}"


def posed_object_name(key: str) -> str | None:
    """The object whose pose `key` names in `state_layout`, or None for a key that is not an object's pose."""
    return key[: -len(_POSE_SUFFIX)] if key.endswith(_POSE_SUFFIX) else None


def state_layout(task: str) -> dict[str, slice]:
    """Named slices of the float32 `obs["state"]` vector for `task`.

    qpos (0:14): joint positions in action order, grippers normalized (0 closed, 1 open) like gym-aloha;
    qvel (14:28): joint velocities, gripper velocities normalized the same way;
    then per object a pose [x, y, z, qw, qx, qy, qz] in world coordinates (transfer_cube: box;
    insertion: peg, then socket).
    """
    layout = {"qpos": slice(0, 14), "qvel": slice(14, 28)}
    start = 28
    for obj in task_class(task).objects:
        layout[object_pose_key(obj.name)] = slice(start, start + 7)
        start += 7
    return layout


def object_xy_index(task: str) -> np.ndarray:
    """Indices into the state vector of every object's (x, y), in `state_layout` order (the positions a camera
    policy must find in its images)."""
    return np.array(
        [i for name, s in state_layout(task).items() if name not in PROPRIOCEPTION for i in (s.start, s.start + 1)]
    )


OBJECT_XY_BOUND_M = 0.3
"""How far (metres, in x or y) an object may be from its spawn box's centre before `object_xy_targets` counts it as
gone from the workspace: knocked off the table or flung by a bad contact, about the edge of the `table` camera's
view. Every task's objects stay within it while the task is done."""


def object_xy_targets(task: str, states: np.ndarray) -> np.ndarray:
    """Every frame's objects' (x, y) in `object_xy_index` order, standardised by the task's spawn boxes (centre,
    and the standard deviation of a uniform draw from the box), so the targets mean the same in every dataset;
    NaN where the object lies more than `OBJECT_XY_BOUND_M` from its box's centre. (frames, 2 * objects) float32."""
    objects = task_class(task).objects
    centre = np.array([np.mean(r) for o in objects for r in (o.x_range, o.y_range)])
    spread = np.array([(r[1] - r[0]) / np.sqrt(12.0) for o in objects for r in (o.x_range, o.y_range)])
    offset = states[:, object_xy_index(task)] - centre
    gone = (np.abs(offset).reshape(len(states), -1, 2) > OBJECT_XY_BOUND_M).any(axis=-1)
    return np.where(np.repeat(gone, 2, axis=-1), np.nan, offset / spread).astype(np.float32)


@dataclass(frozen=True)
class EnvConfig:
    """Validated settings of one env instance. `image_size` is (height, width)."""

    task: str
    obs_mode: ObsMode = "state"
    cameras: tuple[str, ...] = (DEFAULT_CAMERA,)
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE
    max_steps: int = 400
    success_hold_steps: int = 10
    terminate_on_success: bool = True
    render_effects: bool = False

    def __post_init__(self) -> None:
        task_class(self.task)  # raises UnknownTaskError with the list of tasks
        if self.obs_mode not in ("state", "pixels"):
            raise ValueError(f"obs_mode must be 'state' or 'pixels', got {self.obs_mode!r}")
        if self.obs_mode == "pixels" and not self.cameras:
            raise ValueError("pixels mode needs at least one camera")
        h, w = self.image_size
        if h < 8 or w < 8:
            raise ValueError(f"image_size (height, width) must be at least 8x8, got {self.image_size}")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.success_hold_steps < 1:
            raise ValueError(f"success_hold_steps must be >= 1, got {self.success_hold_steps}")


class AlohaSimEnv(gym.Env):
    """gymnasium.Env for one ALOHA task; see the module docstring for action semantics.

    `info["is_success"]` is True once `Task.complete()` has held for `success_hold_steps` consecutive steps;
    `info["stage"]` is gym-aloha's stage reward, which is also the step reward.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(self, config: EnvConfig, renderer: CameraRenderer | None = None) -> None:
        super().__init__()
        self.config = config
        cls = task_class(config.task)
        self.model = load_model(cls.xml_file)
        self.data = mujoco.MjData(self.model)
        self.task: Task = cls(self.model)
        self.layout = state_layout(config.task)
        self.state_dim = max(s.stop for s in self.layout.values())
        self.step_count = 0
        self._hold = 0
        self._renderer: CameraRenderer | None = None
        self._owns_renderer = renderer is None
        if config.obs_mode == "pixels":
            h, w = config.image_size
            self._renderer = renderer or CameraRenderer(self.model, config.cameras, h, w, config.render_effects)

        lo = np.empty(ACTION_DIM, dtype=np.float32)
        hi = np.empty(ACTION_DIM, dtype=np.float32)
        for arm, offset in ((0, 0), (1, 7)):
            rng = self.model.actuator_ctrlrange[arm * 8 : arm * 8 + 6]
            lo[offset : offset + 6], hi[offset : offset + 6] = rng[:, 0], rng[:, 1]
            lo[offset + 6], hi[offset + 6] = 0.0, 1.0
        self.action_space = gym.spaces.Box(lo, hi, dtype=np.float32)
        spaces: dict[str, gym.Space] = {
            "state": gym.spaces.Box(-np.inf, np.inf, shape=(self.state_dim,), dtype=np.float32)
        }
        if self._renderer is not None:
            h, w = config.image_size
            spaces["images"] = gym.spaces.Dict(
                {c: gym.spaces.Box(0, 255, shape=(h, w, 3), dtype=np.uint8) for c in config.cameras}
            )
        self.observation_space = gym.spaces.Dict(spaces)
        self._ctrl = np.zeros(self.model.nu)

    # ------------------------------------------------------------------ gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        d.qpos[:16] = START_ARM_QPOS
        d.ctrl[:] = START_ARM_QPOS
        poses = self.task.sample_object_poses(self.np_random)
        for adr, pose in zip(self.task.object_qpos_adr, poses, strict=True):
            d.qpos[adr : adr + 7] = pose
        mujoco.mj_forward(m, d)
        self.task.update(d)
        self.step_count = 0
        self._hold = 0
        return self._observation(), {"is_success": False, "stage": self.task.reward()}

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (ACTION_DIM,):
            raise InvalidActionError(f"action must have shape ({ACTION_DIM},), got {a.shape}")
        if not np.isfinite(a).all():
            raise InvalidActionError(f"action contains NaN/inf at indices {np.flatnonzero(~np.isfinite(a)).tolist()}")
        m, d = self.model, self.data
        ctrl = self._ctrl
        for arm, offset in ((0, 0), (1, 7)):
            grip = unnormalize_gripper_position(a[offset + 6])
            ctrl[arm * 8 : arm * 8 + 6] = a[offset : offset + 6]
            ctrl[arm * 8 + 6] = grip
            ctrl[arm * 8 + 7] = -grip
        d.ctrl[:] = ctrl
        # dm_control's legacy stepping: finish the pending step, then re-sync position/velocity fields.
        mujoco.mj_step2(m, d)
        mujoco.mj_step(m, d, N_SUBSTEPS - 1)
        mujoco.mj_step1(m, d)
        self.step_count += 1
        self.task.update(d)
        reward = self.task.reward()
        self._hold = self._hold + 1 if self.task.complete() else 0
        success = self._hold >= self.config.success_hold_steps
        terminated = success and self.config.terminate_on_success
        truncated = self.step_count >= self.config.max_steps and not terminated
        info = {"is_success": success, "stage": reward}
        return self._observation(), float(reward), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        if self._renderer is None:
            return None
        return self._renderer.render(self.data)[self.config.cameras[0]]

    def sibling(self) -> AlohaSimEnv:
        """Another env of the same config that renders through this one's renderer (one GL context for all the
        lockstep lanes of a worker: llvmpipe renders about 10% slower when it switches between contexts).

        Use both from one thread and close siblings before their owner (a sibling never closes the renderer). The
        renderer draws the sibling's state with the owner's model: fine while envs of one config never change their
        models (no per-env colours, lights or cameras)."""
        return AlohaSimEnv(self.config, renderer=self._renderer)

    def close(self) -> None:
        if self._renderer is not None:
            if self._owns_renderer:
                self._renderer.close()
            self._renderer = None

    # ------------------------------------------------------------------ helpers
    def state_vector(self) -> np.ndarray:
        """The float32 state vector of the current physics state (layout: `state_layout`)."""
        d = self.data
        qpos = d.qpos[_JOINT_QPOS_IDX].copy()
        qvel = d.qvel[_JOINT_QPOS_IDX].copy()
        qpos[_GRIPPER_OBS_IDX] = normalize_gripper_position(qpos[_GRIPPER_OBS_IDX])
        qvel[_GRIPPER_OBS_IDX] = normalize_gripper_velocity(qvel[_GRIPPER_OBS_IDX])
        parts = [qpos, qvel]
        parts += [d.qpos[adr : adr + 7] for adr in self.task.object_qpos_adr]
        return np.concatenate(parts).astype(np.float32)

    def object_pose(self, index: int = 0) -> np.ndarray:
        """World pose [xyz, wxyz] of the task's `index`-th object, read from the physics."""
        adr = self.task.object_qpos_adr[index]
        return self.data.qpos[adr : adr + 7].copy()

    @property
    def task_success_streak(self) -> int:
        """Consecutive steps for which `Task.complete()` has held."""
        return self._hold

    def _observation(self) -> dict[str, Any]:
        obs: dict[str, Any] = {"state": self.state_vector()}
        if self._renderer is not None:
            obs["images"] = self._renderer.render(self.data)
        return obs


def make_env(
    task: str,
    obs_mode: ObsMode = "state",
    cameras: tuple[str, ...] = (DEFAULT_CAMERA,),
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    max_steps: int = 400,
    **kwargs: Any,
) -> AlohaSimEnv:
    """Build an env for `task` ("transfer_cube" | "insertion"); extra kwargs go to `EnvConfig`."""
    config = EnvConfig(
        task=task,
        obs_mode=obs_mode,
        cameras=tuple(cameras),
        image_size=tuple(image_size),  # type: ignore[arg-type]
        max_steps=max_steps,
        **kwargs,
    )
    return AlohaSimEnv(config)
