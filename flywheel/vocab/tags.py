"""Controllers, tags and segments: derived from per-frame controller ids, never typed by hand."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from flywheel.errors import InvalidFramesError


class Controller(StrEnum):
    """Who produced the executed action of a frame."""

    POLICY = "policy"
    HUMAN = "human"
    EXPERT = "expert"


class Tag(StrEnum):
    """Episode tag. `demo`: no policy frame; `autonomous`: policy only; `intervention`: both."""

    DEMO = "demo"
    AUTONOMOUS = "autonomous"
    INTERVENTION = "intervention"


CONTROLLER_CODES: dict[Controller, int] = {Controller.POLICY: 0, Controller.HUMAN: 1, Controller.EXPERT: 2}
CONTROLLER_BY_CODE: dict[int, Controller] = {code: c for c, code in CONTROLLER_CODES.items()}


def parse_tag(value: str) -> Tag:
    """Parse a tag name with a clear error for unknown values."""
    try:
        return Tag(value)
    except ValueError:
        allowed = ", ".join(t.value for t in Tag)
        raise InvalidFramesError(f"unknown tag {value!r}: use one of {allowed}") from None


def encode_controllers(controllers: Sequence[Controller | str]) -> np.ndarray:
    """Controller names → uint8 codes (the on-disk representation)."""
    try:
        return np.array([CONTROLLER_CODES[Controller(c)] for c in controllers], dtype=np.uint8)
    except ValueError as exc:
        raise InvalidFramesError(f"unknown controller in frames: {exc}") from None


def derive_tag(controller_codes: np.ndarray) -> Tag:
    """The one function that decides an episode's tag from its per-frame controller codes."""
    codes = np.asarray(controller_codes)
    if codes.size == 0:
        raise InvalidFramesError("cannot tag an episode with no frames")
    unknown = set(np.unique(codes).tolist()) - set(CONTROLLER_BY_CODE)
    if unknown:
        raise InvalidFramesError(f"unknown controller codes {sorted(unknown)} in frames")
    policy = codes == CONTROLLER_CODES[Controller.POLICY]
    if policy.all():
        return Tag.AUTONOMOUS
    if not policy.any():
        return Tag.DEMO
    return Tag.INTERVENTION


@dataclass(frozen=True)
class SegmentSpan:
    """A maximal run of frames [start, end) under one controller."""

    start: int
    end: int
    controller: Controller
    operator: str | None = None
    trigger: str | None = None


def derive_segments(
    controller_codes: np.ndarray,
    triggers: Mapping[int, str] | None = None,
    operators: Mapping[int, str] | None = None,
) -> list[SegmentSpan]:
    """Split frames into controller runs; `triggers`/`operators` are keyed by a segment's start frame."""
    codes = np.asarray(controller_codes)
    triggers = triggers or {}
    operators = operators or {}
    spans: list[SegmentSpan] = []
    if codes.size == 0:
        return spans
    boundaries = np.flatnonzero(np.diff(codes)) + 1
    starts = [0, *boundaries.tolist()]
    ends = [*boundaries.tolist(), int(codes.size)]
    for start, end in zip(starts, ends, strict=True):
        spans.append(
            SegmentSpan(
                start=start,
                end=end,
                controller=CONTROLLER_BY_CODE[int(codes[start])],
                operator=operators.get(start),
                trigger=triggers.get(start),
            )
        )
    return spans
