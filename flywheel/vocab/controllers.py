"""Who drove a frame: the controller kinds and their on-disk uint8 codes."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import numpy as np

from flywheel.errors import InvalidFramesError


class ControllerKind(StrEnum):
    """Who produced the executed action of a frame (stored per frame as a code, per segment as the value)."""

    POLICY = "policy"
    HUMAN = "human"
    EXPERT = "expert"


CONTROLLER_CODES: dict[ControllerKind, int] = {
    ControllerKind.POLICY: 0,
    ControllerKind.HUMAN: 1,
    ControllerKind.EXPERT: 2,
}
CONTROLLER_BY_CODE: dict[int, ControllerKind] = {code: c for c, code in CONTROLLER_CODES.items()}

SIMULATED_OPERATOR = "simulated-operator"
"""The operator name recorded for the simulated operator's takeovers unless the caller names another."""


def encode_controllers(controllers: Sequence[ControllerKind | str]) -> np.ndarray:
    """Controller kinds (or their values) → uint8 codes (the on-disk representation)."""
    try:
        return np.array([CONTROLLER_CODES[ControllerKind(c)] for c in controllers], dtype=np.uint8)
    except ValueError as exc:
        raise InvalidFramesError(f"unknown controller in frames: {exc}") from None


def check_codes(codes: np.ndarray, what: str = "frames") -> None:
    """Refuse controller codes that name no `ControllerKind`."""
    unknown = set(np.unique(codes).tolist()) - set(CONTROLLER_BY_CODE)
    if unknown:
        raise InvalidFramesError(f"{what}: unknown controller codes {sorted(unknown)}")
