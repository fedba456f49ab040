"""`flywheel run`: seed demos, then iterations of collect → train → eval → promote, resumable after a crash."""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections.abc import Callable
from typing import TypeVar

from rich.console import Console

from flywheel.collect import CollectSpec, collect
from flywheel.collect.seeds import demo_seeds
from flywheel.errors import DatabaseUnavailableError, ForeignFolderError, StalledLoopError
from flywheel.ownership import claim_checkpoints_folder
from flywheel.registry import CHAMPION
from flywheel.scheduler.jobs import (
    Heartbeat,
    JobBook,
    JobFailedError,
    JobRef,
    RetryRequest,
    job_heartbeat,
    last_line,
)
from flywheel.scheduler.lock import SchedulerLockHandle, acquire_lock
from flywheel.scheduler.phases import (
    PhaseContext,
    collect_phase,
    eval_phase,
    promote_phase,
    retrain_corrupt_candidates,
    train_phase,
)
from flywheel.scheduler.preflight import check_observations
from flywheel.scheduler.results import (
    CollectResult,
    EvalPhaseResult,
    IterationSummary,
    PromoteResult,
    StoredResult,
    TrainPhaseResult,
)
from flywheel.store import EpisodeFilter
from flywheel.store.db import is_transient_db_error

SummaryCallback = Callable[[IterationSummary], None]
R = TypeVar("R", bound=StoredResult)
FAILPOINT_ENV = "FLYWHEEL_FAILPOINT_PAUSE"
MAX_OUTAGES_PER_JOB = 20  # a "transient" error that never clears (a standby never promoted) fails the job


def pause_at_failpoint(kind: str) -> None:
    """Fault-injection hook for crash tests: `FLYWHEEL_FAILPOINT_PAUSE=promote:5` sleeps 5 s after the
    promote job is claimed (state `running`, heartbeats beating), so a test can SIGKILL the scheduler or
    stop its database inside that phase."""
    spec = os.environ.get(FAILPOINT_ENV, "")
    phase, _, seconds = spec.partition(":")
    if phase == kind:
        time.sleep(float(seconds or 5))


