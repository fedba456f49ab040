"""Teleop / Live page through the console app (`streamlit.testing.v1.AppTest`) on a real SQLite store: start a
rollout, take over, jog, hand back, finish & save; claim a scheduler's takeover request and answer it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from app.live_owner import MANAGERS
from flywheel.collect import CollectSpec
from flywheel.collect.attended import Attendant, AttendedConfig, StoredByConsole
from flywheel.collect.takeover_requests import TakeoverRequests
from flywheel.config import Settings
from flywheel.registry import PolicyRecord
from flywheel.store import EpisodeStore

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[EpisodeStore]:
    monkeypatch.setenv("FLYWHEEL_HOME", str(sqlite_settings.home))
    monkeypatch.delenv("FLYWHEEL_DB_URL", raising=False)
    monkeypatch.delenv("FLYWHEEL_CONSOLE_PASSWORD", raising=False)
    opened = EpisodeStore.open(sqlite_settings)
    yield opened
    MANAGERS.close()  # the process's live session managers (their reaper threads)
    st.cache_resource.clear()  # the app's store
    opened.db.dispose()


def _console(operator: str = "alice") -> AppTest:
    """The console app, identified as `operator` (the sidebar's "Operator name" field, prefilled: AppTest drops
    sidebar elements from its tree after the first run of an `st.navigation` app, so it cannot type there)."""
    at = AppTest.from_file(str(ROOT / "app" / "console.py"), default_timeout=90)
    at.session_state["operator_input"] = operator
    at.run()
    assert not at.exception, at.exception
    assert at.sidebar.text_input(key="operator_input").value == operator
    return at


def _click(at: AppTest, key: str) -> AppTest:
    at.button(key=key).click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def _header(at: AppTest) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("**Step "))


def test_start_take_over_jog_hand_back_and_save(store: EpisodeStore, policy: PolicyRecord) -> None:
    at = _console()
    assert at.title[0].value == "Teleop / Live"
    assert at.selectbox(key="live_policy").options[0] == f"champion (v{policy.id})"
    at.number_input(key="live_seed").set_value(4)
    _click(at, "live_start")
    assert "controller :blue[policy]" in _header(at)
    assert all(at.button(key=f"live_jog_{arm}_x_plus").disabled for arm in ("left", "right"))
    started = time.perf_counter()
    _click(at, "live_take_over")
    took_over_ms = (time.perf_counter() - started) * 1000
    header = _header(at)
    assert "controller :orange[human] · operator **alice**" in header, header
    (frame,) = at.get("image")  # the frame under human control
    assert frame.captions == ["camera top"] and frame.value[0]
    step = int(header.split()[1])
    assert not at.button(key="live_jog_left_z_plus").disabled and at.button(key="live_take_over").disabled
    for _ in range(2):
        _click(at, "live_jog_left_z_plus")
    _click(at, "live_grip_right_close")
    assert _header(at).startswith(f"**Step {step + 2 * 6 + 10} / 400**")
    _click(at, "live_hand_back")
    assert "controller :blue[policy]" in _header(at)
    _click(at, "live_finish")
    saved = [s.value for s in at.success]
    assert len(saved) == 1 and saved[0].startswith("Saved episode ") and "as intervention" in saved[0], saved
    (episode,) = store.list_episodes(with_segments=True)
    assert episode.tag == "intervention" and episode.operator == "alice" and episode.env_seed == 4
    human = [s for s in episode.segments if s.controller == "human"]
    assert [(s.start, s.end, s.operator, s.trigger) for s in human] == [(step, step + 22, "alice", "console")]
    assert at.button(key="live_start")  # back to the start form
    print(f"take over → frame under human control through AppTest: {took_over_ms:.0f} ms")


def test_clear_cache_does_not_end_a_live_session(store: EpisodeStore, policy: PolicyRecord) -> None:
    """Streamlit's "clear cache" message, which any connected client may send, clears every `st.cache_*`; the
    live session of another operator goes on (its manager is not a cached resource)."""
    at = _console()
    _click(at, "live_start")
    step = int(_header(at).split()[1])
    st.cache_data.clear()  # what `AppSession._handle_clear_cache_request` does for the sending client
    st.cache_resource.clear()
    _click(at, "live_take_over")
    assert "controller :orange[human]" in _header(at) and int(_header(at).split()[1]) >= step
    _click(at, "live_finish")
    assert next(s.value for s in at.success).startswith("Saved episode ")
    assert store.count() == 1  # saved by the operator, not cut short by another client


def test_claim_a_takeover_request_from_the_page(store: EpisodeStore, policy: PolicyRecord) -> None:
    spec = CollectSpec(
        task="transfer_cube",
        max_steps=120,
        operator_mode="console",
        sim_operator={"no_progress_steps": 12, "min_policy_steps": 3},
        operator_name="sim-operator",
        policy_version_id=policy.id,
        policy_checkpoint=policy.checkpoint_uri,
        policy_sha256=policy.sha256,
        iteration=1,
        source_prefix="page-test",
        attended=AttendedConfig(db_url=store.db.url, timeout_s=120, claim_timeout_s=30, poll_s=0.1),
    )
    from flywheel.collect.runtime import WorkerRuntime
    from sim.rollout import EpisodeRunner

    runtime = WorkerRuntime(spec)  # the worker's side, in a thread instead of a process
    answers: list[StoredByConsole | None] = []
    runner = EpisodeRunner(
        runtime.env, 21, runtime.policy, runtime.sim_operator, spec.max_steps, operator=spec.operator_name
    )
    assert isinstance(runtime.attendant, Attendant)
    worker = threading.Thread(target=lambda: answers.append(runtime.attendant.attend(runner, 21)), daemon=True)
    worker.start()
    requests = TakeoverRequests(store.db)
    deadline = time.monotonic() + 60
    while not requests.list_open() and time.monotonic() < deadline:
        time.sleep(0.1)
    (request,) = requests.list_open()
    at = _console("bob")
    assert any(f"**#{request.id}**" in m.value for m in at.markdown)
    _click(at, f"live_claim_{request.id}")
    header = _header(at)
    assert header.startswith(f"**Step {request.step} / 120**") and "operator **bob**" in header, header
    assert any(f"answering takeover request #{request.id}" in c.value for c in at.caption)
    _click(at, "live_jog_right_y_minus")
    _click(at, "live_hand_back")
    _click(at, "live_finish")
    worker.join(timeout=60)
    runtime.close()
    (answer,) = answers
    assert answer is not None and answer.request_id == request.id
    episode = store.get(answer.episode_id)
    assert episode.source_key == spec.source_key(21) and episode.iteration == 1 and episode.operator == "bob"
    assert [(s.controller, s.operator) for s in episode.segments][:3] == [
        ("policy", None),
        ("human", "bob"),
        ("policy", None),
    ]
    assert requests.get(request.id).status == "completed" and store.count() == 1


def test_take_over_needs_an_operator_name(store: EpisodeStore, policy: PolicyRecord) -> None:
    at = _console(operator="")
    _click(at, "live_start")
    at.button(key="live_take_over").click().run()
    assert [e.value for e in at.error] == [
        "enter your operator name in the sidebar first: every takeover records who did it"
    ]
    assert "controller :blue[policy]" in _header(at)
