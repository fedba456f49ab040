"""The evaluator on real rollouts: latency and joint-limit evidence come from the policy actually acting."""

from __future__ import annotations

import pytest

from flywheel.collect import CollectSpec, collect
from flywheel.collect.seeds import demo_seeds
from flywheel.evaluate.gates import GateConfig
from flywheel.evaluate.runner import EvalConfig, Evaluator
from flywheel.registry import PolicyRegistry
from flywheel.store import EpisodeStore
from flywheel.train import load_training_episodes, parse_config, run_training
from flywheel.train.registration import register_trained_candidate

TINY = {
    "method": "bc",
    "steps": 3,
    "critic_steps": 0,
    "batch_size": 8,
    "warmup_steps": 1,
    "wandb": False,
    "cpu_threads": 1,
    "model": {
        "encoder": {"hidden_dim": 32},
        "expert": {"chunk": 4, "dim": 32, "layers": 1, "heads": 2},
        "inference": {"execute_steps": 4, "num_steps": 2},
    },
}


@pytest.fixture
def candidate(sqlite_settings, torch_one_thread) -> tuple[EpisodeStore, int]:
    store = EpisodeStore.open(sqlite_settings)
    collect(store, CollectSpec.for_demos("transfer_cube", max_steps=40), demo_seeds(2), workers=1, progress=False)
    config = parse_config(TINY)
    out = sqlite_settings.checkpoints_root / "v1"
    result = run_training(config, load_training_episodes(store, "transfer_cube"), out, progress=False)
    version = register_trained_candidate(
        PolicyRegistry(store.db), task="transfer_cube", obs_mode="state", config=config, result=result
    )
    assert version.config["obs_mode"] == "state" and version.config["method"] == "bc"
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
    assert tight.summary.joint_limit_violations >= 0

    relaxed = _evaluate(store, policy_id, budget_ms=60_000)
    assert {v.gate: v.passed for v in relaxed.verdicts}["latency"]
