"""Episode tags: derived from the per-frame controller codes, never typed by hand."""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from flywheel.errors import InvalidFramesError
from flywheel.vocab.controllers import CONTROLLER_CODES, ControllerKind, check_codes


class Tag(StrEnum):
    """Episode tag. `demo`: no policy frame; `autonomous`: policy only; `intervention`: both."""

    DEMO = "demo"
    AUTONOMOUS = "autonomous"
    INTERVENTION = "intervention"


TAGS: tuple[str, ...] = tuple(tag.value for tag in Tag)
"""The tag names, in `Tag`'s order (the store's check constraint, config validation, filters)."""


def parse_tag(value: str) -> Tag:
    """Parse a tag name with a clear error for unknown values."""
    try:
        return Tag(value)
    except ValueError:
        allowed = ", ".join(t.value for t in Tag)
        raise InvalidFramesError(f"unknown tag {value!r}: use one of {allowed}") from None


def derive_tag(controller_codes: np.ndarray) -> Tag:
    """The one function that decides an episode's tag from its per-frame controller codes."""
    codes = np.asarray(controller_codes)
    if codes.size == 0:
        raise InvalidFramesError("cannot tag an episode with no frames")
    check_codes(codes)
    policy = codes == CONTROLLER_CODES[ControllerKind.POLICY]
    if policy.all():
        return Tag.AUTONOMOUS
    if not policy.any():
        return Tag.DEMO
    return Tag.INTERVENTION
