"""Training errors with actionable messages."""

from __future__ import annotations

from flywheel.errors import FlywheelError


class TrainingDivergedError(FlywheelError):
    """A loss became NaN/inf; the message names the phase, step and batch, and the last good checkpoint."""


class ResumeMismatchError(FlywheelError):
    """The output directory holds a run with a different config or data."""
