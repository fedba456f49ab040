"""Training: datasets from the store, the IQL + RECAP trainer, resumable checkpoints."""

from flywheel.train.config import TrainConfig, load_config, parse_config
from flywheel.train.data import TrainingEpisode, load_training_episodes
from flywheel.train.trainer import TrainResult, run_training

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainingEpisode",
    "load_config",
    "load_training_episodes",
    "parse_config",
    "run_training",
]
