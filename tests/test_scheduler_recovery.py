"""Registered checkpoints are never rewritten, and a job at its attempt limit has an audited way out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from flywheel.config import Settings
from flywheel.identity import process_identity
from flywheel.policy.checkpoint import verify_checkpoint
from flywheel.presets import flywheel_config
from flywheel.scheduler import FlywheelLoop, PhaseContext
from flywheel.scheduler.jobs import JobBook
from flywheel.scheduler.lock import acquire_lock
from flywheel.scheduler.phases import collect_phase, train_phase
from flywheel.store import EpisodeStore
from flywheel.store.db import Database
from flywheel.store.models import JobRetry, PolicyVersion
from tests.test_scheduler_crash import ROOT, TINY


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_train_job_never_rewrites_a_registered_checkpoint(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    store = EpisodeStore.open(settings)
    ctx = PhaseContext(store, settings, flywheel_config("tiny"), progress=False)
    FlywheelLoop(ctx)._seed_demos()
    work = settings.checkpoints_root / "iteration-0000"
    unregistered = work / "attempt-1"  # an attempt killed after writing its final, before registering it
    half_written = work / ".attempt-2.tmp-0badc0de"  # one killed inside write_checkpoint
    for leftover in (unregistered, half_written):
        leftover.mkdir(parents=True)
        (leftover / "policy.safetensors").write_bytes(b"half")

    first = train_phase(ctx, 0)
    version = ctx.registry.get(first.policy_version_id)
    assert Path(version.checkpoint_uri) == work / "attempt-2"
    assert not unregistered.exists() and not half_written.exists()
    verify_checkpoint(Path(version.checkpoint_uri), version.sha256)
    before = _tree(work)

    # The job fails after registering (e.g. the connection drops before `succeed`) and is run again.
    again = train_phase(ctx, 0)
    assert again.policy_version_id == version.id
    assert _tree(work) == before  # no retraining: not a byte of the run or the checkpoint was written
    verify_checkpoint(Path(version.checkpoint_uri), version.sha256)
    with store.db.read() as session:
        assert session.query(PolicyVersion).count() == 1


def _flywheel(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "FLYWHEEL_HOME": str(home), **(env or {})}
    full_env.pop("FLYWHEEL_FAILPOINT_PAUSE", None)
    cmd = [sys.executable, "-m", "flywheel", "run", "--iterations", "0", "--quiet", *args]
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=600)


def _retry_failed_as_alice(home: Path, config: Path, reason: str) -> subprocess.CompletedProcess[str]:
    """`flywheel run --retry-failed --reason REASON` by operator alice; asserts it succeeded."""
    resumed = _flywheel(
        home, "--config", str(config), "--retry-failed", "--reason", reason, env={"FLYWHEEL_OPERATOR": "alice"}
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    return resumed


def test_job_at_its_limit_is_retried_with_an_audited_reason(tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    store = EpisodeStore.open(Settings(home=home))
    book = JobBook(store.db)
    book.ensure_iteration(0, "transfer_cube", max_attempts=1)
    ref = book.claim(0, "train")
    assert ref is not None
    book.fail(ref, "OSError: [Errno 28] No space left on device")

    refused = _flywheel(home, "--config", str(config))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    message = refused.stderr + refused.stdout
    assert "iteration 0 train job failed 1 time(s), the limit; last error: OSError: [Errno 28]" in message
    assert 'flywheel run --retry-failed --reason "<what you fixed>"' in message

    no_reason = _flywheel(home, "--config", str(config), "--retry-failed", "--reason", "  ")
    assert no_reason.returncode == 2 and "--retry-failed needs --reason" in no_reason.stderr, no_reason.stderr
    assert book.job(0, "train").attempts == 1  # nothing reset

    resumed = _retry_failed_as_alice(home, config, "freed disk space")
    assert "iteration 0 train: attempts reset (was 1" in resumed.stdout
    assert book.completed_iterations() == [0]
    job = book.job(0, "train")
    assert (job.state, job.attempts) == ("succeeded", 1)
    with store.db.read() as session:
        audit = session.query(JobRetry).one()
        assert (audit.actor, audit.reason, audit.iteration, audit.kind) == ("alice", "freed disk space", 0, "train")
        assert audit.previous_attempts == 1 and audit.previous_error.startswith("OSError: [Errno 28]")
        assert audit.created_at is not None and audit.recorded_by == process_identity()


def test_retry_failed_resets_nothing_while_another_scheduler_runs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = EpisodeStore.open(Settings(home=home))
    book = JobBook(store.db)
    book.ensure_iteration(0, "transfer_cube", max_attempts=1)
    ref = book.claim(0, "train")  # the running scheduler's job, on its last attempt
    assert ref is not None
    running = acquire_lock(store.db, "flywheel run (the one at work)")
    try:
        refused = _flywheel(home, "--retry-failed", "--reason", "impatient", env={"FLYWHEEL_OPERATOR": "bob"})
    finally:
        running.release()
    assert refused.returncode == 2 and "another scheduler is running" in refused.stderr, refused.stderr
    job = book.job(0, "train")
    assert (job.state, job.attempts) == ("running", 1)  # its attempts were not reset under it
    with store.db.read() as session:
        assert session.query(JobRetry).count() == 0


def _replay_each_unit_once(db: Database) -> None:
    """Fault injection: every transaction commits, then runs again, as after a commit whose acknowledgement
    the connection lost (`Database.transaction` re-runs the whole unit)."""
    commit = db.transaction

    def twice(fn):  # type: ignore[no-untyped-def]
        commit(fn)
        return commit(fn)

    db.transaction = twice  # type: ignore[method-assign]


def test_a_claim_and_a_reset_run_twice_after_a_lost_acknowledgement_count_once(tmp_path: Path) -> None:
    store = EpisodeStore.open(Settings(home=tmp_path / "home"))
    book = JobBook(store.db)
    book.ensure_iteration(0, "transfer_cube", max_attempts=1)
    _replay_each_unit_once(store.db)

    ref = book.claim(0, "train")
    assert ref is not None and ref.attempts == 1 and book.job(0, "train").attempts == 1
    book.fail(ref, "OSError: disk full")
    (reset,) = book.retry_failed("alice", "freed disk space")
    assert (reset.kind, reset.previous_attempts) == ("train", 1)
    with store.db.read() as session:
        assert session.query(JobRetry).count() == 1
    assert book.job(0, "train").attempts == 0


def test_a_store_wedged_by_a_rewritten_checkpoint_is_retrained_after_retry_failed(tmp_path: Path) -> None:
    """The issue's wedge: a registered candidate's files changed under it (as an older train retry did), so its
    eval fails on every attempt. `--retry-failed` rejects it as corrupt and trains the iteration again."""
    home, config = tmp_path / "home", tmp_path / "tiny.yaml"
    config.write_text(TINY)
    settings = Settings(home=home)
    store = EpisodeStore.open(settings)
    ctx = PhaseContext(store, settings, flywheel_config("tiny"), progress=False)
    book = JobBook(store.db)
    FlywheelLoop(ctx)._seed_demos()
    book.ensure_iteration(0, "transfer_cube", max_attempts=1)
    for kind in ("collect", "train"):
        ref = book.claim(0, kind)
        assert ref is not None
        book.succeed(ref, collect_phase(ctx, 0) if kind == "collect" else train_phase(ctx, 0))
    old = ctx.registry.get(int(book.result(0, "train")["policy_version_id"]))
    weights = next(Path(old.checkpoint_uri).glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-8] + b"rewrite!")  # the files no longer match the registry

    wedged = _flywheel(home, "--config", str(config))
    assert wedged.returncode == 2 and "iteration 0 eval job failed 1 time(s)" in wedged.stderr, wedged.stderr[-2000:]

    resumed = _retry_failed_as_alice(home, config, "checkpoint volume restored")
    assert f"candidate v{old.id} rejected" in resumed.stdout
    assert book.completed_iterations() == [0]
    new_id = int(book.result(0, "train")["policy_version_id"])
    assert new_id != old.id and ctx.registry.get(old.id).status == "rejected"
    new = ctx.registry.get(new_id)
    verify_checkpoint(Path(new.checkpoint_uri), new.sha256)
    assert Path(old.checkpoint_uri).is_dir()  # the rejected version's row still points at its files
    with store.db.read() as session:
        audited = {(r.kind, r.actor) for r in session.query(JobRetry)}
    assert audited == {("eval", "alice"), ("train", "alice")}
