"""Which training frames a policy fits badly: its per-frame training loss, grouped by where the frames came from.

A loop's fine-tune trains on demos, the policy's own episodes and intervention episodes together, and a few frames
with a large loss can dominate the gradient. This scores each given policy version on the same random sample of
the store's training frames as they are now (so also frames collected after a version was trained: each group says
how many of its frames were in the version's own training data), with the same flow noise and times for every
version and the indicator the version acts with. Per group of frames it reports the flow-matching loss, the
objects' auxiliary loss (where the encoder has that head) and the group's share of the loss weighted by the
version's source weights (as training weighs frames, before RECAP's labels, augmentation and AWR weights); per
episode tag, the flow error per action dimension, in the version's own normalised units. Groups: the episode's
tag, who was in control of the frame (the policy, or an operator: a person or the expert), and whether the frame's
action chunk holds another controller's actions too. A version trained with `train.mask_control_changes` is scored
as it trained, on its chunks' steps before the first change of controller (each row says which). Nothing is stored.

    python -m bench.loss_by_source --home DIR --versions 1,2,5 [--frames 2048] [--seed 0]

Writes bench/results/loss_by_source.json and prints a table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.common import RESULTS, headless_defaults, store_result_header, write_json

if TYPE_CHECKING:
    import torch

    from flywheel.policy.loading import LoadedPolicy
    from flywheel.registry.records import PolicyRecord
    from flywheel.train.config import TrainConfig
    from flywheel.train.data import TrainingEpisode
    from flywheel.train.dataset import FrameTable

headless_defaults()

BATCH = 128
SWITCH = "+switch"
"""Suffix of a group whose frames' action chunks hold another controller's actions too."""


class BenchInputError(Exception):
    """Input this bench cannot score (the message says which and why)."""


def frame_groups(tags: np.ndarray, chunk_controllers: np.ndarray) -> np.ndarray:
    """Each frame's group, `tag/policy` or `tag/operator` (who acted), with `+switch` when its action chunk holds
    another controller's actions too. `chunk_controllers` (N, H): the controller codes of each frame's H target
    actions, its own first."""
    from flywheel.policy.recap import steps_before_control_changes
    from flywheel.vocab import CONTROLLER_CODES, ControllerKind

    own = chunk_controllers[:, 0]
    role = np.where(own == CONTROLLER_CODES[ControllerKind.POLICY], "policy", "operator")
    names = np.char.add(np.char.add(np.asarray(tags).astype(str), "/"), role)
    switches = ~steps_before_control_changes(chunk_controllers)[:, -1]
    return np.where(switches, np.char.add(names, SWITCH), names)


@dataclass(frozen=True)
class FrameScores:
    """Per sampled frame: its group and tag, whether the version trained on it, its loss weight and losses."""

    groups: np.ndarray
    tags: np.ndarray
    trained_on: np.ndarray
    weight: np.ndarray
    flow: np.ndarray
    aux: np.ndarray | None
    flow_by_dim: np.ndarray


def summarise(scores: FrameScores) -> dict[str, Any]:
    """Per group: frames (and how many the version trained on), flow loss (mean, median, 95th percentile), auxiliary
    loss (mean, 95th percentile), the group's share of the weighted loss; the flow error per action dimension by tag."""
    total = scores.flow + (scores.aux if scores.aux is not None else 0.0)
    weighted_sum = float((total * scores.weight).sum())
    groups: dict[str, Any] = {}
    for name in sorted(set(scores.groups.tolist())):
        mask = scores.groups == name
        flow, aux = scores.flow[mask], None if scores.aux is None else scores.aux[mask]
        share = float((total[mask] * scores.weight[mask]).sum()) / weighted_sum if weighted_sum > 0 else None
        groups[name] = {
            "frames": int(mask.sum()),
            "frames_trained_on": int(scores.trained_on[mask].sum()),
            "flow_mean": float(flow.mean()),
            "flow_median": float(np.median(flow)),
            "flow_p95": float(np.quantile(flow, 0.95)),
            "aux_mean": None if aux is None else float(aux.mean()),
            "aux_p95": None if aux is None else float(np.quantile(aux, 0.95)),
            "loss_share": share,
        }
    by_dim = {
        tag: scores.flow_by_dim[scores.tags == tag].mean(axis=0).round(5).tolist()
        for tag in sorted(set(scores.tags.tolist()))
    }
    return {"groups": groups, "flow_by_action_dim": by_dim}


