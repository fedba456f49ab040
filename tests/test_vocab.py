"""The episode vocabulary stands alone: the simulation imports it without the store's SQL stack."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from flywheel.errors import InvalidFramesError
from flywheel.vocab import SegmentSpan, check_segments, derive_segments, encode_controllers

P, H, E = "policy", "human", "expert"


def _loaded_after(statement: str, modules: tuple[str, ...]) -> list[str]:
    code = f"import sys; {statement}; print(','.join(m for m in {modules!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return [m for m in proc.stdout.strip().split(",") if m]


def test_import_sim_loads_no_sqlalchemy_or_alembic() -> None:
    assert _loaded_after("import sim", ("sqlalchemy", "alembic")) == []


def test_the_vocabulary_needs_only_numpy_and_the_error_types() -> None:
    heavy = ("sqlalchemy", "alembic", "pydantic", "torch", "mujoco", "flywheel.store", "sim")
    assert _loaded_after("import flywheel.vocab", heavy) == []


def test_derived_segments_pass_their_own_check() -> None:
    codes = encode_controllers([P, P, H, H, H, P, E])
    spans = derive_segments(codes, triggers={2: "no_progress"}, operators={2: "ann"}, claimed_operators={6: "x"})
    assert [(s.start, s.end, s.controller.value) for s in spans] == [(0, 2, P), (2, 5, H), (5, 6, P), (6, 7, E)]
    assert (spans[1].trigger, spans[1].operator, spans[3].claimed_operator) == ("no_progress", "ann", "x")
    check_segments(spans, codes)


def test_check_segments_names_the_first_disagreement() -> None:
    codes = encode_controllers([P, P, H, H])
    with pytest.raises(InvalidFramesError, match=r"segment 0 is \[0, 3\) policy but the frames give \[0, 2\) policy"):
        check_segments([SegmentSpan(0, 3, "policy"), SegmentSpan(3, 4, "human")], codes)  # type: ignore[arg-type]
    with pytest.raises(InvalidFramesError, match="segments: 'robot' is not a valid ControllerKind"):
        check_segments([SegmentSpan(0, 4, "robot")], codes)  # type: ignore[arg-type]
    with pytest.raises(InvalidFramesError, match="unknown controller codes \\[7\\]"):
        derive_segments(np.array([0, 7], dtype=np.uint8))
