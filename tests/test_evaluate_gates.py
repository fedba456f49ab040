"""Every gate passes and fails on constructed evidence; eval configs refuse training seeds."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from flywheel.evaluate.gates import EvalSummary, GateConfig, run_gates
from flywheel.evaluate.runner import EvalConfig
from flywheel.evaluate.stats import wilson_interval


def _summary(outcomes: list[bool], p95: float = 5.0, nan: int = 0, joints: int = 0) -> EvalSummary:
    n, k = len(outcomes), sum(outcomes)
    low, high = wilson_interval(k, n)
    return EvalSummary(
        seeds=list(range(1_000_000, 1_000_000 + n)),
        outcomes=outcomes,
        successes=k,
        episodes=n,
        success_rate=k / n,
        ci_low=low,
        ci_high=high,
        mean_length=100.0,
        latency_p50_ms=p95 / 2,
        latency_p95_ms=p95,
        nan_actions=nan,
        joint_limit_violations=joints,
    )


def _verdicts(candidate: EvalSummary, champion: EvalSummary | None = None, **cfg: float) -> dict[str, bool]:
    return {v.gate: v.passed for v in run_gates(candidate, champion, GateConfig(**cfg))}


def test_all_gates_pass_for_a_good_first_policy() -> None:
    verdicts = _verdicts(_summary([True] * 45 + [False] * 5))
    assert all(verdicts.values()), verdicts


def test_floor_gate() -> None:
    assert not _verdicts(_summary([True] * 20 + [False] * 30), success_floor=0.5)["success_floor"]
    assert _verdicts(_summary([True] * 25 + [False] * 25), success_floor=0.5)["success_floor"]


def test_non_inferiority_gate_uses_the_same_seeds() -> None:
    champion = _summary([True] * 45 + [False] * 5)
    worse = _summary([True] * 30 + [False] * 20)
    equal = _summary([True] * 45 + [False] * 5)
    better = _summary([True] * 50)
    assert not _verdicts(worse, champion)["non_inferiority"]
    assert _verdicts(equal, champion)["non_inferiority"]
    assert _verdicts(better, champion)["non_inferiority"]
    shifted = EvalSummary(**{**equal.__dict__, "seeds": [s + 1 for s in equal.seeds]})
    verdict = next(v for v in run_gates(shifted, champion, GateConfig()) if v.gate == "non_inferiority")
    assert not verdict.passed and "other seeds" in verdict.reason


def test_nan_latency_and_joint_limit_gates() -> None:
    good = [True] * 50
    assert not _verdicts(_summary(good, nan=1))["finite_actions"]
    assert not _verdicts(_summary(good, p95=250.0), latency_p95_budget_ms=100.0)["latency"]
    assert _verdicts(_summary(good, p95=20.0), latency_p95_budget_ms=100.0)["latency"]
    assert _verdicts(_summary(good, joints=3))["joint_limits"]  # recorded, not gated by default
    assert not _verdicts(_summary(good, joints=3), max_joint_limit_violations=0)["joint_limits"]


def test_gate_evidence_is_recorded() -> None:
    verdicts = run_gates(_summary([True] * 40 + [False] * 10), _summary([True] * 45 + [False] * 5), GateConfig())
    paired = next(v for v in verdicts if v.gate == "non_inferiority")
    assert paired.evidence["champion_only"] == 5 and paired.evidence["margin"] == 0.10


def test_eval_seeds_must_be_held_out() -> None:
    with pytest.raises(ValidationError, match="overlap collection/demo seeds"):
        EvalConfig(seeds=[5, 1_000_001])
    assert EvalConfig(episodes=3).seed_list() == [1_000_000, 1_000_001, 1_000_002]
