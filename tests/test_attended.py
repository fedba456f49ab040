"""Attended collection (`--operator console`): real worker processes, a real SQLite store, a real console session.

Unclaimed → the worker falls back to the simulated operator and the request expires (a late claim is refused);
claimed and completed in the console → the worker reports the console's episode, nothing is duplicated, and
the console's replay reaches exactly the worker's state; a claimer that stops beating → fallback, abandoned.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from flywheel.collect import CollectReport, CollectSpec, collect
from flywheel.collect.attended import AttendedConfig
from flywheel.collect.takeover_requests import (
    ClaimLostError,
    ClaimRefusedError,
    NewTakeoverRequest,
    TakeoverRequestRecord,
    TakeoverRequests,
)
from flywheel.config import Settings
from flywheel.live import LiveConfig, SessionManager
from flywheel.registry import PolicyRecord
from flywheel.store import EpisodeFilter, EpisodeStore

ROOT = Path(__file__).resolve().parents[1]
SEED = 7
CONSOLE_MODE = ("--operator", "console", "--console-timeout", "1")
OPERATOR = {"no_progress_steps": 15, "min_policy_steps": 5, "handback_after_steps": 30}


@pytest.fixture
def store(sqlite_settings: Settings) -> Iterator[EpisodeStore]:
    opened = EpisodeStore.open(sqlite_settings)
    yield opened
    opened.db.dispose()


def _spec(store: EpisodeStore, policy: PolicyRecord, **attended: float) -> CollectSpec:
    return CollectSpec(
        task="transfer_cube",
        max_steps=120,
        operator_mode="console",
        sim_operator=OPERATOR,
        operator_name="sim-operator",
        policy_version_id=policy.id,
        policy_checkpoint=policy.checkpoint_uri,
        policy_sha256=policy.sha256,
        iteration=3,
        source_prefix="attended-test",
        attended=AttendedConfig(db_url=store.db.url, poll_s=0.1, **attended),
    )


def _collect_in_background(store: EpisodeStore, spec: CollectSpec) -> tuple[threading.Thread, list[CollectReport]]:
    reports: list[CollectReport] = []
    thread = threading.Thread(
        target=lambda: reports.append(collect(store, spec, [SEED], workers=1, progress=False)), daemon=True
    )
    thread.start()
    return thread, reports


def _wait_for_request(
    requests: TakeoverRequests, worker: threading.Thread, timeout: float = 600
) -> TakeoverRequestRecord:
    """The worker's first open request; fails at once if the worker ended without one (the long timeout is for a
    loaded machine, where reaching the takeover step can take minutes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = requests.list_open()
        if waiting:
            return waiting[0]
        if not worker.is_alive():
            raise AssertionError("the worker ended without asking for a takeover")
        time.sleep(0.1)
    raise AssertionError(f"the worker never asked for a takeover in {timeout:g} s")