@dataclass(frozen=True)
class FrameSample:
    """The frames every version is scored on, with the flow noise and times drawn for them."""

    idx: torch.Tensor
    noise: torch.Tensor
    t: torch.Tensor


def draw_sample(table_size: int, frames: int, chunk: int, action_dim: int, seed: int) -> FrameSample:
    """`frames` rows drawn uniformly with replacement (as training draws them), with their noise and flow times."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, table_size, (frames,), generator=generator)
    noise = torch.randn((frames, chunk, action_dim), generator=generator)
    return FrameSample(idx, noise, torch.rand((frames,), generator=generator))


def score(loaded: LoadedPolicy, table: FrameTable, sample: FrameSample) -> tuple[Any, Any, Any]:
    """(flow loss, auxiliary loss or None, flow error per action dimension) of `loaded` on the sampled frames,
    conditioned on the indicator it acts with."""
    import torch

    from flywheel.policy.recap import PolicyObjective

    objective = PolicyObjective(loaded.policy).eval()
    flow, aux, by_dim = [], [], []
    with torch.no_grad():
        for start in range(0, len(sample.idx), BATCH):
            part = slice(start, start + BATCH)
            idx = sample.idx[part]
            indicator = torch.full((len(idx),), loaded.acting_indicator, dtype=torch.long)
            batch = table.batch(idx, torch.device("cpu"))
            parts = objective.parts(batch, indicator, sample.noise[part], sample.t[part])
            flow.append(parts.flow)
            by_dim.append(parts.flow_by_dim)
            if parts.aux is not None:
                aux.append(parts.aux)
    return torch.cat(flow).numpy(), torch.cat(aux).numpy() if aux else None, torch.cat(by_dim).numpy()


def table_recipe(loaded: LoadedPolicy, config: TrainConfig) -> dict[str, Any]:
    """The arguments besides the episodes and the inputs with which training built `loaded`'s frame table."""
    return {
        "chunk": loaded.model_config.expert.chunk,
        "gamma": loaded.model_config.critic.gamma,
        "reward": config.reward,
        "failed_corrections_positive": config.failed_corrections_positive,
        "object_targets": loaded.policy.object_head is not None,
        "mask_control_changes": config.mask_control_changes,
    }


