"""bench.loss_by_source: frames grouped by tag, controller and chunks across a change of control; the policy loss
split into parts that add up to the trained loss; and the bench on a real store with real takeovers."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.loss_by_source import frame_groups, main
from flywheel.collect import CollectSpec, collect
from flywheel.collect.seeds import collection_seeds, demo_seeds
from flywheel.config import Settings
from flywheel.policy.expert import POSITIVE
from flywheel.policy.loading import load_policy
from flywheel.policy.recap import PolicyObjective
from flywheel.presets import train_config
from flywheel.registry import PolicyRegistry
from flywheel.store import EpisodeStore
from flywheel.train import load_training_episodes, run_training
from flywheel.train.dataset import build_frame_table
from flywheel.train.registration import register_trained_candidate
from flywheel.vocab import CONTROLLER_CODES, ControllerKind
from tests.live_support import random_takeover_spec

P, E = CONTROLLER_CODES[ControllerKind.POLICY], CONTROLLER_CODES[ControllerKind.EXPERT]


def test_frames_are_grouped_by_tag_controller_and_chunks_across_a_change_of_control() -> None:
    tags = np.array(["demo", "demo", "intervention", "intervention", "intervention", "intervention"])
    controllers = np.array([E, E, P, P, E, E])
    # chunks of 2: each frame's own row and the next one within its episode (the last repeats)
    chunk_idx = np.array([[0, 1], [1, 1], [2, 3], [3, 4], [4, 5], [5, 5]])
    groups = frame_groups(tags, controllers, chunk_idx)
    assert groups.tolist() == [
        "demo/operator",
        "demo/operator",
        "intervention/policy",
        "intervention/policy+switch",
        "intervention/operator",
        "intervention/operator",
    ]


@pytest.fixture(scope="module")
def store_with_takeovers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EpisodeStore, int, Path]]:
    """Two demos, a tiny policy trained on them, and two of its episodes with random takeovers (once per module)."""
    settings = Settings(home=tmp_path_factory.mktemp("loss") / "home")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    store = EpisodeStore.open(settings)
    try:
        collect(store, CollectSpec.for_demos("transfer_cube", max_steps=40), demo_seeds(2), workers=1, progress=False)
        config = train_config("tiny", {"method": "bc", "steps": 3})
        episodes = load_training_episodes(store, "transfer_cube")
        result = run_training(config, episodes, settings.checkpoints_root / "v1", progress=False)
        registry = PolicyRegistry(store.db)
        version = register_trained_candidate(registry, task="transfer_cube", config=config, result=result)
        spec = random_takeover_spec(version, 1, max_steps=40, probability=0.2, min_policy_steps=2, handback=5)
        report = collect(store, spec, collection_seeds(1, 2), workers=1, progress=False)
        assert report.interventions > 0
        yield store, version.id, settings.home
    finally:
        torch.set_num_threads(threads)
        store.db.dispose()


def test_the_loss_parts_add_up_to_the_trained_loss(store_with_takeovers: tuple[EpisodeStore, int, Path]) -> None:
    store, version_id, _ = store_with_takeovers
    loaded = load_policy(PolicyRegistry(store.db).get(version_id).checkpoint_uri)
    episodes = load_training_episodes(store, "transfer_cube")
    table = build_frame_table(episodes, loaded.io, loaded.model_config.expert.chunk, 0.99, train_config("tiny").reward)
    idx = torch.arange(len(table))
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn((len(idx), table.chunk_idx.shape[1], table.action.shape[1]), generator=generator)
    t = torch.rand((len(idx),), generator=generator)
    indicator = torch.full((len(idx),), POSITIVE, dtype=torch.long)
    objective = PolicyObjective(loaded.policy).eval()
    with torch.no_grad():
        batch = table.batch(idx, torch.device("cpu"))
        parts = objective.parts(batch, indicator, noise, t)
        total = objective(batch, indicator, noise, t)
    assert parts.aux is None  # the tiny state policy has no object head
    torch.testing.assert_close(parts.flow, total)
    torch.testing.assert_close(parts.flow_by_dim.mean(dim=1), parts.flow)
    assert parts.flow_by_dim.shape == (len(idx), table.action.shape[1])


def test_the_bench_scores_every_group_of_a_real_store(
    store_with_takeovers: tuple[EpisodeStore, int, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, version_id, home = store_with_takeovers
    out = tmp_path / "loss.json"
    argv = ["loss_by_source", "--home", str(home), "--versions", str(version_id)]
    monkeypatch.setattr(sys, "argv", [*argv, "--frames", "300", "--out", str(out)])
    main()
    result = json.loads(out.read_text())
    (row,) = result["versions"]
    groups = row["groups"]
    assert sum(g["frames"] for g in groups.values()) == 300
    assert sum(g["loss_share"] for g in groups.values()) == pytest.approx(1.0)
    # every frame of the store, counted from its episodes' own controller codes
    episodes = load_training_episodes(store, "transfer_cube")
    operator_in_interventions = sum(
        int((np.asarray(e.frames.controller) != P).sum()) for e in episodes if e.meta.tag == "intervention"
    )
    assert result["training_frames"] == sum(len(e.frames) for e in episodes)
    assert operator_in_interventions > 0
    # demos are all the expert's; the interventions have frames of both, some with chunks across the takeovers
    kinds = {name.removesuffix("+switch") for name in groups}
    assert kinds == {"demo/operator", "intervention/policy", "intervention/operator"}
    assert any(name.endswith("+switch") for name in groups)
    assert all(g["flow_mean"] >= 0 and g["aux_mean"] is None for g in groups.values())
    assert set(row["flow_by_action_dim"]) <= {"demo", "autonomous", "intervention"}
    assert all(len(dims) == 14 for dims in row["flow_by_action_dim"].values())
