"""bench.loss_by_source: frames grouped by tag, controller and chunks across a change of control; the policy loss
split into parts that add up to the trained loss; and the bench on a real store with real takeovers."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.loss_by_source import FrameScores, build_table, frame_groups, main, summarise, table_key
from flywheel.collect import CollectSpec, collect
from flywheel.collect.seeds import collection_seeds, demo_seeds
from flywheel.config import Settings
from flywheel.policy.expert import POSITIVE, UNCONDITIONAL
from flywheel.policy.loading import load_policy
from flywheel.policy.recap import PolicyObjective, steps_before_control_changes
from flywheel.presets import train_config
from flywheel.registry import PolicyRegistry
from flywheel.registry.records import PolicyRecord
from flywheel.store import EpisodeStore
from flywheel.train import load_training_episodes, run_training
from flywheel.train.dataset import build_frame_table
from flywheel.train.registration import register_trained_candidate
from flywheel.vocab import CONTROLLER_CODES, ControllerKind
from tests.live_support import random_takeover_spec

P, E = CONTROLLER_CODES[ControllerKind.POLICY], CONTROLLER_CODES[ControllerKind.EXPERT]


def test_frames_are_grouped_by_tag_controller_and_chunks_across_a_change_of_control() -> None:
    tags = np.array(["demo", "intervention", "intervention", "intervention", "intervention"])
    chunk_controllers = np.array([[E, E], [P, P], [P, E], [E, E], [E, P]])  # each frame's own controller first
    assert frame_groups(tags, chunk_controllers).tolist() == [
        "demo/operator",
        "intervention/policy",
        "intervention/policy+switch",  # the takeover falls inside its chunk
        "intervention/operator",
        "intervention/operator+switch",  # the hand-back falls inside its chunk
    ]


def test_each_group_gets_its_share_of_the_weighted_loss() -> None:
    scores = FrameScores(
        groups=np.array(["demo/operator", "demo/operator", "intervention/operator", "intervention/policy"]),
        tags=np.array(["demo", "demo", "intervention", "intervention"]),
        trained_on=np.array([True, True, False, True]),
        weight=np.array([1.0, 1.0, 2.0, 0.5]),  # a takeover weighed 2 x 1, a policy frame of an intervention 0.5
        flow=np.array([0.1, 0.3, 1.0, 0.4]),
        aux=np.array([0.0, 0.0, 0.5, 0.2]),
        flow_by_dim=np.array([[0.1, 0.1], [0.2, 0.4], [1.5, 0.5], [0.4, 0.4]]),
    )
    summary = summarise(scores)
    weighted = {"demo/operator": 0.1 + 0.3, "intervention/operator": 2 * 1.5, "intervention/policy": 0.5 * 0.6}
    total = sum(weighted.values())
    for name, value in weighted.items():
        assert summary["groups"][name]["loss_share"] == pytest.approx(value / total)
    assert summary["groups"]["demo/operator"]["flow_mean"] == pytest.approx(0.2)
    assert summary["groups"]["intervention/operator"]["frames_trained_on"] == 0
    assert summary["flow_by_action_dim"]["intervention"] == pytest.approx([0.95, 0.45])


@dataclass(frozen=True)
class TakeoverStore:
    store: EpisodeStore
    home: Path
    bc_on_demos: int  # trained on the two demos alone
    recap_on_all: int  # trained on the demos and the intervention episodes


@pytest.fixture(scope="module")
def store_with_takeovers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TakeoverStore]:
    """Two demos, a tiny BC policy trained on them, two of its episodes with random takeovers, and a tiny RECAP
    policy trained on all four (once per module)."""
    settings = Settings(home=tmp_path_factory.mktemp("loss") / "home")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    store = EpisodeStore.open(settings)
    registry = PolicyRegistry(store.db)

    def train(name: str, overrides: dict) -> PolicyRecord:
        config = train_config("tiny", overrides)
        episodes = load_training_episodes(store, "transfer_cube")
        result = run_training(config, episodes, settings.checkpoints_root / name, progress=False)
        return register_trained_candidate(registry, task="transfer_cube", config=config, result=result)

    try:
        collect(store, CollectSpec.for_demos("transfer_cube", max_steps=40), demo_seeds(2), workers=1, progress=False)
        bc = train("bc", {"method": "bc", "steps": 3})
        spec = random_takeover_spec(bc, 1, max_steps=40, probability=0.2, min_policy_steps=2, handback=5)
        report = collect(store, spec, collection_seeds(1, 2), workers=1, progress=False)
        assert report.interventions > 0
        recap = train("recap", {"method": "recap", "steps": 3, "critic_steps": 3})
        yield TakeoverStore(store, settings.home, bc.id, recap.id)
    finally:
        torch.set_num_threads(threads)
        store.db.dispose()


def test_the_loss_parts_add_up_to_the_flow_matching_loss(store_with_takeovers: TakeoverStore) -> None:
    store = store_with_takeovers.store
    loaded = load_policy(PolicyRegistry(store.db).get(store_with_takeovers.recap_on_all).checkpoint_uri)
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
        # rectified flow written out: x_t = (1 - t) noise + t a, target velocity a - noise; a masked mean over steps
        x_t = (1 - t[:, None, None]) * noise + t[:, None, None] * batch.actions
        context = loaded.policy.context(batch.state, batch.images)
        velocity = loaded.policy.expert.velocity(x_t, t, indicator, context)
        per_step = (velocity - (batch.actions - noise)).pow(2).mean(dim=-1)
        expected = (per_step * batch.step_mask).sum(dim=1) / batch.step_mask.sum(dim=1).clamp(min=1.0)
    assert parts.aux is None  # the tiny state policy has no object head
    torch.testing.assert_close(total, expected)
    torch.testing.assert_close(parts.flow, expected)
    torch.testing.assert_close(parts.flow_by_dim.mean(dim=1), expected)


def test_the_bench_scores_every_group_of_a_real_store(
    store_with_takeovers: TakeoverStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bc, recap = store_with_takeovers.bc_on_demos, store_with_takeovers.recap_on_all
    out = tmp_path / "loss.json"
    argv = ["loss_by_source", "--home", str(store_with_takeovers.home), "--versions", f"{bc},{recap}"]
    monkeypatch.setattr(sys, "argv", [*argv, "--frames", "300", "--out", str(out)])
    main()
    result = json.loads(out.read_text())
    bc_row, recap_row = result["versions"]
    assert (bc_row["indicator"], recap_row["indicator"]) == (UNCONDITIONAL, POSITIVE)  # as each acts
    assert not bc_row["mask_control_changes"] and not recap_row["mask_control_changes"]  # as each trained
    groups = recap_row["groups"]
    assert {name: g["frames"] for name, g in groups.items()} == {
        name: g["frames"] for name, g in bc_row["groups"].items()
    }  # the same sample for both
    assert sum(g["frames"] for g in groups.values()) == 300
    assert sum(g["loss_share"] for g in groups.values()) == pytest.approx(1.0)
    episodes = load_training_episodes(store_with_takeovers.store, "transfer_cube")
    assert result["training_frames"] == sum(len(e.frames) for e in episodes)
    # demos are all the expert's; the interventions have frames of both, some with chunks across the takeovers
    kinds = {name.removesuffix("+switch") for name in groups}
    assert kinds == {"demo/operator", "intervention/policy", "intervention/operator"}
    assert any(name.endswith("+switch") for name in groups)
    # the BC policy never trained on the interventions; the RECAP policy trained on every frame
    for name, group in bc_row["groups"].items():
        assert group["frames_trained_on"] == (group["frames"] if name.startswith("demo") else 0)
    assert all(g["frames_trained_on"] == g["frames"] for g in groups.values())
    assert all(g["flow_mean"] >= 0 and g["aux_mean"] is None for g in groups.values())
    assert set(recap_row["flow_by_action_dim"]) == {"demo", "intervention"}
    assert all(len(dims) == 14 for dims in recap_row["flow_by_action_dim"].values())


def test_an_unknown_version_is_refused_by_name(
    store_with_takeovers: TakeoverStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["loss_by_source", "--home", str(store_with_takeovers.home), "--versions", "99"]
    monkeypatch.setattr(sys, "argv", [*argv, "--out", str(tmp_path / "loss.json")])
    with pytest.raises(SystemExit, match="policy 99"):
        main()
    assert not (tmp_path / "loss.json").exists()


def test_a_version_trained_with_masked_chunks_is_scored_on_the_steps_it_trained_on(
    store_with_takeovers: TakeoverStore,
) -> None:
    """`train.mask_control_changes` reaches the bench's frame table: the chunks across a takeover or hand-back
    count fewer steps, every other chunk the same, and the two tables are cached apart."""
    store = store_with_takeovers.store
    loaded = load_policy(PolicyRegistry(store.db).get(store_with_takeovers.recap_on_all).checkpoint_uri)
    episodes = load_training_episodes(store, "transfer_cube")
    plain_config, masked_config = train_config("tiny"), train_config("tiny", {"mask_control_changes": True})
    plain, masked = build_table(episodes, loaded, plain_config), build_table(episodes, loaded, masked_config)
    controllers = np.concatenate([e.frames.controller for e in episodes])
    crosses = ~steps_before_control_changes(controllers[plain.chunk_idx.numpy()])[:, -1]
    assert crosses.any()
    assert torch.equal(masked.step_mask[~crosses], plain.step_mask[~crosses])
    assert (masked.step_mask[crosses].sum(dim=1) < plain.step_mask[crosses].sum(dim=1)).all()
    assert table_key(loaded, plain_config) != table_key(loaded, masked_config)
