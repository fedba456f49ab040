"""Live sessions by id: start, claim a scheduler's takeover request, look up, finish, and reap idle ones.

A background thread (one per manager) keeps claimed requests' heartbeats alive and saves sessions nobody has
touched for `idle_timeout_s` (the operator closed the browser mid-takeover): the episode is stored up to that
point with success False, tagged by its frames, and the session's env and renderer are released.
"""

from __future__ import annotations

import atexit
import contextlib
import hmac
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from flywheel.collect.takeover_requests import (
    ClaimLostError,
    TakeoverRequestError,
    TakeoverRequestRecord,
    TakeoverRequests,
)
from flywheel.live.config import LiveConfig, RolloutSpec
from flywheel.live.errors import LiveSessionError, ReplayMismatchError, SessionNotFoundError
from flywheel.live.session import Claim, LiveSession, LiveStatus, SessionSetup
from flywheel.policy.input_spec import InputSpecError, read_checkpoint_inputs
from flywheel.registry import PolicyRegistry, RegistryError
from flywheel.store import EpisodeRecord, EpisodeStore
from flywheel.vocab import DEFAULT_CAMERA, DEFAULT_IMAGE_SIZE

NO_POLICY = ("", "none", "expert")
ENDED_KEPT = 200


@dataclass(frozen=True)
class EndedSession:
    """What became of a session that is gone: `reason` is saved | discarded | idle_timeout | claim_lost."""

    session_id: str
    reason: str
    episode_id: int | None
    message: str


