"""Group-sequential gates: boundaries, error rate under repeated looks, the drift guard on a real store, and an
interrupted evaluation resuming without counting a seed twice."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select

from flywheel.collect.seeds import eval_seeds
from flywheel.evaluate.gates import GateConfig
from flywheel.evaluate.runner import EvalConfig, Evaluator
from flywheel.evaluate.sequential import look_sizes, obf_boundaries, paired_look, settled
from flywheel.evaluate.stats import paired_difference
from flywheel.registry import PolicyRegistry
from flywheel.store import EpisodeStore
from flywheel.store.models import EvalEpisode
from tests.test_evaluate_runner import candidate  # noqa: F401  (fixture: a tiny trained policy)


def test_obrien_fleming_boundaries_match_published_values() -> None:
    # Jennison & Turnbull (2000) table 7.6 / gsDesign sfLDOF, one-sided alpha 0.025
    assert obf_boundaries((1.0,), 0.025)[0] == pytest.approx(1.960, abs=2e-3)
    five = obf_boundaries((0.2, 0.4, 0.6, 0.8, 1.0), 0.025)
    assert five == pytest.approx((4.877, 3.357, 2.680, 2.290, 2.031), abs=3e-3)
    assert look_sizes(20, 100) == [20, 40, 60, 80, 100] and look_sizes(30, 100) == [30, 60, 90, 100]


def _simulate(p_champion: float, p_candidate: float, runs: int = 2000, seed: int = 2021) -> tuple[float, float]:
    """Share of runs that pass non-inferiority, and mean paired seeds used (blocks of 20, at most 100)."""
    rng = np.random.default_rng(seed)
    sizes = look_sizes(20, 100)
    passes, used = 0, 0
    for _ in range(runs):
        champion = (rng.random(100) < p_champion).tolist()
        candidate_ = (rng.random(100) < p_candidate).tolist()
        for k, n in enumerate(sizes):
            look = paired_look(
                candidate_[:n], champion[:n], reference_id=1, look=k, sizes=sizes, alpha=0.025, margin=0.10
            )
            if settled([look]):
                break
        passes += look.decision == "non_inferior"
        used += n
    return passes / runs, used / runs


def test_false_promotion_rate_stays_at_or_under_alpha_under_repeated_looks() -> None:
    worse, _ = _simulate(0.9, 0.75)  # 15 points worse: beyond the 10-point margin
    at_margin, _ = _simulate(0.9, 0.8)  # exactly at the margin: the hardest null
    assert worse <= 0.025 and at_margin <= 0.025, (worse, at_margin)


def test_power_is_high_and_a_clear_winner_stops_early() -> None:
    rate, used = _simulate(0.8, 0.95, runs=500)
    assert rate >= 0.95 and used < 80, (rate, used)


def _store_outcomes(store: EpisodeStore, version_id: int, wins: list[bool], success_steps: int, max_steps: int) -> None:
    with store.db.write() as session:
        for seed, ok in zip(eval_seeds(len(wins)), wins, strict=True):
            session.add(
                EvalEpisode(
                    policy_version_id=version_id,
                    seed=seed,
                    max_steps=max_steps,
                    success=ok,
                    steps=success_steps if ok else max_steps,
                    act_latency_ms=[5.0],
                )
            )


def _version(registry: PolicyRegistry, name: str) -> int:
    return registry.register_candidate(
        task="transfer_cube",
        checkpoint_uri=f"/nowhere/{name}",
        sha256="0" * 64,
        config={},
        data_fingerprint={},
        metrics={},
    ).id


def test_drift_guard_refuses_the_98_95_92_walk(sqlite_settings) -> None:
    """Each step is within the margin of the champion before it; the sum is not. Outcomes are constructed and
    stored per seed, so the evaluator decides without any rollout."""
    store = EpisodeStore.open(sqlite_settings)
    registry = PolicyRegistry(store.db)
    config = EvalConfig(episodes=100, block=20, fresh_episodes=0)
    v1_fail, v2_fail, v3_fail = {13, 71}, {13, 71, 29, 52, 88}, {13, 71, 29, 52, 88, 6, 44, 95}
    versions = {}
    for name, failed, steps in (("v1", v1_fail, 200), ("v2", v2_fail, 100), ("v3", v3_fail, 60)):
        versions[name] = _version(registry, name)
        _store_outcomes(store, versions[name], [i not in failed for i in range(100)], steps, config.max_steps)
    evaluator = Evaluator(store, config, progress=False)

    first = evaluator.evaluate(versions["v1"])
    assert first.passed and first.metrics["rolled_out"] == 0
    registry.promote(versions["v1"], actor="test", reason="98%")
    second = evaluator.evaluate(versions["v2"])  # 95%: worse, but faster (throughput improves)
    assert second.passed, [v.reason for v in second.verdicts if not v.passed]
    assert "improves throughput" in next(v.reason for v in second.verdicts if v.gate == "improvement")
    registry.promote(versions["v2"], actor="test", reason="95%")

    v2, v3 = (evaluator.summary(versions[n], eval_seeds(100)) for n in ("v2", "v3"))
    assert paired_difference(v3.outcomes, v2.outcomes).ci_low > -0.10  # today's champion-only gate: allowed
    third = evaluator.evaluate(versions["v3"])  # 92%: within the margin of v2, not of v1
    gates = {v.gate: v for v in third.verdicts}
    assert gates["non_inferiority"].passed
    assert not gates["no_drift"].passed and not third.passed
    assert gates["no_drift"].evidence["reference_id"] == versions["v1"]
    assert third.metrics["lineage_best_id"] == versions["v1"] and third.summary.episodes == 100

    drift = evaluator.lineage_drift("transfer_cube", versions["v2"])
    assert drift["lineage_best"] == versions["v1"] and drift["lineage_drift"] == pytest.approx(0.03)
    unguarded = EvalConfig(episodes=100, block=20, fresh_episodes=0, gates=GateConfig(drift_guard=False))
    assert Evaluator(store, unguarded, progress=False).evaluate(versions["v3"]).passed


class _Interrupt(Exception):
    pass


def test_an_interrupted_evaluation_resumes_without_double_counting(candidate) -> None:  # noqa: F811
    store, policy_id = candidate
    config = EvalConfig(
        episodes=4,
        block=2,
        workers=1,
        max_steps=20,
        fresh_episodes=0,
        gates=GateConfig(success_floor=0.0, latency_p95_budget_ms=60_000),
    )
    seen: list[int] = []

    def stop_mid_block(version_id: int, seed: int) -> None:
        seen.append(seed)
        if len(seen) == 3:  # one block and half of the next
            raise _Interrupt

    with pytest.raises(_Interrupt):
        Evaluator(store, config, progress=False, on_episode=stop_mid_block).evaluate(policy_id)
    with store.db.read() as session:
        assert session.scalar(select(func.count(EvalEpisode.id))) == 3
    resumed = Evaluator(store, config, progress=False).evaluate(policy_id)
    assert resumed.metrics["rolled_out"] == 1 and resumed.summary.episodes == 4
    assert resumed.summary.seeds == eval_seeds(4)
    with store.db.read() as session:
        seeds = session.scalars(select(EvalEpisode.seed).where(EvalEpisode.policy_version_id == policy_id)).all()
    assert sorted(seeds) == eval_seeds(4)
    again = Evaluator(store, config, progress=False).evaluate(policy_id)
    assert again.metrics["rolled_out"] == 0 and again.summary.outcomes == resumed.summary.outcomes