class FlywheelLoop:
    """Runs iterations until `target` are done. Iteration 0 bootstraps a champion from demos when there is none."""

    def __init__(self, ctx: PhaseContext, console: Console | None = None) -> None:
        self.ctx = ctx
        self.book = JobBook(ctx.store.db)
        self.console = console or Console()
        self._lock: SchedulerLockHandle | None = None

    def run(
        self, target: int, on_summary: SummaryCallback | None = None, retry_failed: RetryRequest | None = None
    ) -> list[IterationSummary]:
        """Run until `target` iterations are done; `retry_failed` first resets jobs at their attempt limit
        (under the lock, so no running scheduler's job is reset)."""
        holder = f"flywheel run (pid {os.getpid()} on {socket.gethostname()})"
        self._lock = acquire_lock(self.ctx.store.db, holder)
        try:
            claim_checkpoints_folder(self.ctx.settings, self.ctx.store.owner)  # refuse before writing anything
            if retry_failed is not None:
                self._retry_failed(retry_failed)
            self.ctx.store.db.retrying(lambda: check_observations(self.ctx))  # refuse before collecting anything
            self.ctx.store.db.retrying(self._seed_demos)  # idempotent (demos carry source keys): re-run after an outage
            first = 0 if self._needs_bootstrap() else 1
            for number in range(first, target + 1):
                if number in self.book.completed_iterations():
                    continue
                summary = self._iteration(number)
                if on_summary is not None:
                    on_summary(summary)
            return self.book.summaries()
        finally:
            self._lock.release()

    def _retry_failed(self, request: RetryRequest) -> None:
        retried = self.book.retry_failed(request.actor, request.reason)
        for job in retried:
            self.console.print(
                f"iteration {job.iteration} {job.kind}: attempts reset (was {job.previous_attempts}, last error: "
                f"{last_line(job.previous_error)}) by {request.actor}"
            )
        iterations = [job.iteration for job in retried]
        for line in retrain_corrupt_candidates(self.ctx, self.book, iterations, request.actor, request.reason):
            self.console.print(line)

    def _needs_bootstrap(self) -> bool:
        done = self.book.completed_iterations()
        started = self.book.latest_iteration()
        return 0 in done or started == 0 or self.ctx.registry.alias(CHAMPION) is None

    def _seed_demos(self) -> None:
        cfg = self.ctx.config
        have = self.ctx.store.count(EpisodeFilter(task=cfg.task, tag="demo"))
        if have >= cfg.demos or self.ctx.registry.alias(CHAMPION) is not None:
            return
        self.console.rule(f"seeding {cfg.demos} expert demos ({cfg.task})")
        spec = CollectSpec.for_demos(
            cfg.task,
            obs_mode=cfg.obs_mode,
            cameras=tuple(cfg.cameras),
            image_size=tuple(cfg.image_size),
            max_steps=cfg.max_steps,
        )
        collect(self.ctx.store, spec, demo_seeds(cfg.demos), workers=cfg.workers, progress=self.ctx.progress)

    def _iteration(self, number: int) -> IterationSummary:
        cfg = self.ctx.config
        self.book.ensure_iteration(number, cfg.task, cfg.max_attempts)
        self.console.rule(f"iteration {number}")
        collected = self._job(number, "collect", CollectResult, lambda: collect_phase(self.ctx, number))
        trained = self._job(number, "train", TrainPhaseResult, lambda: train_phase(self.ctx, number))
        candidate = trained.policy_version_id
        evaluation = self._job(number, "eval", EvalPhaseResult, lambda: eval_phase(self.ctx, number, candidate))
        verdict = self._job(
            number, "promote", PromoteResult, lambda: promote_phase(self.ctx, number, candidate, evaluation)
        )
        summary = self.ctx.store.db.retrying(lambda: self._summary(number, collected, candidate, evaluation, verdict))
        self.book.finish_iteration(number, summary)
        return summary

    def _job(self, number: int, kind: str, model: type[R], body: Callable[[], R]) -> R:
        outages = 0
        while True:
            ref = self.book.claim(number, kind)
            if ref is None:
                return model.model_validate(self.book.result(number, kind))  # stored by an earlier run
            self.console.print(f"[bold]{kind}[/] (iteration {number}, attempt {ref.attempts})")
            try:
                result = self._with_heartbeat(ref, body)
            except (JobFailedError, DatabaseUnavailableError):
                raise  # an outage longer than db_retry_seconds stops the run; `flywheel run` resumes it
            except StalledLoopError:
                self.book.release(ref, "stalled: nothing new to train on")  # not a failed attempt: a config to change
                raise
            except ForeignFolderError:
                self.book.release(ref, "refused: the checkpoints folder is another store's")  # a setting to change
                raise
            except Exception as exc:
                if is_transient_db_error(exc) and outages < MAX_OUTAGES_PER_JOB:
                    outages += 1
                    self._wait_out_outage(ref, exc)
                    continue
                self.book.fail(ref, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}")
                self.console.print(f"[red]{kind} failed (attempt {ref.attempts}):[/] {exc}")
                continue  # claim() raises JobFailedError once attempts are used up
            self.book.succeed(ref, result)
            return result

    def _wait_out_outage(self, ref: JobRef, exc: Exception) -> None:
        """A database outage interrupted the job mid-transaction: wait for the database, give the attempt back
        and run the job again (every phase is idempotent)."""
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        self.console.print(
            f"[yellow]{ref.kind} interrupted by a database outage ({reason}); waiting for the database, "
            "the attempt does not count[/]"
        )
        self.ctx.store.db.wait_until_reachable()
        self.book.release(ref, f"interrupted by a database outage: {reason}")

    def _with_heartbeat(self, ref: JobRef, body: Callable[[], R]) -> R:
        lock = self._lock
        assert lock is not None

        def beat() -> None:
            lock.heartbeat()
            job_heartbeat(self.ctx.store.db, ref.id)

        with Heartbeat(beat, self.ctx.config.heartbeat_seconds) as heartbeat:
            pause_at_failpoint(ref.kind)
            result = body()
        if heartbeat.error is not None:
            raise heartbeat.error
        return result

    def _summary(
        self,
        number: int,
        collected: CollectResult,
        candidate: int,
        evaluation: EvalPhaseResult,
        verdict: PromoteResult,
    ) -> IterationSummary:
        from flywheel.evaluate.runner import Evaluator, throughput_metrics

        champion_id = self.ctx.registry.alias(CHAMPION)
        champion_eval, per_hour, fresh, drift = None, {}, None, {"lineage_drift": None}
        if champion_id is not None:
            evaluator = Evaluator(self.ctx.store, self.ctx.config.eval, progress=False)
            champion_eval = evaluator.stored_summary(champion_id)
            per_hour = {} if champion_eval is None else throughput_metrics(champion_eval)
            fresh = evaluator.latest_fresh(champion_id)
            drift = evaluator.lineage_drift(self.ctx.config.task, champion_id)
        per_hour_ci = per_hour.get("successes_per_hour_ci") or [None, None]
        return IterationSummary(
            iteration=number,
            episodes_by_tag=collected.episodes_by_tag,
            episodes=collected.episodes,
            interventions_per_episode=collected.interventions_per_episode,
            collect_success_rate=(collected.successes / collected.episodes) if collected.episodes else None,
            candidate=candidate,
            candidate_success=evaluation.success_rate,
            candidate_ci=[evaluation.ci_low, evaluation.ci_high],
            eval_episodes_used=evaluation.eval_episodes_used,
            eval_rollouts=evaluation.eval_rollouts,
            champion=champion_id,
            champion_success=None if champion_eval is None else champion_eval.success_rate,
            champion_ci=None if champion_eval is None else [champion_eval.ci_low, champion_eval.ci_high],
            champion_eval_episodes=None if champion_eval is None else champion_eval.episodes,
            champion_successes_per_hour=per_hour.get("successes_per_hour"),
            champion_successes_per_hour_ci=list(per_hour_ci),
            champion_mean_seconds_to_success=per_hour.get("mean_seconds_to_success"),
            champion_fresh_success=None if fresh is None else fresh["success"],
            champion_fresh_ci=None if fresh is None else fresh["ci"],
            champion_fresh_episodes=None if fresh is None else fresh["episodes"],
            **drift,
            verdict=verdict.verdict,
            reason=verdict.reason,
            passed_because=evaluation.passed_because,
        )