def table_key(loaded: LoadedPolicy, config: TrainConfig) -> str:
    """Everything `build_table` reads, so versions that would get the same frame table share one."""
    recipe = table_recipe(loaded, config)
    facts = recipe | {"reward": recipe["reward"].model_dump(mode="json"), "inputs": loaded.input_spec.to_document()}
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True).encode())
    for name, tensor in sorted(loaded.norm.to_tensors().items()):
        digest.update(name.encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def build_table(episodes: list[TrainingEpisode], loaded: LoadedPolicy, config: TrainConfig) -> FrameTable:
    """The training frame table as `config` built it for a policy reading `loaded`'s inputs."""
    from flywheel.train.dataset import build_frame_table

    return build_frame_table(episodes, loaded.io, **table_recipe(loaded, config))


@dataclass(frozen=True)
class Version:
    record: PolicyRecord
    loaded: LoadedPolicy
    config: TrainConfig


def load_versions(registry: Any, wanted: list[int]) -> list[Version]:
    """The versions with their checkpoints and training configs; one task, one chunk length and action size."""
    from pydantic import ValidationError

    from flywheel.errors import FlywheelError
    from flywheel.policy.loading import load_policy
    from flywheel.train.config import TrainConfig

    versions = []
    for version_id in wanted:
        try:
            record = registry.get(version_id)
            loaded = load_policy(record.checkpoint_uri, expected_sha256=record.sha256)
        except FlywheelError as exc:
            raise BenchInputError(f"policy {version_id}: {exc}") from None
        try:
            config = TrainConfig.model_validate(record.config)
        except ValidationError as exc:
            problem = f"its stored training config no longer validates: {exc}"
            raise BenchInputError(f"policy {version_id}: {problem}") from None
        versions.append(Version(record, loaded, config))
    if len({v.record.task for v in versions}) != 1:
        raise BenchInputError(f"the versions belong to different tasks {sorted({v.record.task for v in versions})}")
    shapes = {(v.loaded.model_config.expert.chunk, v.loaded.spec.action_dim) for v in versions}
    if len(shapes) != 1:
        raise BenchInputError(
            f"the versions act in chunks of different (length, action size) {sorted(shapes)}: score them in runs of "
            "their own, so every version sees the same noise"
        )
    return versions


def measure(
    versions: list[Version], episodes: list[TrainingEpisode], frames: int, seed: int
) -> tuple[list[dict[str, Any]], int]:
    """One row per version (see `summarise`) on one sample of the episodes' frames; and the frame count."""
    from flywheel.policy.recap import frame_source_weights

    controllers = np.concatenate([np.asarray(e.frames.controller) for e in episodes])
    episode_ids = np.array([str(e.meta.id) for e in episodes])
    chunk, action_dim = versions[0].loaded.model_config.expert.chunk, versions[0].loaded.spec.action_dim
    sample = draw_sample(len(controllers), frames, chunk, action_dim, seed)
    idx = sample.idx.numpy()
    tables: dict[str, FrameTable] = {}
    rows = []
    for version in versions:
        key = table_key(version.loaded, version.config)
        if key not in tables:
            tables[key] = build_table(episodes, version.loaded, version.config)
        table = tables[key]
        tags = table.tag[idx].astype(str)
        trained = set(version.record.data_fingerprint.get("episode_ids", []))
        flow, aux, by_dim = score(version.loaded, table, sample)
        scores = FrameScores(
            groups=frame_groups(tags, controllers[table.chunk_idx[sample.idx].numpy()]),
            tags=tags,
            trained_on=np.isin(episode_ids[table.episode_of[idx]], list(trained)),
            weight=frame_source_weights(version.config, table.label_inputs())[idx],
            flow=flow,
            aux=aux,
            flow_by_dim=by_dim,
        )
        record = version.record
        row = {"policy_version": record.id, "iteration": record.iteration, "status": str(record.status)}
        masked = version.config.mask_control_changes
        scored = {"indicator": version.loaded.acting_indicator, "mask_control_changes": masked}
        rows.append(row | scored | summarise(scores))
        print_row(rows[-1])
    return rows, len(controllers)


def print_row(row: dict[str, Any]) -> None:
    print(f"v{row['policy_version']} (iteration {row['iteration']}, {row['status']}):")
    for name, group in row["groups"].items():
        aux = "" if group["aux_mean"] is None else f"  aux {group['aux_mean']:.3f}"
        share = "-" if group["loss_share"] is None else f"{group['loss_share']:.0%}"
        print(
            f"  {name:<28} {group['frames']:>5} frames ({group['frames_trained_on']} trained on)  "
            f"flow {group['flow_mean']:.3f} (p95 {group['flow_p95']:.3f}){aux}  share {share}"
        )


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
    if not (args.home / "flywheel.db").is_file():
        sys.exit(f"loss_by_source: no store in {args.home}")

    import torch

    from flywheel.config import Settings
    from flywheel.errors import FlywheelError
    from flywheel.registry import PolicyRegistry
    from flywheel.store import EpisodeStore
    from flywheel.train.data import load_training_episodes

    torch.set_num_threads(1)
    start = time.perf_counter()
    store = EpisodeStore.open(Settings(home=args.home), migrate=False)
    try:
        versions = load_versions(PolicyRegistry(store.db), wanted)
        task = versions[0].record.task
        rows, training_frames = measure(versions, load_training_episodes(store, task), args.frames, args.seed)
    except (BenchInputError, FlywheelError) as exc:
        sys.exit(f"loss_by_source: {exc}")
    finally:
        store.db.dispose()
    result = store_result_header("loss_by_source", args.home) | {
        "task": task,
        "training_frames": training_frames,
        "frames_sampled": args.frames,
        "seed": args.seed,
        "versions": rows,
        "wall_seconds": time.perf_counter() - start,
        "load_average": os.getloadavg()[0],
    }
    write_json(args.out, result)


if __name__ == "__main__":
    main()
