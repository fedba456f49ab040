"""The episode vocabulary: per-frame controllers, episode tags, controller segments, the frames themselves and the
default camera and image size.

Depends on numpy and `flywheel.errors` only, so the simulation and the store both stand on it without one
importing the other (`import sim` loads no SQLAlchemy or Alembic).
"""

from flywheel.vocab.cameras import DEFAULT_CAMERA, DEFAULT_IMAGE_SIZE
from flywheel.vocab.controllers import (
    CONTROLLER_BY_CODE,
    CONTROLLER_CODES,
    SIMULATED_OPERATOR,
    ControllerKind,
    check_codes,
    encode_controllers,
)
from flywheel.vocab.frames import EpisodeFrames
from flywheel.vocab.segments import SegmentSpan, check_segments, derive_segments
from flywheel.vocab.tags import TAGS, Tag, derive_tag, parse_tag

__all__ = [
    "CONTROLLER_BY_CODE",
    "CONTROLLER_CODES",
    "DEFAULT_CAMERA",
    "DEFAULT_IMAGE_SIZE",
    "SIMULATED_OPERATOR",
    "TAGS",
    "ControllerKind",
    "EpisodeFrames",
    "SegmentSpan",
    "Tag",
    "check_codes",
    "check_segments",
    "derive_segments",
    "derive_tag",
    "encode_controllers",
    "parse_tag",
]
