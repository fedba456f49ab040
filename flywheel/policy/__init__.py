"""Policy: observation encoders, flow-matching action expert, IQL critic, RECAP labelling, inference."""

from flywheel.policy.checkpoint import CheckpointError, checkpoint_sha256, verify_checkpoint
from flywheel.policy.config import ModelConfig
from flywheel.policy.loading import LoadedPolicy, load_policy
from flywheel.policy.runner import PolicyRunner

__all__ = [
    "CheckpointError",
    "LoadedPolicy",
    "ModelConfig",
    "PolicyRunner",
    "checkpoint_sha256",
    "load_policy",
    "verify_checkpoint",
]
