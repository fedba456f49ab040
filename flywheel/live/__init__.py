"""Live teleop sessions for the console: watch a rollout, take over, jog, expert assist, hand back, save.

Streamlit-independent: `app/views/live.py` is a thin view over `SessionManager`.
"""

from flywheel.live.config import LiveConfig, RolloutSpec
from flywheel.live.errors import (
    LiveSessionError,
    NotInControlError,
    ReplayMismatchError,
    SessionNotFoundError,
    SessionOverError,
)
from flywheel.live.manager import EndedSession, SessionManager
from flywheel.live.session import LiveSession, LiveStatus

__all__ = [
    "EndedSession",
    "LiveConfig",
    "LiveSession",
    "LiveSessionError",
    "LiveStatus",
    "NotInControlError",
    "ReplayMismatchError",
    "RolloutSpec",
    "SessionManager",
    "SessionNotFoundError",
    "SessionOverError",
]
