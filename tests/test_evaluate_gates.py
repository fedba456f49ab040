"""Every gate passes and fails on constructed evidence; eval configs refuse training seeds."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from flywheel.evaluate.gates import Comparison, EvalSummary, GateConfig, compare, run_gates
from flywheel.evaluate.runner import EvalConfig
from flywheel.evaluate.stats import wilson_interval


def _summary(outcomes: list[bool], p95: float = 5.0, nan: int = 0, joints: int = 0, steps: int = 100) -> EvalSummary:
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
        steps=[steps if ok else 400 for ok in outcomes],
    )


def _paired(candidate: EvalSummary, champion: EvalSummary, config: GateConfig, ref: int = 1) -> Comparison:
    return compare(candidate, champion, reference_id=ref, look=0, sizes=[candidate.episodes], config=config)


def _verdicts(candidate: EvalSummary, champion: EvalSummary | None = None, **cfg: float) -> dict[str, bool]:
    config = GateConfig(**cfg)
    paired = None if champion is None else _paired(candidate, champion, config)
    return {v.gate: v.passed for v in run_gates(candidate, paired, config)}


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
    with pytest.raises(ValueError, match="other seeds"):
        _paired(shifted, champion, GateConfig())


def test_a_tie_is_promoted_only_where_a_metric_improves() -> None:
    champion = _summary([True] * 45 + [False] * 5, steps=100)
    same_slower = _summary([True] * 45 + [False] * 5, steps=130)
    same_faster = _summary([True] * 45 + [False] * 5, steps=80)
    verdicts = run_gates(same_faster, _paired(same_faster, champion, GateConfig()), GateConfig())
    improvement = next(v for v in verdicts if v.gate == "improvement")
    assert improvement.passed and "improves throughput" in improvement.reason
    slower = _verdicts(same_slower, champion)
    assert not slower["improvement"] and not slower["throughput"]  # 30% slower > 15% margin
    assert _verdicts(same_slower, champion, slowdown_margin=0.5)["throughput"]
    better = _summary([True] * 50, steps=130)
    assert _verdicts(better, champion)["improvement"]  # more successes: improves success


def test_the_slowdown_gate_does_not_decide_on_a_handful_of_seeds() -> None:
    champion = _summary([True] * 3 + [False] * 97, steps=100)
    slower = _summary([True] * 3 + [False] * 97, steps=180)  # the same successes, slower on the 3 seeds
    verdicts = run_gates(slower, _paired(slower, champion, GateConfig()), GateConfig())
    throughput = next(v for v in verdicts if v.gate == "throughput")
    assert throughput.passed and "3 seeds both solved (< 10: recorded, not gated)" in throughput.reason
    assert not _verdicts(slower, champion, slowdown_min_seeds=3)["throughput"]


def test_a_slower_candidate_passes_where_its_extra_successes_pay_for_the_time() -> None:
    champion = _summary([True] * 22 + [False] * 28, steps=100)
    # 20% slower on the 18 seeds both solve; solves 10 the champion fails and fails 4 it solves (+12 points, not
    # significant on 50 seeds): more successes per hour all the same
    paying = _summary([True] * 18 + [False] * 4 + [True] * 10 + [False] * 18, steps=120)
    verdicts = {v.gate: v for v in run_gates(paying, _paired(paying, champion, GateConfig()), GateConfig())}
    assert not verdicts["non_inferiority"].evidence["superior"]
    assert verdicts["throughput"].passed and "paid for: successes/h +" in verdicts["throughput"].reason
    # the same slowdown with one extra success: fewer successes per hour, refused
    not_paying = _summary([True] * 18 + [False] * 4 + [True] * 5 + [False] * 23, steps=160)
    assert not _verdicts(not_paying, champion)["throughput"]


def test_nan_latency_and_joint_limit_gates() -> None:
    good = [True] * 50
    assert not _verdicts(_summary(good, nan=1))["finite_actions"]
    assert not _verdicts(_summary(good, p95=250.0), latency_p95_budget_ms=100.0)["latency"]
    assert _verdicts(_summary(good, p95=20.0), latency_p95_budget_ms=100.0)["latency"]
    assert _verdicts(_summary(good, joints=3))["joint_limits"]  # recorded, not gated by default
    assert not _verdicts(_summary(good, joints=3), max_joint_limit_violations=0)["joint_limits"]


def test_gate_evidence_is_recorded() -> None:
    candidate, champion = _summary([True] * 40 + [False] * 10), _summary([True] * 45 + [False] * 5)
    verdicts = run_gates(candidate, _paired(candidate, champion, GateConfig()), GateConfig())
    paired = next(v for v in verdicts if v.gate == "non_inferiority")
    assert paired.evidence["reference_only"] == 5 and paired.evidence["margin"] == 0.10
    assert paired.evidence["n"] == 50 and paired.evidence["look"] == 1


def test_eval_seeds_must_be_held_out() -> None:
    with pytest.raises(ValidationError, match="overlap collection/demo seeds"):
        EvalConfig(seeds=[5, 1_000_001])
    assert EvalConfig(episodes=3).seed_list() == [1_000_000, 1_000_001, 1_000_002]


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"gates": {"non_inferiority_margin": 1.5}}, "non_inferiority_margin"),
        ({"gates": {"alpha": 0.6}}, "alpha"),
        ({"gates": {"alpha": 0.0}}, "alpha"),
        ({"gates": {"slowdown_margin": -0.1}}, "slowdown_margin"),
        ({"episodes": 10, "block": 20}, "block=20"),
        ({"fresh_episodes": -1}, "fresh_episodes"),
    ],
)
def test_bad_gate_config_is_refused_with_the_key_named(kwargs: dict, key: str) -> None:
    with pytest.raises(ValidationError, match=key):
        EvalConfig.model_validate(kwargs)


def test_a_bad_loop_config_names_the_key(tmp_path) -> None:
    from flywheel.errors import ConfigError
    from flywheel.scheduler.config import load_flywheel_config

    path = tmp_path / "flywheel.yaml"
    path.write_text("eval:\n  gates:\n    alpha: 0.9\n")
    with pytest.raises(ConfigError, match=r"eval\.gates\.alpha"):
        load_flywheel_config(path)
