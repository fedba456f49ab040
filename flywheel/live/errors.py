"""Errors of live teleop sessions: one line each, saying what to do next."""

from __future__ import annotations

from flywheel.errors import FlywheelError


class LiveSessionError(FlywheelError):
    """A live session cannot do what was asked."""


class SessionNotFoundError(LiveSessionError):
    """No live session with that id (it was saved, discarded, or released after an idle timeout)."""


class NotInControlError(LiveSessionError):
    """A jog or gripper command while no person is in control."""


class SessionOverError(LiveSessionError):
    """The session's episode was already saved or discarded."""


class ReplayMismatchError(LiveSessionError):
    """Replaying a takeover request's actions did not reach the state the worker recorded."""
