"""The four jobs of an iteration. Each is idempotent: re-running it after a kill finishes the same work."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flywheel.collect import CollectSpec, collect
from flywheel.collect.attended import attended_config
from flywheel.collect.seeds import collection_seeds
from flywheel.config import Settings
from flywheel.errors import StalledLoopError
from flywheel.evaluate.runner import Evaluator
from flywheel.ownership import claim_checkpoints_folder
from flywheel.registry import CHAMPION, PolicyRegistry
from flywheel.registry.service import CORRUPT_REJECTION, rejected_as_corrupt
from flywheel.scheduler.config import FlywheelConfig
from flywheel.scheduler.jobs import JobBook
from flywheel.scheduler.results import CollectResult, EvalPhaseResult, PromoteResult, TrainPhaseResult
from flywheel.store import EpisodeFilter, EpisodeStore
from flywheel.store.models import JobState, PolicyVersion

SCHEDULER_ACTOR = "scheduler"


@dataclass
class PhaseContext:
    store: EpisodeStore
    settings: Settings
    config: FlywheelConfig
    progress: bool = True

    @property
    def registry(self) -> PolicyRegistry:
        return PolicyRegistry(self.store.db)


def collect_phase(ctx: PhaseContext, iteration: int) -> CollectResult:
    """Roll out the champion with the simulated operator on this iteration's seeds."""
    champion_id = ctx.registry.alias(CHAMPION)
    if champion_id is None:
        return CollectResult(skipped="no champion yet: this iteration trains on demos only")
    champion = ctx.registry.get(champion_id)
    cfg = ctx.config
    spec = CollectSpec.for_policy(
        champion,
        f"iteration-{iteration}",
        max_steps=cfg.max_steps,
        operator_mode=cfg.operator_mode,
        sim_operator=cfg.operator,
        iteration=iteration,
        envs_per_worker=cfg.envs_per_worker,
        policy_device=cfg.policy_device,
        attended=attended_config(ctx.settings, cfg.console_timeout_seconds, cfg.console_claim_timeout_seconds)
        if cfg.operator_mode == "console"
        else None,
    )
    collect(
        ctx.store,
        spec,
        collection_seeds(iteration, cfg.episodes_per_iteration),
        workers=cfg.workers,
        progress=ctx.progress,
    )
    return iteration_data_summary(ctx.store, iteration).model_copy(update={"policy_version_id": champion.id})


def iteration_data_summary(store: EpisodeStore, iteration: int) -> CollectResult:
    """Counts from the store itself (right even when collection was resumed after a crash)."""
    filters = EpisodeFilter(iteration=iteration)
    episodes = store.count(filters)
    takeovers = store.takeover_count(filters)
    return CollectResult(
        episodes=episodes,
        episodes_by_tag=store.count_by_tag(filters),
        successes=store.count(EpisodeFilter(iteration=iteration, success=True)),
        interventions=takeovers,
        interventions_per_episode=takeovers / episodes if episodes else 0.0,
    )


