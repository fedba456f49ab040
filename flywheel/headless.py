"""The process environment a headless run defaults to: MuJoCo renders through EGL, experiment tracking stays
offline and huggingface_hub never reaches the network (datasets and weights are local paths), unless the
environment already says otherwise. Set before anything imports MuJoCo or lerobot."""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from types import MappingProxyType

HEADLESS_ENV: Mapping[str, str] = MappingProxyType({"MUJOCO_GL": "egl", "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"})


def headless_defaults(environ: MutableMapping[str, str] = os.environ) -> None:
    """Fill in `HEADLESS_ENV` where `environ` leaves a variable unset."""
    for name, value in HEADLESS_ENV.items():
        environ.setdefault(name, value)
