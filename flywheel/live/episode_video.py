"""Video of every stored episode: a JPEG per frame and camera, in one cached file the console's player plays.

Episodes that recorded camera images are encoded as they are. Episodes that recorded none (state mode) are
re-rendered from their stored state: the state vector (`sim.state_layout`) holds the joint positions (grippers
normalized) and the objects' poses, which fix the scene's geometry; `pose_from_state` writes them into MuJoCo's
qpos and runs the kinematics, and a `CameraRenderer` draws the cameras.

The cache file (`<home>/cache/episode-views/episode-<id>-<key>.fwv`) is what the console serves to the browser as
is: VIDEO_MAGIC, a uint32 header length, a JSON header (`frames`, `size` [height, width], `cameras`: [[name,
[bytes of each frame]]...]), then each camera's JPEGs in frame order. It is keyed by the episode file's checksum,
the cameras and the size (a rewritten episode is never shown stale) and written atomically (temporary file, fsync,
rename); a damaged file is rendered again and replaced.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from flywheel.live.errors import LiveSessionError
from flywheel.live.video import encode_jpeg
from flywheel.vocab import EpisodeFrames

VIEW_CAMERAS = ("top", "left_wrist", "right_wrist")  # what the episode views re-render
VIEW_SIZE = (240, 320)  # (height, width) of re-rendered pictures
JPEG_QUALITY = 85
VIDEO_MAGIC = b"FWV1"
VIDEO_NAME = re.compile(r"episode-\d+-[0-9a-f]{16}\.fwv")  # the only file names the console serves
_RIGHT_FINGERS = (7, 15)  # each arm's second finger mirrors its first (qpos 6 and 14)


def pose_from_state(env: object, state: np.ndarray) -> None:
    """Put `env` (an `AlohaSimEnv`) in the configuration a stored state vector describes (positions only)."""
    from sim.constants import unnormalize_gripper_position
    from sim.env import _GRIPPER_OBS_IDX, _JOINT_QPOS_IDX, object_pose_key, state_layout

    model, data = env.model, env.data  # type: ignore[attr-defined]
    layout = state_layout(env.config.task)  # type: ignore[attr-defined]
    qpos = np.asarray(state[layout["qpos"]], dtype=np.float64).copy()
    qpos[_GRIPPER_OBS_IDX] = unnormalize_gripper_position(qpos[_GRIPPER_OBS_IDX])
    data.qpos[_JOINT_QPOS_IDX] = qpos
    for first, second in zip((6, 14), _RIGHT_FINGERS, strict=True):
        data.qpos[second] = -data.qpos[first]
    for i, adr in enumerate(env.task.object_qpos_adr):  # type: ignore[attr-defined]
        name = env.task.objects[i].name  # type: ignore[attr-defined]
        data.qpos[adr : adr + 7] = state[layout[object_pose_key(name)]]
    data.qvel[:] = 0
    mujoco.mj_forward(model, data)


def render_states(
    task: str,
    states: np.ndarray,
    cameras: tuple[str, ...],
    image_size: tuple[int, int],
    quality: int = JPEG_QUALITY,
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


def views_dir(home: Path) -> Path:
    """Where the episode videos of the flywheel home `home` are cached."""
    return home / "cache" / "episode-views"


def cache_path(
    cache_dir: Path, episode_id: int, checksum: str, cameras: tuple[str, ...], size: tuple[int, int], source: str
) -> Path:
    key = f"{source}|{checksum}|{','.join(cameras)}|{size[0]}x{size[1]}"
    return cache_dir / f"episode-{episode_id}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.fwv"


def pack_video(frames: dict[str, list[bytes]], size: tuple[int, int]) -> bytes:
    """camera → JPEG per frame (all cameras the same number of frames) → the video file's bytes."""
    counts = {len(jpegs) for jpegs in frames.values()}
    if len(counts) != 1:
        raise LiveSessionError(f"every camera needs the same number of frames, got {sorted(counts)}")
    head = json.dumps(
        {
            "frames": counts.pop(),
            "size": list(size),
            "cameras": [[cam, [len(j) for j in jpegs]] for cam, jpegs in frames.items()],
        }
    ).encode()
    body = (j for jpegs in frames.values() for j in jpegs)
    return b"".join([VIDEO_MAGIC, struct.pack("<I", len(head)), head, *body])


