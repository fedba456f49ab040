"""Which training frames a policy fits badly: its per-frame training loss, grouped by where the frames came from.

A loop's fine-tune trains on demos, the policy's own episodes and intervention episodes together, and a few frames
with a large loss can dominate the gradient. This scores each given policy version on the same random sample of
the store's training frames (the same noise and flow times for every version; the indicator a deployed policy
samples with, positive), and reports per group of frames the flow-matching loss, the objects' auxiliary loss
(where the encoder has that head), each group's share of the weighted loss the optimiser sees (the version's own
source weights), and the flow error per action dimension. Groups: the episode's tag, who was in control of the
frame (the policy, or an operator: a person or the expert), and whether the frame's action chunk runs across a
change of control. Nothing is stored.

    python -m bench.loss_by_source --home DIR --versions 1,2,5 [--frames 2048] [--seed 0]

Writes bench/results/loss_by_source.json and prints a table.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.common import RESULTS, headless_defaults, write_json

if TYPE_CHECKING:
    import torch

    from flywheel.policy.loading import LoadedPolicy
    from flywheel.train.config import TrainConfig
    from flywheel.train.data import TrainingEpisode
    from flywheel.train.dataset import FrameTable

headless_defaults()

BATCH = 128
CROSSES = "+switch"
"""Suffix of a group whose frames' action chunks run across a change of control."""


def frame_groups(tags: np.ndarray, controllers: np.ndarray, chunk_idx: np.ndarray) -> np.ndarray:
    """Each frame's group: `tag/policy` or `tag/operator` (who acted), with `+switch` when its action chunk
    (`chunk_idx`: the frame rows of its H target actions) holds another controller's actions too."""
    from flywheel.vocab import CONTROLLER_CODES, ControllerKind

    policy = controllers == CONTROLLER_CODES[ControllerKind.POLICY]
    role = np.where(policy, "policy", "operator")
    chunk_controllers = controllers[chunk_idx]
    crosses = (chunk_controllers != chunk_controllers[:, :1]).any(axis=1)
    names = np.char.add(np.char.add(np.asarray(tags).astype(str), "/"), role)
    return np.where(crosses, np.char.add(names, CROSSES), names)


def summarise(
    groups: np.ndarray, flow: np.ndarray, aux: np.ndarray | None, weight: np.ndarray, by_dim: np.ndarray
) -> dict[str, Any]:
    """Per group: frames, flow loss (mean, median, 95th percentile), auxiliary loss (mean, 95th percentile) and the
    group's share of the weighted total loss; the flow error per action dimension by episode tag."""
    total = flow + (aux if aux is not None else 0.0)
    weighted_sum = float((total * weight).sum())
    rows: dict[str, Any] = {}
    for name in sorted(set(groups.tolist())):
        mask = groups == name
        rows[name] = {
            "frames": int(mask.sum()),
            "flow_mean": float(flow[mask].mean()),
            "flow_median": float(np.median(flow[mask])),
            "flow_p95": float(np.quantile(flow[mask], 0.95)),
            "aux_mean": None if aux is None else float(aux[mask].mean()),
            "aux_p95": None if aux is None else float(np.quantile(aux[mask], 0.95)),
            "loss_share": float((total[mask] * weight[mask]).sum()) / weighted_sum if weighted_sum > 0 else None,
        }
    tags = np.array([name.split("/")[0] for name in groups.tolist()])
    per_tag = {tag: by_dim[tags == tag].mean(axis=0).round(5).tolist() for tag in sorted(set(tags.tolist()))}
    return {"groups": rows, "flow_by_action_dim": per_tag}


@dataclass(frozen=True)
class FrameSample:
    """The frames every version is scored on, with the flow noise and times drawn for them."""

    idx: torch.Tensor
    noise: torch.Tensor
    t: torch.Tensor


def draw_sample(table_size: int, frames: int, chunk: int, action_dim: int, seed: int) -> FrameSample:
    import torch

    generator = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, table_size, (frames,), generator=generator)
    noise = torch.randn((frames, chunk, action_dim), generator=generator)
    return FrameSample(idx, noise, torch.rand((frames,), generator=generator))


