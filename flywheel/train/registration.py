"""Registering a finished training run as a `candidate` policy version (the CLI and the scheduler share it)."""

from __future__ import annotations

from flywheel.registry import PolicyRegistry
from flywheel.registry.records import PolicyRecord
from flywheel.train.config import TrainConfig
from flywheel.train.trainer import TrainResult


def register_trained_candidate(
    registry: PolicyRegistry,
    *,
    task: str,
    config: TrainConfig,
    result: TrainResult,
    parent_id: int | None = None,
    iteration: int | None = None,
) -> PolicyRecord:
    """A candidate with its lineage: the exact training config, the training-data fingerprint and the final
    metrics. What the policy reads is its checkpoint's input spec (`flywheel.policy.input_spec`), not a registry
    key."""
    return registry.register_candidate(
        task=task,
        checkpoint_uri=str(result.checkpoint_dir),
        sha256=result.sha256,
        config=config.model_dump(mode="json"),
        data_fingerprint=result.data_fingerprint,
        metrics=dict(result.metrics),
        parent_id=parent_id,
        iteration=iteration,
    )