def video_header(data: bytes, total: int | None = None) -> dict:
    """The header of a video file from its first bytes (all of them, or at least the header's with `total`, the
    file's length), checked against the file's length."""
    total = len(data) if total is None else total
    if data[:4] != VIDEO_MAGIC or len(data) < 8:
        raise LiveSessionError("not an episode video file")
    (size,) = struct.unpack("<I", data[4:8])
    try:
        header = json.loads(data[8 : 8 + size])
        body = sum(sum(lengths) for _, lengths in header["cameras"])
        frames = int(header["frames"])
    except (ValueError, KeyError, TypeError) as exc:
        raise LiveSessionError(f"damaged episode video header: {exc}") from exc
    if 8 + size + body != total or any(len(lengths) != frames for _, lengths in header["cameras"]):
        raise LiveSessionError("damaged episode video: its length does not match its header")
    header["body"] = 8 + size
    return header


def read_video_header(path: Path) -> dict:
    """The checked header of the video file at `path`, reading only the header."""
    with path.open("rb") as f:
        start = f.read(8)
        size = struct.unpack("<I", start[4:8])[0] if len(start) == 8 else 0
        return video_header(start + f.read(size), os.fstat(f.fileno()).st_size)


def unpack_video(data: bytes) -> dict[str, list[bytes]]:
    """The inverse of `pack_video` (tests and tools)."""
    header = video_header(data)
    at, out = header["body"], {}
    for cam, lengths in header["cameras"]:
        out[cam] = []
        for length in lengths:
            out[cam].append(data[at : at + length])
            at += length
    return out


@dataclass(frozen=True)
class EpisodeVideo:
    """An episode's cached video file: its cameras, frame count and whether it was re-rendered from the state."""

    path: Path
    cameras: tuple[str, ...]
    frames: int
    rerendered: bool

    @property
    def name(self) -> str:
        return self.path.name


def _cached(path: Path, frames: int, make: Callable[[], dict[str, list[bytes]]], size: tuple[int, int]) -> None:
    """Make sure `path` holds a sound video of `frames` frames: kept if it does, else made now (atomically)."""
    if path.is_file():
        try:
            if read_video_header(path)["frames"] == frames:
                return
        except (OSError, LiveSessionError):
            pass  # a damaged cache file: render again and replace it
    data = pack_video(make(), size)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def episode_video(
    cache_dir: Path,
    episode_id: int,
    checksum: str,
    task: str,
    frames: EpisodeFrames,
    cameras: tuple[str, ...] = VIEW_CAMERAS,
    image_size: tuple[int, int] = VIEW_SIZE,
) -> EpisodeVideo:
    """The episode's video, cached under `cache_dir`: its recorded cameras encoded, or, when it recorded none,
    `cameras` re-rendered from its stored states at `image_size`."""
    n = len(frames.state)
    if frames.images:
        stored = tuple(sorted(frames.images))
        size = tuple(frames.images[stored[0]].shape[1:3])
        path = cache_path(cache_dir, episode_id, checksum, stored, size, "stored")  # type: ignore[arg-type]

        def encode() -> dict[str, list[bytes]]:
            return {cam: [encode_jpeg(image, JPEG_QUALITY) for image in frames.images[cam]] for cam in stored}

        _cached(path, n, encode, size)  # type: ignore[arg-type]
        return EpisodeVideo(path, stored, n, rerendered=False)
    path = cache_path(cache_dir, episode_id, checksum, cameras, image_size, "rendered")
    _cached(path, n, lambda: render_states(task, frames.state, cameras, image_size), image_size)
    return EpisodeVideo(path, cameras, n, rerendered=True)