class SessionManager:
    """Holds live sessions by id; thread-safe; `close()` stops the reaper and saves what is still open."""

    def __init__(self, store: EpisodeStore, config: LiveConfig | None = None, *, background: bool = True) -> None:
        self.store = store
        self.config = config or LiveConfig()
        self.registry = PolicyRegistry(store.db)
        self.requests = TakeoverRequests(store.db)
        self._sessions: dict[str, LiveSession] = {}
        self._ended: OrderedDict[str, EndedSession] = OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()  # set by `close()`: the reaper stops and no session opens any more
        self._reaper: threading.Thread | None = None
        if background:
            self._reaper = threading.Thread(target=self._reap_loop, name="flywheel-live-reaper", daemon=True)
            self._reaper.start()

    # ------------------------------------------------------------------ opening
    def start(self, spec: RolloutSpec, operator: str) -> LiveSession:
        """Start a rollout: the policy acts (or the expert, without a policy) and the console watches."""
        session_id = uuid.uuid4().hex
        setup = SessionSetup(
            task=spec.task,
            seed=spec.seed,
            camera=spec.camera,
            max_steps=spec.max_steps,
            source_key=f"console/session-{session_id}",
            **self._policy_fields(spec),
        )
        return self._open(LiveSession(session_id, setup, self.config, operator, self.store, self.requests))

    def _policy_fields(self, spec: RolloutSpec) -> dict[str, object]:
        if spec.policy is None or spec.policy.strip().lower() in NO_POLICY:
            return {}
        try:
            version = self.registry.resolve(spec.policy.strip())
        except RegistryError as exc:
            raise LiveSessionError(str(exc)) from None
        if version.task != spec.task:
            raise LiveSessionError(f"policy {version.id} was trained for {version.task}, not {spec.task}")
        label = f"v{version.id}" + (f" ({spec.policy})" if not spec.policy.strip().isdigit() else "")
        try:
            inputs = read_checkpoint_inputs(version.checkpoint_uri)  # what the policy reads, from its checkpoint
        except InputSpecError as exc:
            raise LiveSessionError(str(exc)) from None
        return {
            "obs_mode": inputs.obs_mode,
            **({"obs_cameras": inputs.cameras} if inputs.cameras else {}),
            **({"obs_image_size": inputs.image_size} if inputs.image_size else {}),
            "policy_label": label,
            "policy_checkpoint": version.checkpoint_uri,
            "policy_sha256": version.sha256,
            "policy_version_id": version.id,
        }

    def claim(self, request_id: int, operator: str, camera: str = DEFAULT_CAMERA) -> LiveSession:
        """Answer a scheduler's takeover request: claim it, rebuild the episode by replay, take over.

        A late claim raises ClaimRefusedError; a replay that does not reach the recorded state releases the
        request (its worker falls back at once) and raises ReplayMismatchError.
        """
        session_id = uuid.uuid4().hex
        record = self.requests.claim(request_id, operator, token=session_id)
        try:
            session = LiveSession(
                session_id, self._claim_setup(record, camera), self.config, operator, self.store, self.requests
            )
        except ReplayMismatchError as exc:
            self.requests.release(request_id, session_id, str(exc))
            raise
        except Exception as exc:
            self.requests.release(request_id, session_id, f"the console could not rebuild the episode: {exc}")
            raise
        session.beat()
        return self._open(session)

    @staticmethod
    def _claim_setup(record: TakeoverRequestRecord, camera: str) -> SessionSetup:
        env = record.env_config
        version = f"v{record.policy_version_id}" if record.policy_version_id is not None else "policy"
        return SessionSetup(
            task=record.task,
            seed=record.env_seed,
            camera=camera,
            source_key=record.source_key,
            max_steps=int(env.get("max_steps", 400)),
            obs_mode=str(env.get("obs_mode", "state")),
            obs_cameras=tuple(env.get("cameras", (DEFAULT_CAMERA,))),
            obs_image_size=tuple(env.get("image_size", DEFAULT_IMAGE_SIZE)),  # type: ignore[arg-type]
            policy_label=f"{version} (takeover request {record.id})",
            policy_checkpoint=record.policy_checkpoint,
            policy_sha256=record.policy_sha256,
            policy_version_id=record.policy_version_id,
            iteration=record.iteration,
            claim=Claim(
                request_id=record.id,
                token=record.claim_token or "",
                trigger=record.trigger or "console",
                actions=record.action_array(),
                state=record.state_array(),
            ),
        )

    def _open(self, session: LiveSession) -> LiveSession:
        with self._lock:
            if not self._stop.is_set():  # `close()` sets it before it takes this lock to list the open sessions
                self._sessions[session.id] = session
                return session
        self._expire(session, "the console shut down")  # opened while closing: saved like the others
        raise LiveSessionError("the console is shutting down; start the rollout again once it is back")

    # ------------------------------------------------------------------ lookup
    def get(self, session_id: str, touch: bool = True) -> LiveSession:
        """The live session (marked as seen), or SessionNotFoundError saying what became of it."""
        with self._lock:
            session = self._sessions.get(session_id)
            ended = self._ended.get(session_id)
        if session is None or session.closed:
            why = ended.message if ended is not None else "it does not exist"
            raise SessionNotFoundError(f"live session {session_id[:8]} is over: {why}")
        if touch:
            session.touch()
        return session

    def by_stream_token(self, token: str) -> LiveSession | None:
        """The open session whose live stream token this is (compared in constant time), or None."""
        with self._lock:
            live = list(self._sessions.values())
        for session in live:
            if hmac.compare_digest(session.stream_token.encode(), token.encode()) and not session.closed:
                return session
        return None

    def ended(self, session_id: str) -> EndedSession | None:
        with self._lock:
            return self._ended.get(session_id)

    def sessions(self) -> list[LiveStatus]:
        with self._lock:
            live = list(self._sessions.values())
        return [s.status() for s in live if not s.closed]

    def open_requests(self, task: str | None = None) -> list[TakeoverRequestRecord]:
        """Takeover requests from attended collection still waiting for someone."""
        return self.requests.list_open(task)

    # ------------------------------------------------------------------ ending
    def finish(self, session_id: str) -> EpisodeRecord | None:
        """Save the episode (idempotent) and release the session."""
        session = self.get(session_id)
        try:
            record = session.finish()
        except ClaimLostError as exc:
            self._end(session, "claim_lost", None, str(exc))
            raise
        message = f"saved as episode {record.id} ({record.tag})" if record else "nothing to save (no step was taken)"
        self._end(session, "saved", record.id if record else None, message)
        session.close()
        return record

    def discard(self, session_id: str) -> None:
        session = self.get(session_id, touch=False)
        session.discard()
        self._end(session, "discarded", None, "discarded without saving")

    def _end(self, session: LiveSession, reason: str, episode_id: int | None, message: str) -> None:
        with self._lock:
            self._sessions.pop(session.id, None)
            self._ended[session.id] = EndedSession(session.id, reason, episode_id, message)
            while len(self._ended) > ENDED_KEPT:
                self._ended.popitem(last=False)

    def reap(self, now: float | None = None) -> list[EndedSession]:
        """Beat claims; save and release sessions idle past the timeout. Returns what was ended."""
        now = time.monotonic() if now is None else now
        with self._lock:
            live = list(self._sessions.values())
        ended: list[EndedSession] = []
        for session in live:
            if session.closed:
                continue
            with contextlib.suppress(TakeoverRequestError):
                session.beat()
            if session.idle_seconds(now) <= self.config.idle_timeout_s:
                continue
            ended.append(self._expire(session, f"idle past {self.config.idle_timeout_s:g} s"))
        return ended

    def _expire(self, session: LiveSession, why: str) -> EndedSession:
        try:
            record = session.finish(interrupted=why)
        except ClaimLostError as exc:
            self._end(session, "claim_lost", None, str(exc))
            return self.ended(session.id)  # type: ignore[return-value]
        except Exception as exc:  # keep reaping the others; say what happened
            session.close()
            self._end(session, "idle_timeout", None, f"{why}; saving failed: {exc}")
            return self.ended(session.id)  # type: ignore[return-value]
        session.close()
        saved = f"saved up to step {record.length} as episode {record.id} ({record.tag})" if record else "nothing saved"
        self._end(session, "idle_timeout", record.id if record else None, f"{why}: {saved}")
        return self.ended(session.id)  # type: ignore[return-value]

    def _reap_loop(self) -> None:
        while not self._stop.wait(min(self.config.reap_every_s, self.config.claim_heartbeat_s)):
            with contextlib.suppress(Exception):  # a DB hiccup must not kill the reaper; it retries next tick
                self.reap()

    def close(self) -> None:
        """Stop the reaper and save every open session as if it had timed out (console shutdown)."""
        self._stop.set()
        if self._reaper is not None:
            self._reaper.join(timeout=10)
        with self._lock:
            live = list(self._sessions.values())
        for session in live:
            if not session.closed:
                self._expire(session, "the console shut down")


class ManagerOwner:
    """The session managers of one server process, one per key (the store's settings): made on first use and
    closed by `close()` (the console server's shutdown hook, app/console_server.py) or else at process exit.
    Unlike a `st.cache_resource`, nothing a browser sends (Streamlit's "clear cache" message) can drop or close
    one, so no client can end another operator's live session."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._managers: dict[str, SessionManager] = {}
        atexit.register(self.close)

    def get(self, key: str, create: Callable[[], SessionManager]) -> SessionManager:
        with self._lock:
            manager = self._managers.get(key)
            if manager is None:
                manager = self._managers[key] = create()
            return manager

    def by_stream_token(self, token: str) -> LiveSession | None:
        """The open session of any manager whose live stream token this is (the stream route's lookup)."""
        with self._lock:
            managers = list(self._managers.values())
        for manager in managers:
            session = manager.by_stream_token(token)
            if session is not None:
                return session
        return None

    def close(self) -> None:
        """Close every manager (each saves its open sessions); a later `get` makes a fresh one."""
        with self._lock:
            managers, self._managers = list(self._managers.values()), {}
        for manager in managers:
            manager.close()
