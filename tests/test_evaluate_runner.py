"""The evaluator on real rollouts: latency and joint-limit evidence come from the policy actually acting."""

from __future__ import annotations

import pytest

from flywheel.collect import CollectSpec, collect
from flywheel.collect.runtime import WorkerRuntime
from flywheel.collect.seeds import collection_seeds, demo_seeds, eval_seeds
from flywheel.evaluate.gates import GateConfig
from flywheel.evaluate.runner import EvalConfig, Evaluator
from flywheel.presets import train_config
from flywheel.registry import PolicyRegistry
from flywheel.store import EpisodeFilter, EpisodeStore
from flywheel.train import load_training_episodes, run_training
from flywheel.train.registration import register_trained_candidate
from tests.live_support import random_takeover_spec

TINY = {"method": "bc", "steps": 3}  # over the tiny preset


@pytest.fixture
def candidate(sqlite_settings, torch_one_thread) -> tuple[EpisodeStore, int]:
    store = EpisodeStore.open(sqlite_settings)
    collect(store, CollectSpec.for_demos("transfer_cube", max_steps=40), demo_seeds(2), workers=1, progress=False)
    config = train_config("tiny", TINY)
    out = sqlite_settings.checkpoints_root / "v1"
    result = run_training(config, load_training_episodes(store, "transfer_cube"), out, progress=False)
    version = register_trained_candidate(PolicyRegistry(store.db), task="transfer_cube", config=config, result=result)
    assert version.config["method"] == "bc"
    return store, version.id


def _evaluate(store: EpisodeStore, policy_id: int, budget_ms: float):
    gates = GateConfig(success_floor=0.0, latency_p95_budget_ms=budget_ms)
    config = EvalConfig(episodes=2, workers=1, max_steps=40, gates=gates)
    return Evaluator(store, config, progress=False).evaluate(policy_id)


def test_latency_evidence_is_measured_from_the_acting_policy(candidate) -> None:
    store, policy_id = candidate
    tight = _evaluate(store, policy_id, budget_ms=1e-6)
    assert tight.summary.latency_p95_ms > 0.0
    assert tight.summary.latency_p95_ms >= tight.summary.latency_p50_ms
    verdicts = {v.gate: v for v in tight.verdicts}
    assert not verdicts["latency"].passed and not tight.passed
    stored = Evaluator(store, EvalConfig(episodes=2, workers=1, max_steps=40), progress=False).stored(
        policy_id, tight.summary.seeds
    )
    assert len(stored) == 2
    assert tight.summary.joint_limit_violations == sum(r.joint_limit_violations for r in stored.values())
    assert verdicts["joint_limits"].evidence["violations"] == tight.summary.joint_limit_violations

    relaxed = _evaluate(store, policy_id, budget_ms=60_000)
    assert {v.gate: v.passed for v in relaxed.verdicts}["latency"]


def test_an_eval_seed_gives_the_same_episode_whatever_ran_before(candidate) -> None:
    """The policy's sampling noise follows the episode seed, so paired gate comparisons see the same noise."""

    store, policy_id = candidate
    version = PolicyRegistry(store.db).get(policy_id)
    spec = CollectSpec(
        task="transfer_cube",
        obs_mode="state",
        max_steps=30,
        operator_mode="none",
        operator_name="eval",
        policy_version_id=version.id,
        policy_checkpoint=version.checkpoint_uri,
        policy_sha256=version.sha256,
        source_prefix="eval/test",
    )
    first, second = eval_seeds(2)
    fresh = WorkerRuntime(spec)
    used = WorkerRuntime(spec)
    try:
        used.run(second)  # a different history: the noise generator has moved on
        a, b = fresh.run(first), used.run(first)
    finally:
        fresh.close()
        used.close()
    assert a.frames is not None and b.frames is not None
    assert (a.frames.action == b.frames.action).all()


def test_collection_reports_the_takeovers_it_stores(candidate) -> None:
    """The report (and progress bar) count takeovers as the store does: expert segments in policy episodes."""
    store, policy_id = candidate
    version = PolicyRegistry(store.db).get(policy_id)
    spec = random_takeover_spec(version, 1, max_steps=40, probability=0.2, min_policy_steps=2, handback=5)
    report = collect(store, spec, collection_seeds(1, 2), workers=1, progress=False)
    assert report.interventions > 0
    assert report.interventions == store.takeover_count(EpisodeFilter(iteration=1))
