"""Optional Ray Train path (`--ray`): the same `run_training` inside TorchTrainer workers.

Ray Train sets up the torch process group (gloo on CPU, nccl on GPU) in every worker; `setup_distributed`
joins it, so the training code is identical to the torchrun path. Rank 0 writes the checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from flywheel.train.config import TrainConfig
from flywheel.train.data import TrainingEpisode
from flywheel.train.trainer import TrainResult, run_training


def run_training_ray(
    config: TrainConfig,
    load_episodes: Callable[[], list[TrainingEpisode]],
    out_dir: str | Path,
    num_workers: int = 2,
    use_gpu: bool = False,
    init_from: str | Path | None = None,
) -> TrainResult:
    """Train with `num_workers` Ray Train workers; `load_episodes` runs in each worker (e.g. reads the store)."""
    try:
        import ray
        from ray.train import ScalingConfig
        from ray.train.torch import TorchTrainer
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise RuntimeError("the --ray path needs `pip install flywheel[ray]`") from exc

    cfg_json = config.model_dump(mode="json")
    out = str(Path(out_dir).resolve())
    init = str(init_from) if init_from else None

    def loop(_: dict[str, Any]) -> None:
        from ray import train

        res = run_training(TrainConfig.model_validate(cfg_json), load_episodes(), out, init, progress=False)
        train.report({"sha256": res.sha256, "steps": res.steps})

    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    trainer = TorchTrainer(loop, scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu))
    trainer.fit()
    final = Path(out) / "final"
    from flywheel.policy.checkpoint import checkpoint_sha256, read_document

    metrics = read_document(final, "metrics")
    fingerprint = read_document(final, "fingerprint")
    return TrainResult(final, checkpoint_sha256(final), metrics, fingerprint, config.steps, True)
