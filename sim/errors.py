"""Simulation errors, each with a one-line actionable message."""

from __future__ import annotations

from flywheel.errors import ConfigError, FlywheelError


class SimError(FlywheelError):
    """Base class for errors raised by the simulation package."""


class UnknownTaskError(SimError, ConfigError):
    """The task name is not one of the simulated tasks."""


class InvalidActionError(SimError, ValueError):
    """An action has the wrong shape or contains NaN/inf."""
