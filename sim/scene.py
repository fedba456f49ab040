"""The task scenes as MuJoCo models: gym-aloha's XML plus the cameras this project adds.

gym-aloha's `top` camera sees the whole table from 0.8 m with a 78° field of view, so at a policy's 96x128 the
cube spans about three pixels and most of the image is floor. `table` looks straight down on the workspace where
the objects are placed (x in [-0.2, 0.2], y in [0.4, 0.6]) with a 45° field of view: the same render cost, about
twice the pixels per centimetre, the grippers visible as they reach in. Added cameras change no body, joint or
geom, so physics and state vectors are those of the plain XML.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco

from sim.constants import ASSETS_DIR


@dataclass(frozen=True)
class AddedCamera:
    """A fixed camera in the world frame, looking down -z with +y up in the image."""

    name: str
    pos: tuple[float, float, float]
    fovy: float


ADDED_CAMERAS: tuple[AddedCamera, ...] = (AddedCamera("table", (0.0, 0.5, 0.8), 45.0),)

SCENE_CAMERAS: tuple[str, ...] = (
    "top",
    "angle",
    "front_close",
    "left_pillar",
    "right_pillar",
    "left_wrist",
    "right_wrist",
)
"""The cameras gym-aloha's scenes define."""

CAMERAS: tuple[str, ...] = SCENE_CAMERAS + tuple(c.name for c in ADDED_CAMERAS)
"""Every camera an env can render."""


def load_model(xml_file: str) -> mujoco.MjModel:
    """The compiled model of gym-aloha scene `xml_file` with `ADDED_CAMERAS` in its world body."""
    spec = mujoco.MjSpec.from_file(str(ASSETS_DIR / xml_file))
    for camera in ADDED_CAMERAS:
        spec.worldbody.add_camera(name=camera.name, pos=list(camera.pos), fovy=camera.fovy)
    return spec.compile()