def train_phase(ctx: PhaseContext, iteration: int) -> TrainPhaseResult:
    """Train a candidate on all non-rejected data, warm-started from the champion; register it once.

    The resumable training state lives in `iteration-NNNN/checkpoints`; each attempt's final checkpoint goes
    to a directory of its own (`iteration-NNNN/attempt-K`) that is registered once complete and fsynced and
    never written again. A candidate already registered for the iteration is returned without training.
    """
    from flywheel.policy.checkpoint import verify_checkpoint
    from flywheel.train.data import data_fingerprint, load_training_episodes
    from flywheel.train.registration import register_trained_candidate
    from flywheel.train.trainer import run_training

    cfg = ctx.config
    champion_id = ctx.registry.alias(CHAMPION)
    train_config = cfg.train if champion_id is not None else cfg.bootstrap_train()
    versions = _iteration_versions(ctx, iteration)
    registered = _candidate(versions)
    if registered is not None:
        return TrainPhaseResult(
            policy_version_id=registered.id, steps=train_config.steps, metrics=dict(registered.metrics)
        )
    # Checked again right before clearing attempt folders (another store may have marked the folder since).
    claim_checkpoints_folder(ctx.settings, ctx.store.owner)
    work_dir = ctx.settings.checkpoints_root / f"iteration-{iteration:04d}"
    # A rejected candidate's directory stays: its row still points there.
    final_dir = _fresh_attempt_dir(work_dir, keep=frozenset(Path(v.checkpoint_uri).resolve() for v in versions))
    init_from = ctx.registry.get(champion_id).checkpoint_uri if champion_id is not None else None
    episodes = load_training_episodes(ctx.store, cfg.task)
    if champion_id is None:
        _refuse_rejected_repeat(ctx, iteration, train_config.model_dump(mode="json"), data_fingerprint(episodes))
    result = run_training(
        train_config, episodes, work_dir, init_from=init_from, progress=ctx.progress, final_dir=final_dir
    )
    verify_checkpoint(result.checkpoint_dir, result.sha256)  # the sha256 registered is that of these files

    def register() -> int:
        # Re-checked first: a retry after a commit whose acknowledgement was lost finds the version it wrote.
        existing = _candidate(_iteration_versions(ctx, iteration))
        if existing is not None:
            return existing.id
        return register_trained_candidate(
            ctx.registry,
            task=cfg.task,
            config=train_config,
            result=result,
            parent_id=champion_id,
            iteration=iteration,
        ).id

    version_id = ctx.store.db.retrying(register)
    return TrainPhaseResult(policy_version_id=version_id, steps=result.steps, metrics=dict(result.metrics))


def _refuse_rejected_repeat(ctx: PhaseContext, iteration: int, config: dict, fingerprint: dict) -> None:
    """With no champion nothing new is collected, so an earlier iteration's rejected candidate trained with the
    same config on the same episodes would only be trained again and rejected again: stop and say what to change."""
    earlier = _loop_versions(ctx, PolicyVersion.iteration < iteration, PolicyVersion.status == "rejected")
    for version in earlier:
        same_data = version.data_fingerprint.get("sha256") == fingerprint["sha256"]
        same_config = _as_current_config(version.config) == config
        if same_data and same_config and not rejected_as_corrupt(version.status, version.metrics):
            raise StalledLoopError(
                f"iteration {iteration}: no champion yet, and policy {version.id} (iteration {version.iteration}) "
                f"was already trained with this config on these {fingerprint['episodes']} episodes and rejected by "
                f"the gates (`flywheel policies show {version.id}` says why). Without a champion nothing new is "
                "collected, so training again would repeat it. Change something, then run again: seed more demos "
                "(`demos`), train longer (`bootstrap_steps`), or lower `eval.gates.success_floor` so a weak first "
                "policy can collect under the operator's takeovers."
            )


def _as_current_config(stored: dict) -> dict | None:
    """A stored train config as this version of the code reads it (a setting added since takes its default, as
    it did then); None when it no longer validates."""
    from pydantic import ValidationError

    from flywheel.train.config import TrainConfig

    try:
        return TrainConfig.model_validate(stored).model_dump(mode="json")
    except ValidationError:
        return None


ATTEMPT_PREFIX = "attempt-"


def _fresh_attempt_dir(work_dir: Path, keep: frozenset[Path] = frozenset()) -> Path:
    """A final-checkpoint directory no attempt has used; earlier attempts' finals not in `keep` (the registered
    ones, resolved) and half-written ones are removed (the scheduler lock excludes other writers)."""
    from flywheel.policy.checkpoint import partial_writes

    numbers = [0]
    if work_dir.is_dir():
        for path in work_dir.iterdir():
            if path.name.startswith(ATTEMPT_PREFIX) and path.name[len(ATTEMPT_PREFIX) :].isdigit():
                numbers.append(int(path.name[len(ATTEMPT_PREFIX) :]))
                if path.resolve() not in keep:
                    shutil.rmtree(path, ignore_errors=True)
        for path in partial_writes(work_dir, ATTEMPT_PREFIX):  # a write killed mid-way: a checkpoint's size each
            shutil.rmtree(path, ignore_errors=True)
    return work_dir / f"{ATTEMPT_PREFIX}{max(numbers) + 1}"


def _iteration_versions(ctx: PhaseContext, iteration: int) -> list[PolicyVersion]:
    """Every version the loop registered for `iteration`, oldest first."""
    return _loop_versions(ctx, PolicyVersion.iteration == iteration)


