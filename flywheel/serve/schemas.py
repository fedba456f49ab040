"""Request and response bodies of the policy server, and the check of an observation against the served policy.

Pydantic checks the generic shape (types, finite numbers, base64); `observation_from_request` then checks it against
the policy actually loaded (state size, cameras, image shapes), which can change on a hot reload.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any

import numpy as np
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from flywheel.serve.source import ServedPolicy

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
MAX_STATE_DIM = 65_536
MAX_SEED = 2**63


class ImagePayload(BaseModel):
    """One camera frame: raw uint8 pixels, row-major (height, width, 3), base64-encoded."""

    model_config = ConfigDict(extra="forbid")

    shape: tuple[int, int, int] = Field(description="(height, width, 3)")
    data: bytes = Field(description="base64 (standard alphabet, padded) of height*width*3 uint8 bytes")

    @field_validator("data", mode="before")
    @classmethod
    def _base64(cls, value: object) -> bytes:
        if not isinstance(value, str):
            raise ValueError("must be a base64 string")
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error:
            raise ValueError("not valid base64 (standard alphabet, with padding)") from None


class ActRequest(BaseModel):
    """An observation. `seed` fixes the sampling noise (same seed and input → same chunk); random when omitted."""

    model_config = ConfigDict(extra="forbid")

    state: list[FiniteFloat] = Field(max_length=MAX_STATE_DIM, description="state vector in environment units")
    images: dict[str, ImagePayload] | None = Field(default=None, description="camera → frame (pixel policies)")
    seed: int | None = Field(default=None, ge=0, lt=MAX_SEED)


class ActResponse(BaseModel):
    """A full action chunk. Receding horizon is the client's: execute the first `execute_steps`, then ask again."""

    actions: list[list[float]] = Field(description="(chunk_size, action_dim) actions in environment units")
    chunk_size: int
    execute_steps: int
    action_dim: int
    policy_version: int
    sha256: str
    seed: int


def act_response_json(actions: np.ndarray, served: ServedPolicy, seed: int) -> bytes:
    """The `ActResponse` body, encoded directly: the fields are built here from trusted values, so the per-request
    pydantic round trip of a chunk of floats (the largest part of the server's own time) is skipped.
    """
    body = {
        "actions": actions.tolist(),
        "chunk_size": served.chunk_size,
        "execute_steps": served.execute_steps,
        "action_dim": served.action_dim,
        "policy_version": served.version_id,
        "sha256": served.sha256,
        "seed": seed,
    }
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


class VersionResponse(BaseModel):
    policy_version: int
    alias: str | None = Field(description="the alias the version was resolved from (null for a pinned id)")
    sha256: str
    task: str
    obs_mode: str
    state_dim: int = Field(description="size of the env state vector a request sends")
    state_entries: list[str] = Field(description="the entries of that vector the policy reads")
    privileged: bool = Field(description="true when the policy reads object poses from the physics (sim only)")
    action_dim: int
    cameras: list[str]
    image_shape: list[int] | None = Field(description="(height, width, 3) every camera must have; null = any")
    chunk_size: int
    execute_steps: int
    num_steps: int
    loaded_at: str
    reloads: int
    reload_error: str | None = Field(description="why the last attempt to load a moved alias failed, if it did")


class HealthResponse(BaseModel):
    status: str
    policy_version: int


def _error(loc: tuple[str, ...], msg: str) -> dict[str, Any]:
    return {"type": "value_error", "loc": ("body", *loc), "msg": msg}


def observation_from_request(
    request: ActRequest, served: ServedPolicy, image_size: tuple[int, int] | None
) -> dict[str, Any]:
    """The `PolicyRunner` observation for `request`, or a 422 listing every mismatch with the served policy."""
    errors: list[dict[str, Any]] = []
    with np.errstate(over="ignore"):  # an overflow becomes inf, refused below
        state = np.asarray(request.state, dtype=np.float32)
    if len(state) != served.state_dim:
        errors.append(
            _error(("state",), f"expected {served.state_dim} values (the env's state vector), got {len(state)}")
        )
    elif not np.isfinite(state).all():
        errors.append(_error(("state",), "values must fit in float32 (|x| < 3.4e38)"))
    given = request.images or {}
    wanted = served.cameras
    if not wanted and given:
        errors.append(_error(("images",), f"this policy (obs mode {served.obs_mode}) takes no images; omit `images`"))
    for cam in wanted:
        if cam not in given:
            errors.append(_error(("images", cam), f"missing: the policy needs cameras {list(wanted)}"))
    for cam in sorted(set(given) - set(wanted)):
        if wanted:
            errors.append(_error(("images", cam), f"unknown camera; the policy uses {list(wanted)}"))
    images: dict[str, np.ndarray] = {}
    for cam in wanted:
        if cam in given:
            image = _image(given[cam], image_size, ("images", cam), errors)
            if image is not None:
                images[cam] = image
    if errors:
        raise RequestValidationError(errors)
    obs: dict[str, Any] = {"state": state}
    if wanted:
        obs["images"] = images
    return obs


def _image(
    payload: ImagePayload, image_size: tuple[int, int] | None, loc: tuple[str, ...], errors: list[dict[str, Any]]
) -> np.ndarray | None:
    shape = h, w, c = payload.shape
    problem = None
    if c != 3 or not (8 <= h <= 4096 and 8 <= w <= 4096):
        problem = "shape", f"expected (height, width, 3) with sides in [8, 4096], got {shape}"
    elif image_size is not None and (h, w) != tuple(image_size):
        problem = "shape", f"expected {(*image_size, 3)} (the served image size), got {shape}"
    elif len(payload.data) != h * w * c:
        problem = "data", f"expected {h * w * c} bytes for shape {shape}, got {len(payload.data)}"
    if problem is not None:
        errors.append(_error((*loc, problem[0]), problem[1]))
        return None
    return np.frombuffer(payload.data, dtype=np.uint8).reshape(shape).copy()  # writable, as torch wants
