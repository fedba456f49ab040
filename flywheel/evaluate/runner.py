"""Run a policy on the held-out eval seeds, apply the gates, and store the eval run with its evidence."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select

from flywheel.collect import CollectSpec, ProcessPool
from flywheel.collect.outcome import EpisodeOutcome
from flywheel.collect.seeds import eval_seeds, is_training_seed
from flywheel.evaluate.gates import EvalSummary, GateConfig, GateVerdict, run_gates
from flywheel.evaluate.stats import percentile, wilson_interval
from flywheel.progress import episode_progress
from flywheel.registry import CHAMPION, PolicyRecord, PolicyRegistry
from flywheel.store import EpisodeStore
from flywheel.store.models import EvalRun


class EvalConfig(BaseModel):
    """Which seeds, how many workers, and the gates."""

    model_config = ConfigDict(extra="forbid")

    episodes: int = Field(50, ge=1, le=10_000)
    seed_start: int = Field(0, ge=0)
    seeds: list[int] | None = Field(None, description="explicit eval seeds (must avoid collection seeds)")
    workers: int = Field(2, ge=1, le=256)
    max_steps: int = Field(400, ge=1)
    gates: GateConfig = Field(default_factory=GateConfig)

    @model_validator(mode="after")
    def _held_out(self) -> EvalConfig:
        overlap = [s for s in self.seed_list() if is_training_seed(s)]
        if overlap:
            raise ValueError(
                f"eval seeds overlap collection/demo seeds (e.g. {overlap[:3]}); eval seeds must be ≥ 1000000"
            )
        return self

    def seed_list(self) -> list[int]:
        return list(self.seeds) if self.seeds is not None else eval_seeds(self.episodes, self.seed_start)


@dataclass(frozen=True)
class EvalResult:
    eval_run_id: int
    policy_version_id: int
    summary: EvalSummary
    verdicts: list[GateVerdict]
    passed: bool


def summarize(outcomes: list[EpisodeOutcome]) -> EvalSummary:
    ordered = sorted(outcomes, key=lambda o: o.seed)
    n = len(ordered)
    successes = sum(o.success for o in ordered)
    low, high = wilson_interval(successes, n)
    latencies = [ms for o in ordered for ms in o.act_latency_ms]
    return EvalSummary(
        seeds=[o.seed for o in ordered],
        outcomes=[bool(o.success) for o in ordered],
        successes=successes,
        episodes=n,
        success_rate=successes / n if n else 0.0,
        ci_low=low,
        ci_high=high,
        mean_length=sum(len(o.frames) for o in ordered) / n if n else 0.0,
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        nan_actions=sum(1 for o in ordered if o.error and ("nan" in o.error.lower() or "inf" in o.error.lower())),
        joint_limit_violations=sum(o.joint_limit_violations for o in ordered),
    )


def rollout_policy(version: PolicyRecord, config: EvalConfig, progress: bool = False) -> EvalSummary:
    """The policy alone (no operator) on every eval seed, in parallel worker processes."""
    spec = CollectSpec(
        task=version.task,
        obs_mode=version.config.get("obs_mode", "state"),
        max_steps=config.max_steps,
        operator="none",
        operator_name="eval",
        policy_version_id=version.id,
        policy_checkpoint=version.checkpoint_uri,
        policy_sha256=version.sha256,
        source_prefix=f"eval/policy-{version.id}",
    )
    seeds = config.seed_list()
    outcomes = []
    with episode_progress(progress) as bar:
        task = bar.add_task(f"eval policy {version.id}", total=len(seeds), successes=0, interventions=0)
        for outcome in ProcessPool(spec, min(config.workers, len(seeds))).run(seeds):
            outcomes.append(outcome)
            bar.update(task, advance=1, successes=sum(o.success for o in outcomes))
    return summarize(outcomes)


class Evaluator:
    """Evaluates versions, reusing a stored run when the same version was already run on the same seeds."""

    def __init__(self, store: EpisodeStore, config: EvalConfig, progress: bool = True) -> None:
        self.store = store
        self.config = config
        self.registry = PolicyRegistry(store.db)
        self.progress = progress

    def stored_summary(self, version_id: int) -> EvalSummary | None:
        seeds = self.config.seed_list()
        with self.store.db.read() as session:
            runs = session.scalars(
                select(EvalRun).where(EvalRun.policy_version_id == version_id).order_by(EvalRun.id.desc())
            ).all()
        for run in runs:
            if list(run.seeds) == seeds:
                return EvalSummary(
                    seeds=list(run.seeds),
                    outcomes=[bool(x) for x in run.outcomes],
                    successes=run.successes,
                    episodes=run.episodes,
                    success_rate=run.success_rate,
                    ci_low=run.ci_low,
                    ci_high=run.ci_high,
                    mean_length=run.mean_length,
                    latency_p50_ms=run.latency_p50_ms,
                    latency_p95_ms=run.latency_p95_ms,
                    nan_actions=run.nan_actions,
                    joint_limit_violations=run.joint_limit_violations,
                )
        return None

    def evaluate(self, ref: str | int, iteration: int | None = None) -> EvalResult:
        """Run the gates for one version against the current champion; store the run and its verdicts."""
        version = self.registry.resolve(ref)
        summary = rollout_policy(version, self.config, self.progress)
        champion_id = self.registry.alias(CHAMPION)
        champion = None
        if champion_id is not None and champion_id != version.id:
            champion = self.stored_summary(champion_id)
            if champion is None:
                champion_version = self.registry.get(champion_id)
                champion = rollout_policy(champion_version, self.config, self.progress)
                self._store_run(champion_version, champion, [], None, iteration)
        verdicts = run_gates(summary, champion, self.config.gates)
        passed = all(v.passed for v in verdicts)
        run_id = self._store_run(version, summary, verdicts, passed, iteration)
        return EvalResult(run_id, version.id, summary, verdicts, passed)

    def _store_run(
        self,
        version: PolicyRecord,
        summary: EvalSummary,
        verdicts: list[GateVerdict],
        passed: bool | None,
        iteration: int | None,
    ) -> int:
        with self.store.db.write() as session:
            row = EvalRun(
                policy_version_id=version.id,
                task=version.task,
                seeds=summary.seeds,
                outcomes=summary.outcomes,
                episodes=summary.episodes,
                successes=summary.successes,
                success_rate=summary.success_rate,
                ci_low=summary.ci_low,
                ci_high=summary.ci_high,
                mean_length=summary.mean_length,
                latency_p50_ms=summary.latency_p50_ms,
                latency_p95_ms=summary.latency_p95_ms,
                nan_actions=summary.nan_actions,
                joint_limit_violations=summary.joint_limit_violations,
                gates=[v.as_dict() for v in verdicts],
                passed=passed,
                iteration=iteration,
            )
            session.add(row)
            session.flush()
            return row.id
