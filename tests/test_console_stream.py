"""The live stream (flywheel/live/stream.py) over a real WebSocket, behind the real `ConsoleGuard`, driving a real
live session on the real sim and a real SQLite store: the token and sign-in rules, sequence numbers (nothing applied
twice, gaps reported), malformed and out-of-range inputs refused without harm, hold-to-move, and a dropped socket
stopping the arm while the episode stays under the idle-timeout rule."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from flywheel.config import Settings
from flywheel.console_auth import COOKIE_NAME, ConsoleGuard, SessionSigner
from flywheel.live import LiveConfig, RolloutSpec, SessionManager
from flywheel.live.protocol import ProtocolError, SeqTracker, parse_input, unpack_frame
from flywheel.live.stream import CLOSE_BUSY, CLOSE_UNAUTHORIZED, STREAM_PATH, stream_route
from flywheel.registry import PolicyRecord
from flywheel.store import EpisodeStore

PASSWORD = "a long console passphrase"
HOST = {"host": "127.0.0.1"}


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


def _client(manager: SessionManager, password: str | None = None) -> tuple[TestClient, SessionSigner]:
    signer = SessionSigner(secrets.token_bytes(32))
    guard = Middleware(
        ConsoleGuard, allowed_hosts=frozenset({"127.0.0.1", "testserver"}), password=password, signer=signer
    )
    app = Starlette(routes=[stream_route(manager.by_stream_token)], middleware=[guard])
    return TestClient(app, base_url="http://127.0.0.1"), signer


def _texts_until(ws: Any, wanted: str, limit: int = 400) -> list[dict[str, Any]]:
    """Text messages received (frames skipped) up to and including the first of type `wanted`."""
    seen = []
    for _ in range(limit):
        message = ws.receive()
        if message.get("text") is None:
            continue
        seen.append(json.loads(message["text"]))
        if seen[-1]["type"] == wanted:
            return seen
    raise AssertionError(f"no {wanted} message among {seen}")


def _frame(ws: Any) -> tuple[dict[str, Any], dict[str, bytes]]:
    while True:
        message = ws.receive()
        if message.get("bytes") is not None:
            return unpack_frame(message["bytes"])


def test_messages_are_checked_and_numbered() -> None:
    drive = parse_input('{"type": "drive", "seq": 1, "left": [1, 0, -0.5]}')
    assert drive.left == (1.0, 0.0, -0.5) and drive.right == (0.0, 0.0, 0.0) and drive.held
    for bad, why in [
        ("not json", "not JSON"),
        ('{"type": "drive", "seq": 2, "left": [2, 0, 0]}', "within \\[-1, 1\\]"),
        ('{"type": "drive", "seq": 2, "left": [NaN, 0, 0]}', "within \\[-1, 1\\]"),
        ('{"type": "drive", "seq": 0}', "seq"),
        ('{"type": "gripper", "seq": 3, "arm": "middle", "open": true}', "arm"),
        ('{"type": "command", "seq": 3, "name": "self_destruct"}', "name"),
        ('{"type": "teleport", "seq": 3}', "type"),
        ('{"type": "drive", "seq": 3, "extra": 1}', "extra"),
        ('{"type": "drive", "seq": 3, "left": [' + "0," * 3000 + "0]}", "longer than"),
    ]:
        with pytest.raises(ProtocolError, match=why):
            parse_input(bad)
    seq = SeqTracker()
    assert seq.accept(1) is None and seq.accept(2) is None
    with pytest.raises(ProtocolError, match="seq 2 already used"):
        seq.accept(2)
    assert seq.accept(5) == (3, 4)
    with pytest.raises(ProtocolError, match="seq 4 already used"):
        seq.accept(4)


def test_unauthenticated_clients_get_nothing(manager: SessionManager, policy: PolicyRecord) -> None:
    session = manager.start(RolloutSpec(policy="champion", seed=1), operator="alice")
    client, signer = _client(manager, PASSWORD)
    # no console cookie: the guard refuses the handshake before the stream code runs
    with pytest.raises(WebSocketDisconnect), client.websocket_connect(STREAM_PATH, headers=HOST) as ws:
        ws.receive()
    # signed in but no or the wrong stream token: closed without a frame
    cookie = {"cookie": f"{COOKIE_NAME}={signer.issue()}", **HOST}
    for hello in ({"type": "hello", "token": "x" * 43}, {"type": "drive", "seq": 1}, "garbage"):
        with client.websocket_connect(STREAM_PATH, headers=cookie) as ws:
            ws.send_text(hello if isinstance(hello, str) else json.dumps(hello))
            assert ws.receive() == {"type": "websocket.close", "code": CLOSE_UNAUTHORIZED, "reason": ""}
    assert session.status().t == 0 and not session.status().streaming
    # the cookie and the token: frames
    with client.websocket_connect(STREAM_PATH, headers=cookie) as ws:
        ws.send_text(json.dumps({"type": "hello", "token": session.stream_token}))
        header, images = _frame(ws)
        assert [name for name, _ in header["cameras"]] == ["top", "right_wrist"]
        assert all(data[:2] == b"\xff\xd8" for data in images.values())  # JPEG
        # one stream per session: a second tab is turned away
        with client.websocket_connect(STREAM_PATH, headers=cookie) as second:
            second.send_text(json.dumps({"type": "hello", "token": session.stream_token}))
            assert second.receive_json()["type"] == "over"
            assert second.receive()["code"] == CLOSE_BUSY


def test_hold_to_move_seq_numbers_and_bad_input(
    manager: SessionManager, store: EpisodeStore, policy: PolicyRecord
) -> None:
    session = manager.start(RolloutSpec(policy="champion", seed=3), operator="alice")
    client, _ = _client(manager)
    with client.websocket_connect(STREAM_PATH, headers=HOST) as ws:
        ws.send_text(json.dumps({"type": "hello", "token": session.stream_token}))
        header, _ = _frame(ws)
        assert header["controller"] == "policy"
        # the policy plays at the control rate while the stream is attached
        deadline = time.monotonic() + 30
        while _frame(ws)[0]["t"] < 5:
            assert time.monotonic() < deadline
        ws.send_text(json.dumps({"type": "command", "seq": 1, "name": "take_over"}))
        assert _texts_until(ws, "ack")[-1]["seq"] == 1
        t0 = session.status().t
        assert session.status().controller == "human"
        time.sleep(0.2)  # step-wait: nothing held, the simulation waits
        assert session.status().t == t0
        before = session.tcp_position("left")
        ws.send_text(json.dumps({"type": "drive", "seq": 2, "left": [0, 0, 1]}))
        assert _texts_until(ws, "ack")[-1] == {"type": "ack", "seq": 2, "t": t0}
        while _frame(ws)[0]["t"] < t0 + 15:  # held: one step per control period, frames follow
            pass
        ws.send_text(json.dumps({"type": "drive", "seq": 3, "left": [0, 0, 0]}))
        stopped = _texts_until(ws, "ack")[-1]["t"]
        moved = session.tcp_position("left") - before
        assert moved[2] > 0.02 and np.abs(moved[:2]).max() < 0.01
        time.sleep(0.2)
        assert session.status().t == stopped  # released: the arm and the simulation stop
        # refused: a reused seq, malformed or out-of-range input; the session goes on
        for raw, why in [
            ({"type": "drive", "seq": 3, "left": [1, 0, 0]}, "seq 3 already used"),
            ({"type": "drive", "seq": 4, "left": [5, 0, 0]}, "within \\[-1, 1\\]"),
            ("{", "not JSON"),
        ]:
            ws.send_text(raw if isinstance(raw, str) else json.dumps(raw))
            refused = _texts_until(ws, "refused")[-1]
            assert re.search(why, refused["error"]), refused
        assert session.status().t == stopped
        # a jump in seq is applied and reported, not hidden
        ws.send_text(json.dumps({"type": "gripper", "seq": 6, "arm": "left", "open": False}))
        seen = _texts_until(ws, "ack")
        assert {"type": "gap", "first": 4, "last": 5} in seen and seen[-1]["seq"] == 6
        assert session.status().t == stopped + manager.config.gripper_sim_steps
        ws.send_text(json.dumps({"type": "command", "seq": 7, "name": "hand_back"}))
        handed_back = _texts_until(ws, "ack")[-1]
        assert handed_back["seq"] == 7
        while _frame(ws)[0]["t"] < handed_back["t"] + 3:  # the policy plays on
            pass
    record = manager.finish(session.id)
    assert record is not None
    human = [(s.start, s.controller, s.operator, s.trigger) for s in store.get(record.id).segments]
    assert human[1] == (t0, "human", "alice", "console") and human[2][1:] == ("policy", None, "console_hand_back")


def test_dropped_socket_stops_the_arm_and_keeps_the_episode(
    manager: SessionManager, store: EpisodeStore, policy: PolicyRecord
) -> None:
    session = manager.start(RolloutSpec(policy="champion", seed=4), operator="bob")
    session.advance(10)
    session.take_over()
    session.set_drive_mode("realtime")
    client, _ = _client(manager)
    with client.websocket_connect(STREAM_PATH, headers=HOST) as ws:
        ws.send_text(json.dumps({"type": "hello", "token": session.stream_token}))
        _frame(ws)
        ws.send_text(json.dumps({"type": "drive", "seq": 1, "right": [0, 0, 1]}))
        _texts_until(ws, "ack")
        start = session.status().t
        while _frame(ws)[0]["t"] < start + 5:
            pass
        # the browser goes away with the key still held (no release message)
    deadline = time.monotonic() + 5
    while session.status().streaming:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    target = session.teleop.targets["right"].pos.copy()
    setpoint = session.teleop.motion["right"].setpoint.pos
    assert np.allclose(target, setpoint)  # nothing the held key asked for is pending
    t = session.status().t
    time.sleep(0.2)
    assert session.status().t == t  # nobody drives: the simulation stopped too
    session.advance(0)
    ended = manager.reap(now=time.monotonic() + manager.config.idle_timeout_s + 1)
    assert [e.reason for e in ended] == ["idle_timeout"] and ended[0].episode_id is not None
    record = store.get(ended[0].episode_id)
    assert record.tag == "intervention" and record.operator == "bob" and "idle past" in (record.error or "")
