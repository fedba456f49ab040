"""One reusable offscreen renderer for all cameras of an env, with the costly effects off by default."""

from __future__ import annotations

import mujoco
import numpy as np


class CameraRenderer:
    """Renders named cameras at one resolution through a single `mujoco.Renderer`.

    Shadows, reflections and multisampling are off unless `effects=True` (they cost 2-5x on CPU, see DESIGN §7).
    """

    def __init__(
        self, model: mujoco.MjModel, cameras: tuple[str, ...], height: int, width: int, effects: bool = False
    ) -> None:
        for cam in cameras:
            if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, cam) < 0:
                known = [model.camera(i).name for i in range(model.ncam)]
                raise ValueError(f"unknown camera {cam!r}: use one of {', '.join(known)}")
        if not effects:
            model.vis.quality.offsamples = 0
        model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), width)
        model.vis.global_.offheight = max(int(model.vis.global_.offheight), height)
        self.cameras = cameras
        self._renderer = mujoco.Renderer(model, height=height, width=width)
        flags = self._renderer.scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = effects
        flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = effects

    def render(self, data: mujoco.MjData) -> dict[str, np.ndarray]:
        """camera name → (H, W, 3) uint8 image of the current state."""
        images = {}
        for cam in self.cameras:
            self._renderer.update_scene(data, camera=cam)
            images[cam] = self._renderer.render()
        return images

    def close(self) -> None:
        self._renderer.close()
