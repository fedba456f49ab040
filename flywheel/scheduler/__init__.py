"""The flywheel loop: iterations as persistent jobs (collect → train → eval → promote) under one lock."""

from flywheel.scheduler.config import FlywheelConfig, load_flywheel_config
from flywheel.scheduler.lock import LockHeldError
from flywheel.scheduler.loop import FlywheelLoop
from flywheel.scheduler.phases import PhaseContext

__all__ = ["FlywheelConfig", "FlywheelLoop", "LockHeldError", "PhaseContext", "load_flywheel_config"]
