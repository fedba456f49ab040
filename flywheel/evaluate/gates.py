"""Eval gates: each returns a verdict with the evidence it was decided on. Pure functions, no I/O."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flywheel.evaluate.stats import paired_difference


class GateConfig(BaseModel):
    """Thresholds for promotion. Every gate must pass."""

    model_config = ConfigDict(extra="forbid")

    success_floor: float = Field(0.5, ge=0.0, le=1.0, description="minimum success rate on the eval seeds")
    non_inferiority_margin: float = Field(
        0.10, ge=0.0, le=1.0, description="the paired 95% lower bound of (candidate − champion) must exceed −margin"
    )
    max_nan_actions: int = Field(0, ge=0, description="NaN/inf actions allowed")
    latency_p95_budget_ms: float = Field(
        150.0,
        gt=0,
        description="act() p95 budget; a re-planned chunk must be ready before the 8 executed steps (160 ms at 50 Hz)",
    )
    max_joint_limit_violations: int | None = Field(None, ge=0, description="None: recorded, not gated")


@dataclass(frozen=True)
class EvalSummary:
    """What one policy did on the eval seeds (the input of the gates)."""

    seeds: list[int]
    outcomes: list[bool]
    successes: int
    episodes: int
    success_rate: float
    ci_low: float
    ci_high: float
    mean_length: float
    latency_p50_ms: float
    latency_p95_ms: float
    nan_actions: int
    joint_limit_violations: int


@dataclass(frozen=True)
class GateVerdict:
    gate: str
    passed: bool
    reason: str
    evidence: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def floor_gate(summary: EvalSummary, config: GateConfig) -> GateVerdict:
    ok = summary.success_rate >= config.success_floor
    reason = (
        f"success {summary.success_rate:.0%} [{summary.ci_low:.0%}, {summary.ci_high:.0%}] "
        f"{'≥' if ok else '<'} floor {config.success_floor:.0%}"
    )
    evidence = {
        "success_rate": summary.success_rate,
        "ci_low": summary.ci_low,
        "ci_high": summary.ci_high,
        "floor": config.success_floor,
        "episodes": summary.episodes,
    }
    return GateVerdict("success_floor", ok, reason, evidence)


def champion_gate(summary: EvalSummary, champion: EvalSummary | None, config: GateConfig) -> GateVerdict:
    if champion is None:
        return GateVerdict("non_inferiority", True, "no champion yet: the first policy only needs the floor", {})
    if champion.seeds != summary.seeds:
        return GateVerdict(
            "non_inferiority",
            False,
            "champion was evaluated on other seeds; re-evaluate it",
            {"candidate_seeds": summary.seeds[:5], "champion_seeds": champion.seeds[:5]},
        )
    paired = paired_difference(summary.outcomes, champion.outcomes)
    ok = paired.ci_low > -config.non_inferiority_margin
    reason = (
        f"candidate − champion = {paired.difference:+.0%} (95% CI [{paired.ci_low:+.0%}, {paired.ci_high:+.0%}]) "
        f"{'>' if ok else '≤'} −{config.non_inferiority_margin:.0%} margin"
    )
    evidence = {
        **asdict(paired),
        "margin": config.non_inferiority_margin,
        "champion_success_rate": champion.success_rate,
    }
    return GateVerdict("non_inferiority", ok, reason, evidence)


def nan_gate(summary: EvalSummary, config: GateConfig) -> GateVerdict:
    ok = summary.nan_actions <= config.max_nan_actions
    reason = f"{summary.nan_actions} NaN/inf action(s) (allowed {config.max_nan_actions})"
    return GateVerdict("finite_actions", ok, reason, {"nan_actions": summary.nan_actions})


def latency_gate(summary: EvalSummary, config: GateConfig) -> GateVerdict:
    ok = summary.latency_p95_ms <= config.latency_p95_budget_ms
    reason = f"act() p95 {summary.latency_p95_ms:.1f} ms vs budget {config.latency_p95_budget_ms:.0f} ms"
    evidence = {
        "p50_ms": summary.latency_p50_ms,
        "p95_ms": summary.latency_p95_ms,
        "budget_ms": config.latency_p95_budget_ms,
    }
    return GateVerdict("latency", ok, reason, evidence)


def joint_limit_gate(summary: EvalSummary, config: GateConfig) -> GateVerdict:
    limit = config.max_joint_limit_violations
    ok = limit is None or summary.joint_limit_violations <= limit
    reason = f"{summary.joint_limit_violations} joint-limit violation(s)" + ("" if limit is None else f" (max {limit})")
    return GateVerdict("joint_limits", ok, reason, {"violations": summary.joint_limit_violations, "max": limit})


def run_gates(summary: EvalSummary, champion: EvalSummary | None, config: GateConfig) -> list[GateVerdict]:
    """Every gate, in a fixed order; promotion needs all of them to pass."""
    return [
        floor_gate(summary, config),
        champion_gate(summary, champion, config),
        nan_gate(summary, config),
        latency_gate(summary, config),
        joint_limit_gate(summary, config),
    ]
