"""What a pixels episode records, and a console shows, when nobody says otherwise: the camera and image size."""

from __future__ import annotations

DEFAULT_CAMERA = "top"
"""gym-aloha's overhead camera; `sim.scene` lists every camera the scenes render."""

DEFAULT_IMAGE_SIZE: tuple[int, int] = (96, 128)
"""(height, width) of every recorded camera image."""
