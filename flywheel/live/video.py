"""Pictures for people: JPEG encoding of rendered frames and projecting world points into a camera's pixels."""

from __future__ import annotations

import io

import mujoco
import numpy as np
from PIL import Image


def encode_jpeg(image: np.ndarray, quality: int = 80) -> bytes:
    """(H, W, 3) uint8 → JPEG bytes (Pillow, which Streamlit already depends on)."""
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def project_points(
    model: mujoco.MjModel, data: mujoco.MjData, camera: str, points: np.ndarray, height: int, width: int
) -> list[tuple[float, float] | None]:
    """World points (N, 3) → (column, row) pixels of `camera` at height x width (None: behind the camera).

    MuJoCo cameras look down their local -z with y up; the vertical field of view is `cam_fovy` degrees.
    """
    cam = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
    if cam < 0:
        raise ValueError(f"unknown camera {camera!r}")
    rot = data.cam_xmat[cam].reshape(3, 3)
    local = (np.asarray(points, dtype=np.float64) - data.cam_xpos[cam]) @ rot  # rows: world → camera frame
    focal = 0.5 * height / np.tan(np.deg2rad(model.cam_fovy[cam]) / 2)
    pixels: list[tuple[float, float] | None] = []
    for x, y, z in local:
        if z >= -1e-6:
            pixels.append(None)
            continue
        pixels.append((float(width / 2 + focal * x / -z), float(height / 2 - focal * y / -z)))
    return pixels
