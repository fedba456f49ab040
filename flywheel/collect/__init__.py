"""Collection: rollouts in worker processes (or Ray actors), written to the store as they finish."""

from flywheel.collect.outcome import EpisodeOutcome
from flywheel.collect.pool import CollectionError, ProcessPool
from flywheel.collect.service import CollectReport, collect
from flywheel.collect.spec import CollectSpec

__all__ = ["CollectReport", "CollectSpec", "CollectionError", "EpisodeOutcome", "ProcessPool", "collect"]
