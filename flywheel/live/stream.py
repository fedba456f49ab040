"""The live stream: one WebSocket per live session, served by the console process itself (`app/console_server.py`
mounts `stream_route` on the ASGI app `ConsoleGuard` protects, so it obeys the console's Host, origin and sign-in
rules; a client without the console's cookie never reaches this code when a password is set).

After the handshake the client must send `hello` with the session's stream token (only the browser session that
started or claimed the live session is given it), or it is closed without a frame. Then a `LiveDriver` thread
drives the session at the control rate: it applies the inputs in order (protocol.py), steps the simulation, and
publishes the cameras' JPEGs; the sender forwards only the newest frame (a slow client skips frames, it never
builds a backlog) and every ack, refusal and gap notice. When the socket closes, for whatever reason, the driver
stops and the arms hold where they are: the session stays open under the console's idle timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from flywheel.errors import FlywheelError
from flywheel.live.protocol import (
    HELLO_TIMEOUT_S,
    Command,
    Drive,
    Gripper,
    Mode,
    ProtocolError,
    SeqTracker,
    pack_frame,
    parse_hello,
    parse_input,
    seq_of,
)
from flywheel.live.session import LiveSession

STREAM_PATH = "/_flywheel/live"
CLOSE_UNAUTHORIZED = 4401  # no or wrong stream token
CLOSE_BUSY = 4409  # another tab streams this session
CLOSE_OVER = 4410  # the session ended
ZERO = (0.0, 0.0, 0.0)

log = logging.getLogger("flywheel.console.live")

FindSession = Callable[[str], LiveSession | None]


class LiveDriver:
    """Drives one live session from one stream connection (a thread; see the module docstring).

    `submit(raw)` hands it a received text message (from any thread); `publish_frame(bytes)` and
    `publish_text(dict)` are called from the driver thread for the connection to send.
    """

    def __init__(
        self,
        session: LiveSession,
        publish_frame: Callable[[bytes], None],
        publish_text: Callable[[dict[str, Any]], None],
        control_dt: float | None = None,
    ) -> None:
        from sim.constants import CONTROL_DT

        self.session = session
        self.publish_frame = publish_frame
        self.publish_text = publish_text
        self.dt = CONTROL_DT if control_dt is None else control_dt
        self.seq = SeqTracker()
        self.velocity: dict[str, tuple[float, float, float]] = {"left": ZERO, "right": ZERO}
        self.applied_seq = 0
        self.frames_sent = 0
        self._inbox: queue.SimpleQueue[str | bytes | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"flywheel-stream-{session.id[:8]}", daemon=True)

    def start(self) -> LiveDriver:
        self._thread.start()
        return self

    def submit(self, raw: str | bytes) -> None:
        self._inbox.put(raw)

    def stop(self) -> None:
        """Stop driving (the arms hold where they are); waits for the thread."""
        self._stop.set()
        self._inbox.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)

    # ------------------------------------------------------------------ driver thread
    def _run(self) -> None:
        try:
            self._loop()
        except FlywheelError as exc:  # the session ended under us (saved, discarded, idle timeout)
            self.publish_text({"type": "over", "message": str(exc)})
        except Exception:
            log.exception("live stream of session %s failed", self.session.id[:8])
            self.publish_text({"type": "over", "message": "the live stream failed; see the console's log"})
        finally:
            self.velocity = {"left": ZERO, "right": ZERO}

    def _loop(self) -> None:
        next_tick = time.monotonic()
        self._send_views()
        while not self._stop.is_set():
            if self.session.closed:
                self.publish_text({"type": "over", "message": "the live session is over"})
                return
            got = self._drain(max(0.0, next_tick - time.monotonic()))
            if self._stop.is_set():
                return
            now = time.monotonic()
            if now < next_tick and not got:
                continue
            # an input steps at once (it shows in the next frame); otherwise one step per control period,
            # catching up a few when rendering lags so the simulation keeps to real time
            due = min(self.session.config.catch_up_steps, 1 + max(0, int((now - next_tick) / self.dt)))
            next_tick = now + self.dt if got or now - next_tick > 1.0 else next_tick + due * self.dt
            self.session.touch()
            try:
                self.session.drive(self.velocity, due)
            except FlywheelError as exc:
                self._refuse(None, str(exc))
                self.velocity = {"left": ZERO, "right": ZERO}
            self._send_views()

    def _drain(self, wait_s: float) -> bool:
        """Apply every waiting input (waiting up to `wait_s` for the first one); True if there was any."""
        try:
            raw = self._inbox.get(timeout=wait_s) if wait_s > 0 else self._inbox.get_nowait()
        except queue.Empty:
            return False
        while raw is not None:
            self._apply(raw)
            try:
                raw = self._inbox.get_nowait()
            except queue.Empty:
                break
        return True

    def _apply(self, raw: str | bytes) -> None:
        try:
            message = parse_input(raw)
            gap = self.seq.accept(message.seq)
        except ProtocolError as exc:
            self._refuse(seq_of(raw), str(exc))
            return
        if gap is not None:
            log.warning("live stream of session %s: inputs %d..%d never arrived", self.session.id[:8], *gap)
            self.publish_text({"type": "gap", "first": gap[0], "last": gap[1]})
        try:
            self._perform(message)
        except FlywheelError as exc:
            self._refuse(message.seq, str(exc))
            return
        self.applied_seq = message.seq
        self.publish_text({"type": "ack", "seq": message.seq, "t": self.session.status().t})

    def _perform(self, message: Drive | Gripper | Command | Mode) -> None:
        session = self.session
        if isinstance(message, Drive):
            self.velocity = {"left": message.left, "right": message.right}
            if not message.held:
                session.stop_motion()  # released: stop where the arm is now
        elif isinstance(message, Gripper):
            session.set_gripper(message.arm, message.open)
        elif isinstance(message, Mode):
            session.set_drive_mode(message.mode)
        elif message.name == "take_over":
            session.take_over()
        elif message.name == "hand_back":
            if session.setup.policy_checkpoint is None:
                raise ProtocolError("this rollout has no policy to hand back to")
            session.hand_back()
        elif message.name == "expert_assist":
            session.expert_assist()
        else:
            session.set_playing(message.name == "play")

    def _refuse(self, seq: int | None, why: str) -> None:
        log.warning("live stream of session %s refused input %s: %s", self.session.id[:8], seq, why)
        self.publish_text({"type": "refused", "seq": seq, "error": why})

    def _send_views(self) -> None:
        new, images, overlay = self.session.encoded_views()
        if not new:
            return
        status = self.session.status()
        header = {
            "t": status.t,
            "max_steps": status.max_steps,
            "time_left_s": round((status.max_steps - status.t) * self.dt, 2),
            "applied_seq": self.applied_seq,
            "controller": status.controller,
            "operator": status.operator,
            "stage": status.stage,
            "success": status.success,
            "done": status.done,
            "playing": status.playing,
            "mode": status.drive_mode,
            "overlay": overlay,
            "server_ms": time.time() * 1000,
        }
        self.frames_sent += 1
        self.publish_frame(pack_frame(header, images))


async def serve_stream(websocket: WebSocket, find_session: FindSession) -> None:
    """One stream connection: hello with the token, then frames out and inputs in until either side closes."""
    await websocket.accept()
    try:
        raw = await asyncio.wait_for(websocket.receive_text(), timeout=HELLO_TIMEOUT_S)
        session = find_session(parse_hello(raw).token)
    except (TimeoutError, ProtocolError, KeyError, WebSocketDisconnect):
        session = None
    if session is None:
        log.warning("live stream refused: no valid stream token from %s", websocket.client)
        await websocket.close(CLOSE_UNAUTHORIZED)
        return
    try:
        session.attach_stream()
    except FlywheelError as exc:
        await websocket.send_json({"type": "over", "message": str(exc)})
        await websocket.close(CLOSE_BUSY)
        return
    loop = asyncio.get_running_loop()
    latest: list[bytes | None] = [None]
    texts: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    ready = asyncio.Event()

    def publish_frame(frame: bytes) -> None:  # driver thread
        def put() -> None:
            latest[0] = frame
            ready.set()

        loop.call_soon_threadsafe(put)

    def publish_text(message: dict[str, Any]) -> None:
        def put() -> None:
            texts.put_nowait(message)
            ready.set()

        loop.call_soon_threadsafe(put)

    driver = LiveDriver(session, publish_frame, publish_text)
    log.info("live stream attached to session %s from %s", session.id[:8], websocket.client)

    async def sender() -> None:
        while True:
            await ready.wait()
            ready.clear()
            while not texts.empty():
                message = texts.get_nowait()
                await websocket.send_json(message)
                if message["type"] == "over":
                    return
            frame, latest[0] = latest[0], None
            if frame is not None:
                await websocket.send_bytes(frame)

    async def receiver() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            driver.submit(message.get("text") if message.get("text") is not None else message.get("bytes") or b"")

    driver.start()
    tasks = [asyncio.create_task(sender()), asyncio.create_task(receiver())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        # no await before these: a cancelled connection task must still stop the arm (the join waits out at
        # most the control step in progress)
        driver.stop()
        session.detach_stream()
        log.info("live stream of session %s closed: the arms hold, the idle timeout runs", session.id[:8])
    with contextlib.suppress(RuntimeError):  # already closed by the client
        await websocket.close()


def stream_route(find_session: FindSession) -> WebSocketRoute:
    """The Starlette route of the live stream (mounted under the console's guard)."""

    async def endpoint(websocket: WebSocket) -> None:
        await serve_stream(websocket, find_session)

    return WebSocketRoute(STREAM_PATH, endpoint)