def score(
    loaded: LoadedPolicy, table: FrameTable, sample: FrameSample
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(flow loss, auxiliary loss or None, flow error per action dimension) of `loaded` on the sampled frames."""
    import torch

    from flywheel.policy.expert import POSITIVE
    from flywheel.policy.recap import PolicyObjective

    objective = PolicyObjective(loaded.policy).eval()
    flow, aux, by_dim = [], [], []
    with torch.no_grad():
        for start in range(0, len(sample.idx), BATCH):
            part = slice(start, start + BATCH)
            idx = sample.idx[part]
            indicator = torch.full((len(idx),), POSITIVE, dtype=torch.long)
            parts = objective.parts(
                table.batch(idx, torch.device("cpu")), indicator, sample.noise[part], sample.t[part]
            )
            flow.append(parts.flow)
            by_dim.append(parts.flow_by_dim)
            if parts.aux is not None:
                aux.append(parts.aux)
    return (
        torch.cat(flow).numpy(),
        torch.cat(aux).numpy() if aux else None,
        torch.cat(by_dim).numpy(),
    )


def build_table(episodes: list[TrainingEpisode], loaded: LoadedPolicy, config: TrainConfig) -> FrameTable:
    """The training frame table as `config` built it for a policy reading `loaded`'s inputs."""
    from flywheel.train.dataset import build_frame_table

    return build_frame_table(
        episodes,
        loaded.io,
        loaded.model_config.expert.chunk,
        loaded.model_config.critic.gamma,
        config.reward,
        failed_corrections_positive=config.failed_corrections_positive,
        object_targets=loaded.policy.object_head is not None,
    )


def _inputs_key(checkpoint: Path) -> str:
    """What decides a checkpoint's frame table: its input spec and normaliser files."""
    from flywheel.policy.input_spec import IO_DOCUMENT

    digest = hashlib.sha256()
    for name in (f"{IO_DOCUMENT}.json", "norm.safetensors"):
        digest.update((checkpoint / name).read_bytes())
    return digest.hexdigest()


def _train_config(checkpoint: Path) -> TrainConfig:
    """The training config saved with a final checkpoint (its source weights weigh the loss); the defaults where
    the checkpoint has none."""
    from flywheel.train.config import TrainConfig

    path = checkpoint / "train_config.json"
    if not path.is_file():
        print(f"  {checkpoint} has no train_config.json: weighing the loss with the default source weights")
        return TrainConfig()
    return TrainConfig.model_validate_json(path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="the flywheel home whose episodes to score")
    parser.add_argument("--versions", required=True, help="comma-separated policy versions, e.g. 1,2,5")
    parser.add_argument("--frames", type=int, default=2048, help="training frames sampled (the same for every version)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the frame sample, noise and flow times")
    parser.add_argument("--out", type=Path, default=RESULTS / "loss_by_source.json")
    args = parser.parse_args()
    if args.frames < 1:
        sys.exit("loss_by_source: --frames must be at least 1")
    try:
        wanted = [int(v) for v in args.versions.split(",")]
    except ValueError:
        sys.exit(f"loss_by_source: --versions {args.versions!r}: comma-separated policy versions, e.g. 1,2,5")

    import torch

    from flywheel.config import Settings
    from flywheel.errors import FlywheelError
    from flywheel.policy.loading import load_policy
    from flywheel.policy.recap import frame_source_weights
    from flywheel.registry import PolicyRegistry
    from flywheel.store import EpisodeStore
    from flywheel.train.data import load_training_episodes

    if not (args.home / "flywheel.db").is_file():
        sys.exit(f"loss_by_source: no store in {args.home}")
    torch.set_num_threads(1)
    start = time.perf_counter()
    store = EpisodeStore.open(Settings(home=args.home), migrate=False)
    registry = PolicyRegistry(store.db)
    try:
        versions = [registry.get(v) for v in wanted]
    except FlywheelError as exc:
        sys.exit(f"loss_by_source: {exc}")
    tasks = {v.task for v in versions}
    if len(tasks) != 1:
        sys.exit(f"loss_by_source: the versions belong to different tasks {sorted(tasks)}; give versions of one task")
    task = tasks.pop()
    episodes = load_training_episodes(store, task)
    controllers = np.concatenate([np.asarray(e.frames.controller) for e in episodes])
    tables: dict[str, FrameTable] = {}
    sample: FrameSample | None = None
    rows = []
    for version in versions:
        checkpoint = Path(version.checkpoint_uri)
        try:
            loaded = load_policy(checkpoint)
        except FlywheelError as exc:
            sys.exit(f"loss_by_source: policy {version.id}: {exc}")
        config = _train_config(checkpoint)
        key = _inputs_key(checkpoint)
        if key not in tables:
            tables[key] = build_table(episodes, loaded, config)
        table = tables[key]
        if sample is None:
            sample = draw_sample(len(table), args.frames, table.chunk_idx.shape[1], table.action.shape[1], args.seed)
        idx = sample.idx.numpy()
        groups = frame_groups(table.tag, controllers, table.chunk_idx.numpy())[idx]
        flow, aux, by_dim = score(loaded, table, sample)
        weight = frame_source_weights(config, table.label_inputs())[idx]
        row = {"policy_version": version.id, "iteration": version.iteration, "status": str(version.status)}
        rows.append(row | summarise(groups, flow, aux, weight, by_dim))
        print(f"v{version.id} (iteration {version.iteration}, {version.status}):")
        for name, group in rows[-1]["groups"].items():
            aux_text = "" if group["aux_mean"] is None else f"  aux {group['aux_mean']:.3f}"
            print(
                f"  {name:<28} {group['frames']:>5} frames  flow {group['flow_mean']:.3f} "
                f"(p95 {group['flow_p95']:.3f}){aux_text}  share {group['loss_share']:.0%}"
            )
    result = {
        "bench": "loss_by_source",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "home": str(args.home),
        "task": task,
        "training_frames": len(controllers),
        "frames_sampled": args.frames,
        "seed": args.seed,
        "indicator": "positive",
        "versions": rows,
        "wall_seconds": time.perf_counter() - start,
        "load_average": os.getloadavg()[0],
    }
    write_json(args.out, result)


if __name__ == "__main__":
    main()
