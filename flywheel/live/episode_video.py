"""Pictures of stored episodes that recorded no camera images: each frame re-rendered from its stored state.

The state vector (`sim.state_layout`) holds the joint positions (grippers normalized) and the objects' poses, which
fix the scene's geometry; `pose_from_state` writes them into MuJoCo's qpos and runs the kinematics, and a
`CameraRenderer` draws the cameras. Rendered episodes are cached on disk (a JPEG per frame) as one `.npz` per
episode and camera set, written atomically (temporary file, fsync, rename) and keyed by the episode file's checksum,
so a rewritten file is never shown stale.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import tempfile
from pathlib import Path

import mujoco
import numpy as np

from flywheel.live.errors import LiveSessionError
from flywheel.live.video import encode_jpeg

VIEW_CAMERAS = ("top", "left_wrist", "right_wrist")  # what the episode views re-render
_RIGHT_FINGERS = (7, 15)  # each arm's second finger mirrors its first (qpos 6 and 14)


def pose_from_state(env: object, state: np.ndarray) -> None:
    """Put `env` (an `AlohaSimEnv`) in the configuration a stored state vector describes (positions only)."""
    from sim.constants import unnormalize_gripper_position
    from sim.env import _GRIPPER_OBS_IDX, _JOINT_QPOS_IDX, state_layout

    model, data = env.model, env.data  # type: ignore[attr-defined]
    layout = state_layout(env.config.task)  # type: ignore[attr-defined]
    qpos = np.asarray(state[layout["qpos"]], dtype=np.float64).copy()
    qpos[_GRIPPER_OBS_IDX] = unnormalize_gripper_position(qpos[_GRIPPER_OBS_IDX])
    data.qpos[_JOINT_QPOS_IDX] = qpos
    for first, second in zip((6, 14), _RIGHT_FINGERS, strict=True):
        data.qpos[second] = -data.qpos[first]
    for i, adr in enumerate(env.task.object_qpos_adr):  # type: ignore[attr-defined]
        name = env.task.objects[i].name  # type: ignore[attr-defined]
        data.qpos[adr : adr + 7] = state[layout[f"{name}_pose"]]
    data.qvel[:] = 0
    mujoco.mj_forward(model, data)


def render_states(
    task: str, states: np.ndarray, cameras: tuple[str, ...], image_size: tuple[int, int], quality: int = 85
) -> dict[str, list[bytes]]:
    """camera → one JPEG per stored state, re-rendered (operator lighting)."""
    from sim import make_env, state_layout
    from sim.render import CameraRenderer

    expected = sum(s.stop - s.start for s in state_layout(task).values())
    if states.ndim != 2 or states.shape[1] != expected:
        raise LiveSessionError(
            f"cannot re-render: the stored states have {states.shape[-1]} values, {task} states have {expected}"
        )
    env = make_env(task)
    try:
        renderer = CameraRenderer(env.model, cameras, *image_size, lighting="operator")
        try:
            out: dict[str, list[bytes]] = {cam: [] for cam in cameras}
            for state in states:
                pose_from_state(env, state)
                for cam, image in renderer.render(env.data).items():
                    out[cam].append(encode_jpeg(image, quality))
            return out
        finally:
            renderer.close()
    finally:
        env.close()


def cache_path(
    cache_dir: Path, episode_id: int, checksum: str, cameras: tuple[str, ...], size: tuple[int, int]
) -> Path:
    key = hashlib.sha256(f"{checksum}|{','.join(cameras)}|{size[0]}x{size[1]}".encode()).hexdigest()[:16]
    return cache_dir / f"episode-{episode_id}-{key}.npz"


def _pack(frames: dict[str, list[bytes]]) -> dict[str, np.ndarray]:
    arrays = {}
    for cam, jpegs in frames.items():
        arrays[f"{cam}.jpeg"] = np.frombuffer(b"".join(jpegs), dtype=np.uint8)
        arrays[f"{cam}.offsets"] = np.cumsum([0, *(len(j) for j in jpegs)], dtype=np.int64)
    return arrays


def _unpack(arrays: np.lib.npyio.NpzFile, cameras: tuple[str, ...]) -> dict[str, list[bytes]]:
    out = {}
    for cam in cameras:
        data, offsets = arrays[f"{cam}.jpeg"].tobytes(), arrays[f"{cam}.offsets"]
        out[cam] = [data[a:b] for a, b in itertools.pairwise(offsets)]
    return out


def rendered_episode(
    cache_dir: Path,
    episode_id: int,
    checksum: str,
    task: str,
    states: np.ndarray,
    cameras: tuple[str, ...] = VIEW_CAMERAS,
    image_size: tuple[int, int] = (240, 320),
) -> dict[str, list[bytes]]:
    """camera → one JPEG per frame: from the disk cache, or re-rendered now and cached (atomically)."""
    path = cache_path(cache_dir, episode_id, checksum, cameras, image_size)
    if path.is_file():
        try:
            with np.load(path) as cached:
                frames = _unpack(cached, cameras)
            if all(len(j) == len(states) for j in frames.values()):
                return frames
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache file: render again and replace it
    frames = render_states(task, states, cameras, image_size)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=cache_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            np.savez(out, **_pack(frames))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return frames