def test_unclaimed_request_expires_and_the_simulated_operator_finishes(
    sqlite_settings: Settings, store: EpisodeStore, policy: PolicyRecord
) -> None:
    """Through the CLI: `flywheel collect --operator console --console-timeout 1`, nobody in the console."""
    env = {**os.environ, "FLYWHEEL_HOME": str(sqlite_settings.home), "MUJOCO_GL": "egl"}
    proc = subprocess.run(
        [sys.executable, "-m", "flywheel", "collect", "--policy", str(policy.id), "--episodes", "1", *CONSOLE_MODE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    requests = TakeoverRequests(store.db)
    (request,) = requests.list_recent()
    assert request.status == "expired" and "simulated operator" in (request.note or "")
    (episode,) = store.list_episodes(with_segments=True)
    assert episode.source_key == request.source_key and episode.tag == "intervention"
    takeover = next(s for s in episode.segments if s.controller == "expert")
    assert takeover.start == request.step and takeover.trigger == request.trigger == "no_progress"
    assert takeover.operator is not None and takeover.operator.startswith("simulated-operator")
    with pytest.raises(ClaimRefusedError, match=f"takeover request {request.id} cannot be claimed: expired"):
        requests.claim(request.id, "late-larry", token="t")
    manager = SessionManager(store, background=False)
    with pytest.raises(ClaimRefusedError, match="expired"):
        manager.claim(request.id, "late-larry")
    assert store.count() == 1


def _request(timeout_s: float, source_key: str = "x/seed-1") -> NewTakeoverRequest:
    rng = np.random.default_rng(0)
    return NewTakeoverRequest(
        source_key=source_key,
        task="transfer_cube",
        env_seed=1,
        step=3,
        trigger="no_progress",
        policy_version_id=None,
        iteration=None,
        env_config={},
        policy_checkpoint="ckpt",
        policy_sha256=None,
        actions=rng.normal(size=(3, 14)),
        state=rng.normal(size=35).astype(np.float32),
        worker="test",
        timeout_s=timeout_s,
    )


def test_request_state_machine(settings: Settings) -> None:
    """On SQLite and PostgreSQL: exact round trip of actions, one winner per transition, superseded requests."""
    opened = EpisodeStore.open(settings)
    requests = TakeoverRequests(opened.db)
    new = _request(60)
    first = requests.create(new)
    assert np.array_equal(first.action_array(), new.actions) and np.array_equal(first.state_array(), new.state)
    assert [r.id for r in requests.list_open()] == [first.id] and 59 < first.seconds_left() <= 60
    claimed = requests.claim(first.id, "alice", token="a")
    assert claimed.status == "claimed" and requests.list_open() == []
    with pytest.raises(ClaimRefusedError, match="already claimed by alice"):
        requests.claim(first.id, "bob", token="b")
    assert requests.heartbeat(first.id, "a") and not requests.heartbeat(first.id, "b")
    assert not requests.expire(first.id) and not requests.abandon_stale(first.id, claim_timeout_s=60)
    second = requests.create(new)  # the worker died and its replacement asks again for the same episode
    superseded = requests.get(first.id)
    assert superseded.status == "abandoned" and f"superseded by request {second.id}" in (superseded.note or "")
    assert not requests.heartbeat(first.id, "a")
    requests.claim(second.id, "bob", token="b")
    assert requests.release(second.id, "b", "bob gave up") and requests.get(second.id).status == "abandoned"
    opened.db.dispose()


def test_claim_after_the_deadline_is_refused_even_before_the_worker_expires_it(store: EpisodeStore) -> None:
    requests = TakeoverRequests(store.db)
    request = requests.create(_request(0.2))
    time.sleep(0.3)
    assert requests.get(request.id).status == "pending" and requests.list_open() == []
    with pytest.raises(ClaimRefusedError, match=rf"takeover request {request.id} expired \d+ s ago"):
        requests.claim(request.id, "late-larry", token="t")
    assert requests.expire(request.id) and requests.get(request.id).status == "expired"


def test_console_claims_replays_exactly_and_the_worker_reports_its_episode(
    store: EpisodeStore, policy: PolicyRecord
) -> None:
    spec = _spec(store, policy, timeout_s=120, claim_timeout_s=30)
    thread, reports = _collect_in_background(store, spec)
    manager = SessionManager(store, LiveConfig(claim_heartbeat_s=0.5, reap_every_s=0.5))
    try:
        request = _wait_for_request(manager.requests, thread)
        assert request.step == len(request.actions) and request.trigger == "no_progress"
        session = manager.claim(request.id, "alice")
        # Replay determinism: the console's env is bit-for-bit where the worker's was at the takeover step.
        assert np.array_equal(session.runner.obs["state"], request.state_array())
        status = session.status()
        assert status.controller == "human" and status.operator == "alice" and status.t == request.step
        before = session.tcp_position("right")
        for _ in range(3):
            session.jog("right", "z", 1)
        assert session.tcp_position("right")[2] - before[2] > 0.03
        session.hand_back()
        session.advance(10)
        record = manager.finish(session.id)
        assert record is not None
        thread.join(timeout=120)
        assert not thread.is_alive()
    finally:
        manager.close()
    (report,) = reports
    assert report.episode_ids == [record.id] and store.count() == 1  # reported, not duplicated
    done = manager.requests.get(request.id)
    assert done.status == "completed" and done.episode_id == record.id
    stored = store.get(record.id)
    assert stored.source_key == spec.source_key(SEED) and stored.iteration == 3
    assert stored.tag == "intervention" and stored.operator == "alice" and stored.policy_version_id == policy.id
    spans = [(s.start, s.end, s.controller, s.operator, s.trigger) for s in stored.segments]
    step = request.step
    assert spans[0] == (0, step, "policy", None, "start")
    assert spans[1] == (step, step + 18, "human", "alice", "no_progress")
    assert spans[2][2:] == ("policy", None, "console_hand_back") and spans[2][1] == stored.length
    frames = store.read_frames(record.id)
    assert np.array_equal(frames.state[step], request.state_array())
    assert np.array_equal(frames.action[:step], request.action_array().astype(np.float32))


def test_claimer_that_stops_beating_is_abandoned_and_the_worker_falls_back(
    store: EpisodeStore, policy: PolicyRecord
) -> None:
    spec = _spec(store, policy, timeout_s=120, claim_timeout_s=1.0)
    thread, reports = _collect_in_background(store, spec)
    requests = TakeoverRequests(store.db)
    request = _wait_for_request(requests, thread)
    requests.claim(request.id, "ghost", token="tab-closed")  # a console that dies right after claiming
    thread.join(timeout=120)
    assert not thread.is_alive()
    abandoned = requests.get(request.id)
    assert abandoned.status == "abandoned" and "no heartbeat from ghost" in (abandoned.note or "")
    assert not requests.heartbeat(request.id, "tab-closed")
    with pytest.raises(ClaimLostError, match="no longer yours"):
        requests.complete(request.id, "tab-closed", episode_id=1)
    (report,) = reports
    (episode,) = store.list_episodes(EpisodeFilter(), with_segments=True)
    assert report.episode_ids == [episode.id] and episode.operator == "sim-operator"
    assert [s.controller for s in episode.segments][:2] == ["policy", "expert"]


def test_console_session_that_times_out_saves_its_part_for_the_worker(
    store: EpisodeStore, policy: PolicyRecord
) -> None:
    spec = _spec(store, policy, timeout_s=120, claim_timeout_s=30)
    thread, reports = _collect_in_background(store, spec)
    manager = SessionManager(store, LiveConfig(idle_timeout_s=1.0, claim_heartbeat_s=0.2, reap_every_s=0.2))
    try:
        request = _wait_for_request(manager.requests, thread)
        session = manager.claim(request.id, "bob")
        session.jog("left", "x", 1)  # then bob closes the browser: nobody touches the session again
        thread.join(timeout=120)
        assert not thread.is_alive()
    finally:
        manager.close()
    (report,) = reports
    ended = manager.ended(session.id)
    assert ended is not None and ended.reason == "idle_timeout"
    (episode,) = store.list_episodes(with_segments=True)
    assert report.episode_ids == [episode.id] == [ended.episode_id]
    assert episode.length == request.step + 6 and not episode.success and episode.tag == "intervention"
    assert "idle" in (episode.error or "") and episode.segments[-1].operator == "bob"
    assert manager.requests.get(request.id).status == "completed"


def test_scheduler_collect_phase_in_console_mode(
    sqlite_settings: Settings, store: EpisodeStore, policy: PolicyRecord
) -> None:
    """`flywheel run --operator console` reaches the workers: requests carry the iteration, then expire."""
    from flywheel.scheduler import PhaseContext
    from flywheel.scheduler.config import FlywheelConfig
    from flywheel.scheduler.phases import collect_phase

    cfg = FlywheelConfig(
        episodes_per_iteration=1,
        workers=1,
        max_steps=120,
        operator=OPERATOR,
        operator_mode="console",
        console_timeout_seconds=1,
    )
    summary = collect_phase(PhaseContext(store, sqlite_settings, cfg, progress=False), iteration=2)
    assert summary.episodes == 1 and summary.episodes_by_tag["intervention"] == 1
    (request,) = TakeoverRequests(store.db).list_recent()
    assert request.iteration == 2 and request.status == "expired" and request.policy_version_id == policy.id
    bad = subprocess.run(
        [sys.executable, "-m", "flywheel", "run", "--operator", "robot", "--home", str(sqlite_settings.home)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "use simulated or console" in bad.stderr