def _loop_versions(ctx: PhaseContext, *conditions: Any) -> list[PolicyVersion]:
    """The loop's task's versions matching `conditions` (SQLAlchemy column expressions), oldest first."""
    from sqlalchemy import select

    query = select(PolicyVersion).where(PolicyVersion.task == ctx.config.task, *conditions).order_by(PolicyVersion.id)
    return ctx.store.db.query(lambda session: list(session.scalars(query)))


def _candidate(versions: list[PolicyVersion]) -> PolicyVersion | None:
    """The iteration's candidate: its first registered version, unless that was rejected as corrupt
    (`retrain_corrupt_candidates` sends such an iteration back to training)."""
    return next((v for v in versions if not rejected_as_corrupt(v.status, v.metrics)), None)


def retrain_corrupt_candidates(
    ctx: PhaseContext, book: JobBook, iterations: Iterable[int], actor: str, reason: str
) -> list[str]:
    """The way out of an iteration whose registered candidate's checkpoint fails its sha256 (its eval fails on
    every attempt): reject that candidate as corrupt and send the iteration's train job back to pending, each
    audited, so the next run trains a new candidate into a directory of its own. Unfinished iterations only;
    a champion is never touched (roll back first)."""
    from flywheel.policy.checkpoint import CheckpointError, verify_checkpoint

    done: list[str] = []
    finished = set(book.completed_iterations())
    for number in sorted(set(iterations)):
        if number in finished or book.job(number, "train").state != JobState.SUCCEEDED:
            continue
        candidate = ctx.registry.get(TrainPhaseResult.model_validate(book.result(number, "train")).policy_version_id)
        if candidate.status == "champion":
            continue
        try:
            verify_checkpoint(Path(candidate.checkpoint_uri), candidate.sha256)
        except CheckpointError as exc:
            ctx.registry.reject(candidate.id, reason=f"{CORRUPT_REJECTION} ({exc}); retrained after: {reason}")
            book.reopen(number, "train", actor, f"candidate v{candidate.id} rejected as corrupt; {reason}")
            done.append(f"iteration {number}: candidate v{candidate.id} rejected ({exc}); it will be trained again")
    return done


def eval_phase(ctx: PhaseContext, iteration: int, candidate_id: int) -> EvalPhaseResult:
    """Gate the candidate (sequentially, in blocks of paired seeds); episodes already stored are not re-run."""
    result = Evaluator(ctx.store, ctx.config.eval, progress=ctx.progress).evaluate(candidate_id, iteration=iteration)
    s = result.summary
    return EvalPhaseResult(
        eval_run_id=result.eval_run_id,
        passed=result.passed,
        success_rate=s.success_rate,
        ci_low=s.ci_low,
        ci_high=s.ci_high,
        latency_p95_ms=s.latency_p95_ms,
        eval_episodes_used=result.metrics["episodes_used"],
        eval_rollouts=result.metrics["rolled_out"],
        failed_gates=[v.reason for v in result.verdicts if not v.passed],
        passed_because=[v.reason for v in result.verdicts if v.passed and v.gate == "improvement"],
    )


def promote_phase(ctx: PhaseContext, iteration: int, candidate_id: int, evaluation: EvalPhaseResult) -> PromoteResult:
    """Promote on a stored passing verdict (the registry re-checks it), then re-measure the new champion on fresh
    seeds (stored per seed, so a killed promote job resumes the fresh episodes); otherwise reject."""
    registry = ctx.registry
    status = registry.get(candidate_id).status
    if evaluation.passed:
        if status != "champion":
            why = "; ".join(evaluation.passed_because) or "all gates passed"
            registry.promote(
                candidate_id,
                actor=SCHEDULER_ACTOR,
                reason=f"iteration {iteration}: {why} (eval run {evaluation.eval_run_id})",
            )
        fresh = Evaluator(ctx.store, ctx.config.eval, progress=ctx.progress).fresh(candidate_id, iteration=iteration)
        return PromoteResult(verdict="promoted", policy_version_id=candidate_id, fresh=fresh)
    reasons = "; ".join(evaluation.failed_gates) or "gates failed"
    if status != "rejected":
        registry.reject(candidate_id, reason=reasons)
    return PromoteResult(verdict="rejected", policy_version_id=candidate_id, reason=reasons)
