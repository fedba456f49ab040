"""Takeover requests of attended collection: one row per request, a small state machine shared by the
collection worker that asks and the console that answers.

    pending ──claim (before the deadline)──► claimed ──complete(episode)──► completed
       └── deadline passed (worker) ──► expired     └── heartbeat stale (worker) / released (console) ──► abandoned

Every transition is one write transaction that re-reads the row under the write lock (SQLite `BEGIN IMMEDIATE`,
PostgreSQL `SELECT ... FOR UPDATE`), so a claim racing the deadline or a completion racing a stale-heartbeat
fallback has exactly one winner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from flywheel.errors import FlywheelError
from flywheel.store.db import Database
from flywheel.store.models import Episode, TakeoverRequest, as_utc, utcnow
from flywheel.store.records import snapshot

OPEN_STATES = ("pending", "claimed")


class TakeoverRequestError(FlywheelError):
    """A takeover request cannot be used as asked."""


class ClaimRefusedError(TakeoverRequestError):
    """The request is no longer waiting for an operator (expired, taken, or finished)."""


class ClaimLostError(TakeoverRequestError):
    """The console no longer holds the claim (the worker stopped waiting and fell back)."""


@dataclass(frozen=True)
class NewTakeoverRequest:
    """What a worker stores when its simulated operator's trigger fires in console mode."""

    source_key: str
    task: str
    env_seed: int
    step: int
    trigger: str | None
    policy_version_id: int | None
    iteration: int | None
    env_config: dict[str, Any]
    policy_checkpoint: str
    policy_sha256: str | None
    actions: np.ndarray  # (step, 14) float64: exactly what was executed before the takeover step
    state: np.ndarray  # the observed state vector at the takeover step
    worker: str
    timeout_s: float


@dataclass(frozen=True)
class TakeoverRequestRecord:
    id: int
    status: str
    source_key: str
    task: str
    env_seed: int
    step: int
    trigger: str | None
    policy_version_id: int | None
    iteration: int | None
    env_config: dict[str, Any]
    policy_checkpoint: str
    policy_sha256: str | None
    worker: str
    deadline_at: datetime
    created_at: datetime
    claimed_by: str | None = None
    claim_token: str | None = None
    heartbeat_at: datetime | None = None
    finished_at: datetime | None = None
    episode_id: int | None = None
    note: str | None = None
    actions: tuple[tuple[float, ...], ...] = field(default=(), repr=False)
    state: tuple[float, ...] = field(default=(), repr=False)

    @classmethod
    def of(cls, row: TakeoverRequest) -> TakeoverRequestRecord:
        return snapshot(
            cls,
            row,
            env_config=dict(row.env_config or {}),
            deadline_at=as_utc(row.deadline_at),
            created_at=as_utc(row.created_at),
            heartbeat_at=as_utc(row.heartbeat_at),
            finished_at=as_utc(row.finished_at),
            actions=tuple(tuple(a) for a in row.actions or ()),
            state=tuple(row.state or ()),
        )

    def action_array(self) -> np.ndarray:
        return np.asarray(self.actions, dtype=np.float64).reshape(len(self.actions), -1)

    def state_array(self) -> np.ndarray:
        return np.asarray(self.state, dtype=np.float32)

    def seconds_left(self, now: datetime | None = None) -> float:
        return (self.deadline_at - (now or utcnow())).total_seconds()


