"""Controller segments: maximal runs of frames under one controller, with who drove and why it started.

A rollout derives its segments once (`derive_segments`) and they travel with the episode; the store checks them
against the per-frame controllers (`check_segments`) instead of deriving them again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from flywheel.errors import InvalidFramesError
from flywheel.vocab.controllers import CONTROLLER_BY_CODE, ControllerKind, check_codes


@dataclass(frozen=True)
class SegmentSpan:
    """Frames [start, end) under one controller.

    `operator`: the name of who drove it (a person, or the simulated operator); `trigger`: why it started;
    `claimed_operator`: for imported data, the operator its source names (unverified).
    """

    start: int
    end: int
    controller: ControllerKind
    operator: str | None = None
    trigger: str | None = None
    claimed_operator: str | None = None


def _runs(codes: np.ndarray) -> list[tuple[int, int, ControllerKind]]:
    boundaries = np.flatnonzero(np.diff(codes)) + 1
    starts = [0, *boundaries.tolist()]
    ends = [*boundaries.tolist(), int(codes.size)]
    return [(s, e, CONTROLLER_BY_CODE[int(codes[s])]) for s, e in zip(starts, ends, strict=True)]


def derive_segments(
    controller_codes: np.ndarray,
    triggers: Mapping[int, str] | None = None,
    operators: Mapping[int, str] | None = None,
    claimed_operators: Mapping[int, str] | None = None,
) -> list[SegmentSpan]:
    """Split frames into controller runs; the mappings are keyed by a segment's start frame."""
    codes = np.asarray(controller_codes)
    if codes.size == 0:
        return []
    check_codes(codes)
    triggers, operators, claims = triggers or {}, operators or {}, claimed_operators or {}
    return [
        SegmentSpan(start, end, kind, operators.get(start), triggers.get(start), claims.get(start))
        for start, end, kind in _runs(codes)
    ]


def check_segments(segments: Sequence[SegmentSpan], controller_codes: np.ndarray) -> None:
    """Refuse segments that are not exactly the controller runs of `controller_codes` (bounds and controllers)."""
    codes = np.asarray(controller_codes)
    expected = _runs(codes) if codes.size else []
    try:
        given = [(s.start, s.end, ControllerKind(s.controller)) for s in segments]
    except ValueError as exc:
        raise InvalidFramesError(f"segments: {exc}") from None
    if given == expected:
        return
    first = next(
        (i for i, (g, e) in enumerate(zip(given, expected, strict=False)) if g != e), min(len(given), len(expected))
    )
    got = given[first] if first < len(given) else "nothing"
    want = expected[first] if first < len(expected) else "nothing"
    raise InvalidFramesError(
        f"segments disagree with the per-frame controllers: segment {first} is {_show(got)} but the frames give "
        f"{_show(want)} ({len(given)} segments given, {len(expected)} controller runs); pass the rollout's own "
        "segments, or none to derive them from the frames"
    )


def _show(run: object) -> str:
    if isinstance(run, tuple):
        start, end, kind = run
        return f"[{start}, {end}) {kind.value}"
    return str(run)
