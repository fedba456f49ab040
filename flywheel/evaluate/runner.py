"""Run a policy on the held-out eval seeds in blocks, apply the gates, and store the eval run with its evidence.

Every eval episode is stored as it completes, keyed by (version, seed, step limit): an interrupted evaluation
resumes where it stopped, a seed is never counted twice, and a champion already measured on a seed is not
re-run. The candidate is evaluated in blocks of paired seeds and stops at the first look where every paired
comparison is decided (see `flywheel.evaluate.sequential`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select

from flywheel.collect import CollectSpec, ProcessPool
from flywheel.collect.outcome import EpisodeOutcome
from flywheel.collect.seeds import eval_seeds, fresh_seeds, is_fresh_seed, is_training_seed
from flywheel.evaluate.gates import Comparison, EvalSummary, GateConfig, GateVerdict, compare, run_gates
from flywheel.evaluate.sequential import look_sizes, settled
from flywheel.evaluate.stats import percentile, wilson_interval
from flywheel.evaluate.throughput import throughput
from flywheel.progress import episode_progress
from flywheel.registry import CHAMPION, PolicyRecord, PolicyRegistry
from flywheel.registry.service import ROLLBACK_PREFIX
from flywheel.store import EpisodeStore
from flywheel.store.models import AliasEvent, EvalEpisode, EvalRun, PolicyVersion

DEFAULT_BLOCK = 20


class EvalConfig(BaseModel):
    """Which seeds, how many workers, the sequential blocks, fresh re-measurement, and the gates."""

    model_config = ConfigDict(extra="forbid")

    episodes: int = Field(50, ge=1, le=10_000, description="the most paired seeds a candidate is evaluated on")
    block: int | None = Field(
        None, ge=1, le=10_000, description=f"seeds per look of the sequential test (None: min({DEFAULT_BLOCK}, max))"
    )
    seed_start: int = Field(0, ge=0)
    seeds: list[int] | None = Field(None, description="explicit eval seeds (must avoid collection and fresh seeds)")
    workers: int = Field(2, ge=1, le=256)
    max_steps: int = Field(400, ge=1)
    fresh_episodes: int = Field(
        100, ge=0, le=10_000, description="a newly promoted champion re-measured on this many fresh seeds (0: off)"
    )
    fresh_seed_start: int = Field(0, ge=0, description="offset into the fresh seed range (never used to gate)")
    gates: GateConfig = Field(default_factory=GateConfig)

    @model_validator(mode="after")
    def _held_out(self) -> EvalConfig:
        seeds = self.seed_list()
        overlap = [s for s in seeds if is_training_seed(s)]
        if overlap:
            raise ValueError(
                f"eval seeds overlap collection/demo seeds (e.g. {overlap[:3]}); eval seeds must be ≥ 1000000"
            )
        fresh = [s for s in seeds if is_fresh_seed(s)]
        if fresh:
            raise ValueError(f"eval seeds {fresh[:3]} are in the fresh re-measurement range; lower seed_start")
        if self.block is not None and self.block > len(seeds):
            raise ValueError(
                f"block={self.block} is larger than the maximum of {len(seeds)} eval episodes (episodes/seeds):"
                " lower block or raise episodes"
            )
        return self

    def seed_list(self) -> list[int]:
        return list(self.seeds) if self.seeds is not None else eval_seeds(self.episodes, self.seed_start)

    def block_size(self) -> int:
        return self.block if self.block is not None else min(DEFAULT_BLOCK, len(self.seed_list()))

    def fresh_seed_list(self) -> list[int]:
        return fresh_seeds(self.fresh_episodes, self.fresh_seed_start)


@dataclass(frozen=True)
class EvalResult:
    eval_run_id: int
    policy_version_id: int
    summary: EvalSummary
    verdicts: list[GateVerdict]
    passed: bool
    metrics: dict[str, Any]


@dataclass(frozen=True)
class SeedResult:
    """One stored eval episode."""

    seed: int
    success: bool
    steps: int
    act_latency_ms: tuple[float, ...]
    nan_action: bool
    joint_limit_violations: int


def seed_result(outcome: EpisodeOutcome) -> SeedResult:
    error = (outcome.error or "").lower()
    return SeedResult(
        seed=outcome.seed,
        success=bool(outcome.success),
        steps=len(outcome.frames) if outcome.frames is not None else 0,
        act_latency_ms=tuple(outcome.act_latency_ms),
        nan_action=bool(error) and ("nan" in error or "inf" in error),
        joint_limit_violations=outcome.joint_limit_violations,
    )


def summarize(results: list[SeedResult]) -> EvalSummary:
    """The gate input from stored episodes (in the order given: the seed list's order)."""
    n = len(results)
    successes = sum(r.success for r in results)
    low, high = wilson_interval(successes, n)
    latencies = [ms for r in results for ms in r.act_latency_ms]
    return EvalSummary(
        seeds=[r.seed for r in results],
        outcomes=[r.success for r in results],
        successes=successes,
        episodes=n,
        success_rate=successes / n if n else 0.0,
        ci_low=low,
        ci_high=high,
        mean_length=sum(r.steps for r in results) / n if n else 0.0,
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        nan_actions=sum(r.nan_action for r in results),
        joint_limit_violations=sum(r.joint_limit_violations for r in results),
        steps=[r.steps for r in results],
    )


def throughput_metrics(summary: EvalSummary) -> dict[str, Any]:
    return throughput(summary.outcomes, summary.steps).as_dict() if summary.episodes else {}


def promoted_versions(store: EpisodeStore, task: str) -> list[int]:
    """Versions that have been champion of `task`, oldest first; versions rolled back from are left out."""
    with store.db.read() as session:
        moves = session.execute(
            select(AliasEvent.from_version_id, AliasEvent.to_version_id, AliasEvent.reason)
            .join(PolicyVersion, PolicyVersion.id == AliasEvent.to_version_id)
            .where(AliasEvent.alias == CHAMPION, PolicyVersion.task == task)
            .order_by(AliasEvent.id)
        ).all()
    rolled_back = {src for src, _, reason in moves if reason.startswith(ROLLBACK_PREFIX) and src is not None}
    seen: list[int] = []
    for _, dst, _ in moves:
        if dst not in seen and dst not in rolled_back:
            seen.append(dst)
    return seen


EpisodeHook = Callable[[int, int], None]  # (policy version, seed) after each stored episode


class Evaluator:
    """Evaluates versions on stored per-seed episodes, rolling out only the seeds not stored yet."""

    def __init__(
        self, store: EpisodeStore, config: EvalConfig, progress: bool = True, on_episode: EpisodeHook | None = None
    ) -> None:
        self.store = store
        self.config = config
        self.registry = PolicyRegistry(store.db)
        self.progress = progress
        self.on_episode = on_episode

    # -- stored episodes ------------------------------------------------------------------------------

    def stored(self, version_id: int, seeds: list[int]) -> dict[int, SeedResult]:
        with self.store.db.read() as session:
            rows = session.scalars(
                select(EvalEpisode).where(
                    EvalEpisode.policy_version_id == version_id,
                    EvalEpisode.max_steps == self.config.max_steps,
                    EvalEpisode.seed.in_(seeds),
                )
            ).all()
            return {
                r.seed: SeedResult(
                    r.seed, r.success, r.steps, tuple(r.act_latency_ms or ()), r.nan_action, r.joint_limit_violations
                )
                for r in rows
            }

    def _save(self, version_id: int, outcome: EpisodeOutcome) -> None:
        result = seed_result(outcome)
        with self.store.db.write() as session:
            exists = session.scalars(
                select(EvalEpisode.id).where(
                    EvalEpisode.policy_version_id == version_id,
                    EvalEpisode.seed == result.seed,
                    EvalEpisode.max_steps == self.config.max_steps,
                )
            ).first()
            if exists is None:
                session.add(
                    EvalEpisode(
                        policy_version_id=version_id,
                        seed=result.seed,
                        max_steps=self.config.max_steps,
                        success=result.success,
                        steps=result.steps,
                        act_latency_ms=list(result.act_latency_ms),
                        nan_action=result.nan_action,
                        joint_limit_violations=result.joint_limit_violations,
                        error=outcome.error,
                    )
                )

    def ensure(self, version: PolicyRecord, seeds: list[int]) -> int:
        """Roll out the seeds of `seeds` not stored for `version`, storing each as it completes; how many ran."""
        missing = [s for s in seeds if s not in self.stored(version.id, seeds)]
        if not missing:
            return 0
        spec = CollectSpec.policy_alone(version, f"eval/policy-{version.id}", max_steps=self.config.max_steps)
        done = 0
        with episode_progress(self.progress) as bar:
            task = bar.add_task(f"eval policy {version.id}", total=len(missing), successes=0, interventions=0)
            successes = 0
            for outcome in ProcessPool(spec, min(self.config.workers, len(missing))).run(missing):
                self._save(version.id, outcome)
                done += 1
                successes += bool(outcome.success)
                bar.update(task, advance=1, successes=successes)
                if self.on_episode is not None:
                    self.on_episode(version.id, outcome.seed)
        return done

    def summary(self, version_id: int, seeds: list[int]) -> EvalSummary | None:
        """The version on `seeds` from stored episodes; None unless every seed is stored."""
        stored = self.stored(version_id, seeds)
        if len(stored) < len(seeds):
            return None
        return summarize([stored[s] for s in seeds])

    def stored_summary(self, version_id: int) -> EvalSummary | None:
        """The version on the longest stored prefix of the eval seeds (None when it has none)."""
        seeds = self.config.seed_list()
        stored = self.stored(version_id, seeds)
        prefix = []
        for seed in seeds:
            if seed not in stored:
                break
            prefix.append(stored[seed])
        return summarize(prefix) if prefix else None

    def lineage_best(self, task: str, exclude: int) -> int | None:
        """The promoted version of the lineage with the highest stored success on the eval seeds."""
        best: tuple[float, int] | None = None
        for version_id in promoted_versions(self.store, task):
            if version_id == exclude:
                continue
            summary = self.stored_summary(version_id)
            if summary is not None and (best is None or summary.success_rate >= best[0]):
                best = (summary.success_rate, version_id)
        return None if best is None else best[1]

    def lineage_drift(self, task: str, champion_id: int) -> dict[str, Any]:
        """Best promoted version's success minus the champion's, each pair on the seeds both have stored (≥ 0)."""
        seeds = self.config.seed_list()
        mine = self.stored(champion_id, seeds)
        drift: dict[str, Any] = {"lineage_drift": 0.0, "lineage_best": champion_id, "lineage_drift_seeds": len(mine)}
        for version_id in promoted_versions(self.store, task):
            if version_id == champion_id:
                continue
            theirs = self.stored(version_id, seeds)
            common = [s for s in seeds if s in mine and s in theirs]
            if not common:
                continue
            gap = (sum(theirs[s].success for s in common) - sum(mine[s].success for s in common)) / len(common)
            if gap > drift["lineage_drift"]:
                drift = {"lineage_drift": gap, "lineage_best": version_id, "lineage_drift_seeds": len(common)}
        return drift

    def latest_fresh(self, version_id: int) -> dict[str, Any] | None:
        """The version's latest re-measurement on fresh seeds."""
        with self.store.db.read() as session:
            run = session.scalars(
                select(EvalRun)
                .where(EvalRun.policy_version_id == version_id, EvalRun.kind == "fresh")
                .order_by(EvalRun.id.desc())
            ).first()
            if run is None:
                return None
            return {"success": run.success_rate, "ci": [run.ci_low, run.ci_high], "episodes": run.episodes}

    # -- gated evaluation -----------------------------------------------------------------------------

    def evaluate(self, ref: str | int, iteration: int | None = None) -> EvalResult:
        """Evaluate one version in blocks against the champion (and the lineage's best promoted version) until
        the paired comparisons are decided or the maximum is reached; store the run and its verdicts."""
        version = self.registry.resolve(ref)
        gates = self.config.gates
        seeds = self.config.seed_list()
        champion_id = self.registry.alias(CHAMPION)
        champion_id = None if champion_id == version.id else champion_id
        lineage_id = self.lineage_best(version.task, exclude=version.id) if champion_id and gates.drift_guard else None
        references = [r for r in dict.fromkeys([champion_id, lineage_id]) if r is not None]
        sizes = look_sizes(self.config.block_size(), len(seeds)) if references else [len(seeds)]
        rolled = 0
        for look, n in enumerate(sizes):
            prefix = seeds[:n]
            rolled += self.ensure(version, prefix)
            for ref_id in references:
                rolled += self.ensure(self.registry.get(ref_id), prefix)
            summary = self.summary(version.id, prefix)
            assert summary is not None
            comparisons: dict[int, Comparison] = {}
            for ref_id in references:
                reference = self.summary(ref_id, prefix)
                assert reference is not None
                comparisons[ref_id] = compare(
                    summary, reference, reference_id=ref_id, look=look, sizes=sizes, config=gates
                )
            if settled([c.look for c in comparisons.values()]):
                break
        champion = comparisons.get(champion_id) if champion_id is not None else None
        lineage = comparisons.get(lineage_id) if lineage_id is not None else None
        verdicts = run_gates(summary, champion, gates, lineage)
        passed = all(v.passed for v in verdicts)
        metrics = {
            "episodes_used": summary.episodes,
            "max_episodes": len(seeds),
            "looks": sizes[: look + 1],
            "rolled_out": rolled,
            "throughput": throughput_metrics(summary),
            "champion_id": champion_id,
            "lineage_best_id": lineage_id,
            "champion_throughput": None if champion is None else throughput_metrics(champion.reference),
            "paired_throughput": None
            if champion is None or champion.throughput is None
            else champion.throughput.as_dict(),
        }
        run_id = self._store_run(version, summary, verdicts, passed, iteration, "gate", metrics)
        return EvalResult(run_id, version.id, summary, verdicts, passed, metrics)

    def fresh(self, ref: str | int, iteration: int | None = None) -> dict[str, Any] | None:
        """Re-measure a version on fresh seeds (never used to gate); stored once as a `fresh` eval run."""
        seeds = self.config.fresh_seed_list()
        if not seeds:
            return None
        version = self.registry.resolve(ref)
        rolled = self.ensure(version, seeds)
        summary = self.summary(version.id, seeds)
        assert summary is not None
        with self.store.db.read() as session:
            existing = session.scalars(
                select(EvalRun)
                .where(EvalRun.policy_version_id == version.id, EvalRun.kind == "fresh")
                .order_by(EvalRun.id.desc())
            ).all()
            run_id = next((r.id for r in existing if list(r.seeds) == seeds), None)
        metrics = {"rolled_out": rolled, "throughput": throughput_metrics(summary)}
        if run_id is None:
            run_id = self._store_run(version, summary, [], None, iteration, "fresh", metrics)
        return {
            "eval_run_id": run_id,
            "policy_version_id": version.id,
            "fresh_success": summary.success_rate,
            "fresh_ci": [summary.ci_low, summary.ci_high],
            "fresh_episodes": summary.episodes,
            "rolled_out": rolled,
        }

    def _store_run(
        self,
        version: PolicyRecord,
        summary: EvalSummary,
        verdicts: list[GateVerdict],
        passed: bool | None,
        iteration: int | None,
        kind: str,
        metrics: dict[str, Any],
    ) -> int:
        with self.store.db.write() as session:
            row = EvalRun(
                policy_version_id=version.id,
                task=version.task,
                seeds=summary.seeds,
                outcomes=summary.outcomes,
                **summary.numbers(),
                gates=[v.as_dict() for v in verdicts],
                passed=passed,
                iteration=iteration,
                kind=kind,
                metrics=metrics,
            )
            session.add(row)
            session.flush()
            return row.id