class TakeoverRequests:
    """The `takeover_request` table's service: create, list, claim, heartbeat, complete, expire, abandon."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------------ worker side
    def create(self, new: NewTakeoverRequest) -> TakeoverRequestRecord:
        """Store a pending request; older open requests for the same episode (a worker that died) are abandoned."""
        now = utcnow()
        with self.db.write() as session:
            stale = session.scalars(
                select(TakeoverRequest)
                .where(TakeoverRequest.source_key == new.source_key, TakeoverRequest.status.in_(OPEN_STATES))
                .with_for_update()
            ).all()
            row = TakeoverRequest(
                status="pending",
                source_key=new.source_key,
                task=new.task,
                env_seed=int(new.env_seed),
                step=int(new.step),
                trigger=new.trigger,
                policy_version_id=new.policy_version_id,
                iteration=new.iteration,
                env_config=new.env_config,
                policy_checkpoint=new.policy_checkpoint,
                policy_sha256=new.policy_sha256,
                actions=np.asarray(new.actions, dtype=np.float64).tolist(),
                state=np.asarray(new.state, dtype=np.float64).tolist(),
                worker=new.worker,
                deadline_at=now + timedelta(seconds=new.timeout_s),
                created_at=now,
            )
            session.add(row)
            session.flush()
            for old in stale:
                old.status, old.finished_at = "abandoned", now
                old.note = f"superseded by request {row.id} (its worker restarted the episode)"
            return TakeoverRequestRecord.of(row)

    def expire(self, request_id: int) -> bool:
        """pending → expired once the deadline has passed; False if someone claimed it first."""
        with self.db.write() as session:
            row = self._locked(session, request_id)
            now = utcnow()
            if row.status != "pending" or as_utc(row.deadline_at) > now:
                return False
            row.status, row.finished_at = "expired", now
            row.note = "nobody claimed it in time: the simulated operator took over"
            return True

    def abandon_stale(self, request_id: int, claim_timeout_s: float) -> bool:
        """claimed → abandoned when the claimer's heartbeat is older than `claim_timeout_s`."""
        with self.db.write() as session:
            row = self._locked(session, request_id)
            now = utcnow()
            beat = as_utc(row.heartbeat_at or row.claimed_at or row.created_at)
            if row.status != "claimed" or (now - beat).total_seconds() <= claim_timeout_s:
                return False
            row.status, row.finished_at = "abandoned", now
            row.note = f"no heartbeat from {row.claimed_by} for {claim_timeout_s:g} s: the simulated operator took over"
            return True

    def stored_episode(self, source_key: str) -> tuple[int, bool] | None:
        """(id, success) of the episode already stored under `source_key`, if any."""
        with self.db.read() as session:
            row = session.execute(
                select(Episode.id, Episode.success).where(Episode.source_key == source_key)
            ).one_or_none()
            return None if row is None else (int(row[0]), bool(row[1]))

    # ------------------------------------------------------------------ console side
    def claim(self, request_id: int, operator: str, token: str) -> TakeoverRequestRecord:
        """pending → claimed by `operator`; refused with the reason once expired, taken or finished."""
        with self.db.write() as session:
            row = self._locked(session, request_id)
            now = utcnow()
            if row.status == "pending" and as_utc(row.deadline_at) <= now:
                late = (now - as_utc(row.deadline_at)).total_seconds()
                raise ClaimRefusedError(
                    f"takeover request {request_id} expired {late:.0f} s ago (nobody claimed it within its timeout); "
                    "the simulated operator has taken over that episode"
                )
            if row.status != "pending":
                raise ClaimRefusedError(f"takeover request {request_id} cannot be claimed: {self._why(row)}")
            row.status, row.claimed_by, row.claim_token = "claimed", operator, token
            row.claimed_at = row.heartbeat_at = now
            return TakeoverRequestRecord.of(row)

    def heartbeat(self, request_id: int, token: str) -> bool:
        """Keep the claim alive; False when it is no longer held by `token` (the worker gave up)."""
        with self.db.write() as session:
            row = self._locked(session, request_id)
            if row.status != "claimed" or row.claim_token != token:
                return False
            row.heartbeat_at = utcnow()
            return True

    def complete(self, request_id: int, token: str, episode_id: int) -> TakeoverRequestRecord:
        """claimed → completed with the stored episode the worker will report."""
        with self.db.write() as session:
            row = self._locked(session, request_id)
            if row.status != "claimed" or row.claim_token != token:
                raise ClaimLostError(f"takeover request {request_id} is no longer yours: {self._why(row)}")
            row.status, row.episode_id, row.finished_at = "completed", episode_id, utcnow()
            return TakeoverRequestRecord.of(row)

    def release(self, request_id: int, token: str, note: str) -> bool:
        """claimed → abandoned by the console itself (the worker falls back at once)."""
        with self.db.write() as session:
            row = self._locked(session, request_id)
            if row.status != "claimed" or row.claim_token != token:
                return False
            row.status, row.finished_at, row.note = "abandoned", utcnow(), note
            return True

    # ------------------------------------------------------------------ reads
    def get(self, request_id: int) -> TakeoverRequestRecord:
        with self.db.read() as session:
            row = session.get(TakeoverRequest, request_id)
            if row is None:
                raise TakeoverRequestError(f"takeover request {request_id} does not exist")
            return TakeoverRequestRecord.of(row)

    def status(self, request_id: int) -> tuple[str, int | None, datetime | None, datetime]:
        """(status, episode id, heartbeat, deadline) without loading the actions: the worker's poll."""
        with self.db.read() as session:
            row = session.execute(
                select(
                    TakeoverRequest.status,
                    TakeoverRequest.episode_id,
                    TakeoverRequest.heartbeat_at,
                    TakeoverRequest.deadline_at,
                ).where(TakeoverRequest.id == request_id)
            ).one_or_none()
            if row is None:
                raise TakeoverRequestError(f"takeover request {request_id} does not exist")
            return row[0], row[1], as_utc(row[2]) if row[2] else None, as_utc(row[3])

    def list_open(self, task: str | None = None) -> list[TakeoverRequestRecord]:
        """Pending requests whose deadline has not passed, oldest first (what the console offers)."""
        query = select(TakeoverRequest).where(
            TakeoverRequest.status == "pending", TakeoverRequest.deadline_at > utcnow()
        )
        if task is not None:
            query = query.where(TakeoverRequest.task == task)
        with self.db.read() as session:
            return [TakeoverRequestRecord.of(r) for r in session.scalars(query.order_by(TakeoverRequest.created_at))]

    def list_recent(self, limit: int = 20, statuses: Sequence[str] | None = None) -> list[TakeoverRequestRecord]:
        query = select(TakeoverRequest).order_by(TakeoverRequest.id.desc()).limit(limit)
        if statuses is not None:
            query = query.where(TakeoverRequest.status.in_(tuple(statuses)))
        with self.db.read() as session:
            return [TakeoverRequestRecord.of(r) for r in session.scalars(query)]

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _locked(session: Session, request_id: int) -> TakeoverRequest:
        row = session.get(TakeoverRequest, request_id, with_for_update=True)
        if row is None:
            raise TakeoverRequestError(f"takeover request {request_id} does not exist")
        return row

    @staticmethod
    def _why(row: TakeoverRequest) -> str:
        if row.status == "claimed":
            return f"already claimed by {row.claimed_by}"
        if row.status == "completed":
            return f"already completed (episode {row.episode_id})"
        return f"{row.status}" + (f" ({row.note})" if row.note else "")
