"""Typed job results and iteration summaries, stored as JSON in `jobs.result` / `iterations.summary`.

Every field has a default or is one every stored result has carried, so rows written by older versions still
parse; keys a model does not name are kept (`extra="allow"`), so re-storing an old row loses nothing.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field


class StoredResult(BaseModel):
    """Base: validated on read, dumped to JSON on write."""

    model_config = ConfigDict(extra="allow")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


R = TypeVar("R", bound=StoredResult)


class CollectResult(StoredResult):
    """The collect job: counts from the store for the iteration (none when there is no champion yet)."""

    episodes: int = 0
    episodes_by_tag: dict[str, int] = Field(default_factory=dict)
    successes: int = 0
    interventions: int = 0
    interventions_per_episode: float = 0.0
    policy_version_id: int | None = None
    skipped: str | None = None


class TrainPhaseResult(StoredResult):
    """The train job: the registered candidate."""

    policy_version_id: int
    steps: int
    metrics: dict[str, Any] = Field(default_factory=dict)


class EvalPhaseResult(StoredResult):
    """The eval job: the gates' verdict on the candidate."""

    eval_run_id: int
    passed: bool
    success_rate: float
    ci_low: float
    ci_high: float
    latency_p95_ms: float | None = None
    eval_episodes_used: int | None = None
    eval_rollouts: int | None = None
    failed_gates: list[str] = Field(default_factory=list)
    passed_because: list[str] = Field(default_factory=list)


class PromoteResult(StoredResult):
    """The promote job: promoted (with the fresh-seed re-measurement) or rejected (with the reason)."""

    verdict: Literal["promoted", "rejected"]
    policy_version_id: int
    fresh: dict[str, Any] | None = None
    reason: str | None = None


class IterationSummary(StoredResult):
    """One finished iteration, as `flywheel run`, the console and the benchmarks show it."""

    iteration: int
    episodes_by_tag: dict[str, int] = Field(default_factory=dict)
    episodes: int = 0
    interventions_per_episode: float = 0.0
    collect_success_rate: float | None = None
    candidate: int
    candidate_success: float
    candidate_ci: list[float] = Field(default_factory=lambda: [0.0, 0.0])
    eval_episodes_used: int | None = None
    eval_rollouts: int | None = None
    champion: int | None = None
    champion_success: float | None = None
    champion_ci: list[float] | None = None
    champion_eval_episodes: int | None = None
    champion_successes_per_hour: float | None = None
    champion_successes_per_hour_ci: list[float | None] = Field(default_factory=lambda: [None, None])
    champion_mean_seconds_to_success: float | None = None
    champion_fresh_success: float | None = None
    champion_fresh_ci: list[float] | None = None
    champion_fresh_episodes: int | None = None
    lineage_drift: float | None = None
    lineage_best: int | None = None
    lineage_drift_seeds: int | None = None
    verdict: Literal["promoted", "rejected"]
    reason: str | None = None
    passed_because: list[str] = Field(default_factory=list)


def parse_summary(stored: dict[str, Any] | None) -> IterationSummary | None:
    """An iteration's stored summary (None while the iteration is unfinished: its summary is empty)."""
    return IterationSummary.model_validate(stored) if stored else None
