"""Live teleop sessions on the real sim and a real SQLite store: take over, jog, hand back, save; expert assist;
idle timeout; errors; calls from many threads (Streamlit reruns) on one session."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from flywheel.config import Settings
from flywheel.live import (
    LiveConfig,
    LiveSessionError,
    NotInControlError,
    RolloutSpec,
    SessionManager,
    SessionNotFoundError,
)
from flywheel.registry import PolicyRecord
from flywheel.store import EpisodeStore


@pytest.fixture
def store(sqlite_settings: Settings) -> Iterator[EpisodeStore]:
    opened = EpisodeStore.open(sqlite_settings)
    yield opened
    opened.db.dispose()


@pytest.fixture
def manager(store: EpisodeStore) -> Iterator[SessionManager]:
    opened = SessionManager(store, LiveConfig(), background=False)
    yield opened
    opened.close()


def test_take_over_jog_hand_back_and_save_as_intervention(
    manager: SessionManager, store: EpisodeStore, policy: PolicyRecord
) -> None:
    session = manager.start(RolloutSpec(policy="champion", seed=11), operator="alice")
    assert session.status().controller == "policy"
    assert session.advance(20) == 20
    first = session.frame()
    assert first.shape == (240, 320, 3) and first.dtype == np.uint8
    session.take_over()
    status = session.status()
    assert (status.controller, status.operator, status.t) == ("human", "alice", 20)
    assert session.advance(10) == 0  # the simulation waits for the person
    before = session.tcp_position("left")
    for _ in range(3):
        session.jog("left", "z", 1)
    moved = session.tcp_position("left") - before
    assert moved[2] > 0.04 and np.abs(moved[:2]).max() < 0.01
    assert not np.array_equal(session.frame(), first)
    session.gripper("right", open_=False)
    assert session.status().t == 20 + 3 * 6 + 10
    session.hand_back()
    session.advance(7)
    record = manager.finish(session.id)
    assert record is not None and store.count() == 1
    stored = store.get(record.id)
    assert stored.tag == "intervention" and stored.operator == "alice" and stored.policy_version_id == policy.id
    assert stored.length == 55 and not stored.success and stored.source_key == f"console/session-{session.id}"
    spans = [(s.start, s.end, s.controller, s.operator, s.trigger) for s in stored.segments]
    assert spans == [
        (0, 20, "policy", None, "start"),
        (20, 48, "human", "alice", "console"),
        (48, 55, "policy", None, "console_hand_back"),
    ]
    with pytest.raises(SessionNotFoundError, match=f"saved as episode {record.id} \\(intervention\\)"):
        manager.get(session.id)


def test_expert_assist_finishes_transfer_cube(
    manager: SessionManager, store: EpisodeStore, policy: PolicyRecord
) -> None:
    """From whatever state the policy left, as long as it has not knocked the cube out of reach."""
    for seed in range(10):  # the tiny policy is wild: skip seeds where it flung the cube away
        session = manager.start(RolloutSpec(policy=str(policy.id), seed=seed), operator="bob")
        start = session.env.object_pose()[:3]
        session.advance(30)
        if np.linalg.norm(session.env.object_pose()[:3] - start) < 0.05:
            break
        manager.discard(session.id)
    else:
        pytest.fail("the policy knocked the cube away on every seed")
    session.expert_assist()
    assert session.status().controller == "expert"
    while not session.status().done:
        session.advance(50)
    assert session.status().success
    record = manager.finish(session.id)
    assert record is not None and record.success and record.tag == "intervention"
    spans = [(s.controller, s.operator, s.trigger) for s in store.get(record.id).segments]
    assert spans == [("policy", None, "start"), ("expert", "bob", "console_expert_assist")]


def test_idle_session_is_saved_up_to_that_point_and_released(store: EpisodeStore, policy: PolicyRecord) -> None:
    manager = SessionManager(store, LiveConfig(idle_timeout_s=0.6, reap_every_s=0.1, claim_heartbeat_s=0.1))
    try:
        session = manager.start(RolloutSpec(policy="champion", seed=5), operator="carol")
        session.advance(12)
        session.take_over()
        session.jog("right", "x", -1)  # ... and carol closes the browser mid-takeover
        deadline = time.monotonic() + 20
        while manager.ended(session.id) is None and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        manager.close()
    ended = manager.ended(session.id)
    assert ended is not None and ended.reason == "idle_timeout" and session.closed
    stored = store.get(ended.episode_id or -1)
    assert stored.length == 18 and not stored.success and stored.tag == "intervention"
    assert stored.error is not None and "idle" in stored.error and stored.operator == "carol"
    assert [(s.controller, s.operator) for s in stored.segments] == [("policy", None), ("human", "carol")]
    with pytest.raises(SessionNotFoundError, match=r"idle past 0\.6 s: saved up to step 18"):
        manager.get(session.id)


def test_close_saves_open_sessions_and_refuses_new_ones(store: EpisodeStore, policy: PolicyRecord) -> None:
    """Console shutdown: what an operator was driving is stored with the reason; a rollout started late is refused."""
    manager = SessionManager(store, LiveConfig(), background=False)
    session = manager.start(RolloutSpec(policy="champion", seed=6), operator="erin")
    session.advance(10)
    session.take_over()
    session.jog("left", "z", 1)
    manager.close()
    ended = manager.ended(session.id)
    assert ended is not None and session.closed
    stored = store.get(ended.episode_id or -1)
    length = 10 + LiveConfig().jog_sim_steps
    assert (stored.length, stored.tag, stored.success, stored.operator) == (length, "intervention", False, "erin")
    assert stored.error == f"live session ended early (the console shut down): saved up to step {length}"
    before = store.count()
    with pytest.raises(LiveSessionError, match="shutting down"):
        manager.start(RolloutSpec(policy="champion", seed=7), operator="erin")
    assert store.count() == before  # nothing was driven in it, so nothing to keep
    manager.close()  # idempotent


def test_expert_only_rollout_taken_over_is_a_demo(manager: SessionManager, store: EpisodeStore) -> None:
    session = manager.start(RolloutSpec(policy=None, seed=2, camera="angle"), operator="dan")
    session.advance(15)
    session.take_over()
    session.jog("left", "y", 1)
    record = manager.finish(session.id)
    assert record is not None and record.tag == "demo" and record.policy_version_id is None
    assert [s.controller for s in store.get(record.id).segments] == ["expert", "human"]


def test_bad_requests_are_one_line_errors(manager: SessionManager, store: EpisodeStore, policy: PolicyRecord) -> None:
    with pytest.raises(LiveSessionError, match="no policy is challenger yet"):
        manager.start(RolloutSpec(policy="challenger"), operator="x")
    with pytest.raises(LiveSessionError, match=f"policy {policy.id} was trained for transfer_cube, not insertion"):
        manager.start(RolloutSpec(task="insertion", policy="champion"), operator="x")
    with pytest.raises(LiveSessionError, match="unknown camera 'ceiling'"):
        manager.start(RolloutSpec(policy="champion", camera="ceiling"), operator="x")
    with pytest.raises(ValueError, match="unknown task"):
        RolloutSpec(task="stack_blocks")
    session = manager.start(RolloutSpec(policy="champion"), operator="x")
    with pytest.raises(NotInControlError, match="press Take over first"):
        session.jog("left", "x", 1)
    session.take_over()
    with pytest.raises(LiveSessionError, match="unknown arm 'middle'"):
        session.gripper("middle", True)
    manager.discard(session.id)
    assert store.count() == 0
    with pytest.raises(SessionNotFoundError, match="discarded without saving"):
        manager.get(session.id)


def test_calls_from_many_threads_on_one_session(manager: SessionManager, policy: PolicyRecord) -> None:
    """Streamlit serves reruns from different threads: rendering and stepping must work from any of them."""
    session = manager.start(RolloutSpec(policy="champion", seed=9), operator="eve")
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                session.advance(2)
                assert session.frame().shape == (240, 320, 3)
                session.status()
        except BaseException as exc:  # collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert session.status().t == 4 * 5 * 2
