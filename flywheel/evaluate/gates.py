"""Eval gates: each returns a verdict with the evidence it was decided on. Pure functions, no I/O."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flywheel.evaluate.sequential import PairedLook, paired_look
from flywheel.evaluate.stats import wilson_interval
from flywheel.evaluate.throughput import PairedThroughput, paired_throughput


class GateConfig(BaseModel):
    """Thresholds for promotion. Every gate must pass."""

    model_config = ConfigDict(extra="forbid")

    success_floor: float = Field(0.5, ge=0.0, le=1.0, description="minimum success rate on the eval seeds")
    non_inferiority_margin: float = Field(
        0.10,
        ge=0.0,
        le=1.0,
        description="the repeated interval's lower bound of (candidate − champion) must exceed −margin; the same"
        " margin bounds the loss against the lineage's best promoted version",
    )
    alpha: float = Field(
        0.025,
        gt=0.0,
        le=0.25,
        description="one-sided false-promotion rate of each paired comparison, spent over the looks"
        " (0.025: the repeated intervals are 95% intervals)",
    )
    drift_guard: bool = Field(True, description="also compare against the best promoted version of the lineage")
    require_improvement: bool = Field(
        True, description="promote a non-superior candidate only where success or throughput improves"
    )
    slowdown_margin: float | None = Field(
        0.15,
        ge=0.0,
        le=10.0,
        description="at equal success, refuse a candidate whose mean time to success (seeds both solved) is more"
        " than this fraction slower than the champion's, unless its successes per hour are higher (None: recorded,"
        " not gated)",
    )
    slowdown_min_seeds: int = Field(
        10,
        ge=1,
        le=100_000,
        description="the slowdown gate decides only on at least this many seeds both solved (fewer: recorded, not"
        " gated; a mean time over two or three episodes is noise)",
    )
    max_nan_actions: int = Field(0, ge=0, description="NaN/inf actions allowed")
    latency_p95_budget_ms: float = Field(
        150.0,
        gt=0,
        description="act() p95 budget; a re-planned chunk must be ready before the 8 executed steps (160 ms at 50 Hz)",
    )
    max_joint_limit_violations: int | None = Field(None, ge=0, description="None: recorded, not gated")


@dataclass(frozen=True)
class EvalNumbers:
    """The numbers of one eval run: what the eval_run row stores and the dashboards show."""

    episodes: int
    successes: int
    success_rate: float
    ci_low: float
    ci_high: float
    mean_length: float
    latency_p50_ms: float
    latency_p95_ms: float
    nan_actions: int
    joint_limit_violations: int

    def numbers(self) -> dict[str, Any]:
        """These fields by name (an eval_run row's columns of the same names)."""
        return {f.name: getattr(self, f.name) for f in fields(EvalNumbers)}


@dataclass(frozen=True)
class EvalSummary(EvalNumbers):
    """What one policy did on the eval seeds (the input of the gates)."""

    seeds: list[int]
    outcomes: list[bool]
    steps: list[int] = field(default_factory=list)  # episode lengths in control steps (an episode ends at success)

    def prefix(self, n: int) -> EvalSummary:
        """The same policy on its first `n` seeds (outcomes and lengths only; latency evidence kept)."""
        outcomes = self.outcomes[:n]
        k = sum(outcomes)
        low, high = wilson_interval(k, n)
        steps = self.steps[:n]
        return replace(
            self,
            seeds=self.seeds[:n],
            outcomes=outcomes,
            steps=steps,
            successes=k,
            episodes=n,
            success_rate=k / n if n else 0.0,
            ci_low=low,
            ci_high=high,
            mean_length=sum(steps) / n if n and steps else self.mean_length,
        )


@dataclass(frozen=True)
class Comparison:
    """The candidate against one reference version on the same seeds, at the look where evaluation stopped."""

    reference_id: int
    reference: EvalSummary
    look: PairedLook
    throughput: PairedThroughput | None  # None when episode lengths were not recorded


def compare(
    candidate: EvalSummary,
    reference: EvalSummary,
    *,
    reference_id: int,
    look: int,
    sizes: list[int],
    config: GateConfig,
) -> Comparison:
    """Pair the candidate with a reference on identical seeds (refused otherwise)."""
    if candidate.seeds != reference.seeds:
        raise ValueError(f"policy {reference_id} was evaluated on other seeds than the candidate")
    paired = paired_look(
        candidate.outcomes,
        reference.outcomes,
        reference_id=reference_id,
        look=look,
        sizes=sizes,
        alpha=config.alpha,
        margin=config.non_inferiority_margin,
    )
    tp = None
    if len(candidate.steps) == len(reference.steps) == candidate.episodes:
        tp = paired_throughput(candidate.outcomes, candidate.steps, reference.outcomes, reference.steps)
    return Comparison(reference_id, reference, paired, tp)


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


def _interval_reason(look: PairedLook, what: str) -> str:
    return (
        f"candidate − {what} (v{look.reference_id}) = {look.difference:+.0%} after {look.n} paired seeds "
        f"(look {look.look}/{look.looks}, repeated interval [{look.ci_low:+.0%}, {look.ci_high:+.0%}]) "
        f"{'>' if look.decision == 'non_inferior' else '≤'} −{look.margin:.0%} margin"
    )


def champion_gate(champion: Comparison | None) -> GateVerdict:
    """Non-inferiority against the current champion on the same seeds (group-sequential, see sequential.py)."""
    if champion is None:
        return GateVerdict("non_inferiority", True, "no champion yet: the first policy only needs the floor", {})
    look = champion.look
    ok = look.decision == "non_inferior"
    evidence = {**look.as_dict(), "champion_success_rate": champion.reference.success_rate}
    return GateVerdict("non_inferiority", ok, _interval_reason(look, "champion"), evidence)


def drift_gate(lineage: Comparison | None, champion: Comparison | None, config: GateConfig) -> GateVerdict:
    """Non-inferiority against the best promoted version of the lineage (the highest stored success rate, each
    on its own stored seeds), so a run of small losses cannot walk the champion down past the margin from it.
    Each promotion's guarantee is its own test's (false-promotion rate ≤ α); "best" is a point estimate."""
    if not config.drift_guard:
        return GateVerdict("no_drift", True, "drift guard off (gates.drift_guard: false)", {})
    if lineage is None or (champion is not None and lineage.reference_id == champion.reference_id):
        reason = "the champion is the lineage's best promoted version" if champion else "no promoted version yet"
        return GateVerdict("no_drift", True, reason, {})
    look = lineage.look
    ok = look.decision == "non_inferior"
    evidence = {**look.as_dict(), "lineage_best_success_rate": lineage.reference.success_rate}
    return GateVerdict("no_drift", ok, _interval_reason(look, "lineage best"), evidence)


def improvement_gate(
    champion: Comparison | None, config: GateConfig, takeovers: tuple[float, float] | None = None
) -> GateVerdict:
    """A candidate that is not shown superior (a tie) is promoted only where some metric improves, judged on the
    paired point estimates (a tie with no estimate above the champion's is refused; an improvement is not a
    significance claim).

    `takeovers`: (candidate, champion) takeovers per episode where both were measured; eval rollouts run
    without an operator, so the loop's gate judges success and throughput.
    """
    if champion is None:
        return GateVerdict("improvement", True, "no champion yet", {})
    look, tp = champion.look, champion.throughput
    improved: list[str] = []
    if look.difference > 0:
        improved.append("success")
    if tp is not None and tp.successes_per_hour_diff > 0:
        improved.append("throughput")
    if takeovers is not None and takeovers[0] < takeovers[1]:
        improved.append("takeovers")
    evidence: dict[str, Any] = {
        "superior": look.superior,
        "improved": improved,
        "success_diff": look.difference,
        "successes_per_hour_diff": None if tp is None else tp.successes_per_hour_diff,
        "takeovers": takeovers,
    }
    tp_text = "" if tp is None else f", successes/h {tp.successes_per_hour_diff:+.0f}"
    if look.superior:
        return GateVerdict("improvement", True, f"superior on success ({look.difference:+.0%}{tp_text})", evidence)
    if not config.require_improvement:
        return GateVerdict("improvement", True, "tie allowed (gates.require_improvement: false)", evidence)
    if improved:
        reason = f"tie on success; improves {', '.join(improved)} (success {look.difference:+.0%}{tp_text})"
        return GateVerdict("improvement", True, reason, evidence)
    reason = f"tie on success and no metric improves (success {look.difference:+.0%}{tp_text})"
    return GateVerdict("improvement", False, reason, evidence)


def slowdown_gate(champion: Comparison | None, config: GateConfig) -> GateVerdict:
    """At equal success, refuse a candidate slower than the champion by more than the margin, unless it still
    delivers more successes per hour of robot time on the paired seeds (point estimates): a candidate that solves
    more seeds pays for being slower on the seeds both solve, and throughput is what this gate protects."""
    tp = None if champion is None else champion.throughput
    if champion is None or tp is None or tp.slowdown is None:
        return GateVerdict("throughput", True, "no paired time to success to compare", {})
    evidence = {**tp.as_dict(), "margin": config.slowdown_margin, "superior": champion.look.superior}
    text = f"time to success {tp.slowdown:+.0%} vs champion on {tp.both_succeeded} seeds both solved"
    if config.slowdown_margin is None:
        return GateVerdict("throughput", True, f"{text} (recorded, not gated)", evidence)
    if champion.look.superior:
        return GateVerdict("throughput", True, f"{text}; success is superior, speed not gated", evidence)
    if tp.both_succeeded < config.slowdown_min_seeds:
        reason = f"{text} (< {config.slowdown_min_seeds}: recorded, not gated)"
        return GateVerdict("throughput", True, reason, evidence)
    within = tp.slowdown <= config.slowdown_margin
    text = f"{text} {'≤' if within else '>'} +{config.slowdown_margin:.0%}"
    if not within and tp.successes_per_hour_diff > 0:
        return GateVerdict(
            "throughput", True, f"{text}, paid for: successes/h {tp.successes_per_hour_diff:+.0f}", evidence
        )
    return GateVerdict("throughput", within, text, evidence)


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


def run_gates(
    summary: EvalSummary,
    champion: Comparison | None,
    config: GateConfig,
    lineage: Comparison | None = None,
    takeovers: tuple[float, float] | None = None,
) -> list[GateVerdict]:
    """Every gate, in a fixed order; promotion needs all of them to pass."""
    return [
        floor_gate(summary, config),
        champion_gate(champion),
        drift_gate(lineage, champion, config),
        improvement_gate(champion, config, takeovers),
        slowdown_gate(champion, config),
        nan_gate(summary, config),
        latency_gate(summary, config),
        joint_limit_gate(summary, config),
    ]
