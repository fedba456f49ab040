"""Attended collection (`--operator console`): when the simulated operator's trigger fires, a worker asks a person
in the console to take over, and falls back to the simulated operator if nobody answers in time.

Protocol (table `takeover_request`, see `takeover_requests.py`): the worker stores the actions executed so far,
the state reached and the episode's source key, then waits. State mode is deterministic for a seed, so the
console rebuilds the episode by resetting the env with the seed and replaying the actions (`flywheel.live`), the
operator takes over from exactly that state, and the console stores the episode under the worker's source key and
completes the request. The worker then reports that stored episode instead of its own. Unclaimed by the deadline →
expired; claimed but the claimer's heartbeat stops → abandoned; both fall back to the simulated operator, which
continues the same rollout, so every seed yields exactly one episode.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from flywheel.collect.takeover_requests import NewTakeoverRequest, TakeoverRequests
from flywheel.config import DEFAULT_DB_RETRY_SECONDS
from flywheel.store.models import utcnow
from flywheel.vocab import ControllerKind

if TYPE_CHECKING:
    from flywheel.collect.spec import CollectSpec
    from flywheel.config import Settings
    from sim.rollout import EpisodeRunner


class AttendedConfig(BaseModel):
    """How a console-mode worker reaches the database and how long it waits for a person."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    db_url: str = Field(..., min_length=1)
    busy_timeout_ms: int = Field(30_000, ge=0, le=600_000)
    db_retry_seconds: float = Field(DEFAULT_DB_RETRY_SECONDS, ge=0, le=86_400)
    timeout_s: float = Field(60.0, gt=0, le=86_400, description="wait this long for a console operator to claim")
    claim_timeout_s: float = Field(30.0, gt=0, le=3_600, description="fall back when a claim's heartbeat is older")
    poll_s: float = Field(0.25, gt=0, le=10)

    @model_validator(mode="after")
    def _poll_below_timeouts(self) -> AttendedConfig:
        if self.poll_s >= min(self.timeout_s, self.claim_timeout_s):
            raise ValueError("poll_s must be shorter than timeout_s and claim_timeout_s")
        return self


def attended_config(settings: Settings, timeout_s: float, claim_timeout_s: float = 30.0) -> AttendedConfig:
    """Console mode for workers that reach the same database as `settings`."""
    return AttendedConfig(
        db_url=settings.database_url,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        db_retry_seconds=settings.db_retry_seconds,
        timeout_s=timeout_s,
        claim_timeout_s=claim_timeout_s,
    )


@dataclass(frozen=True)
class StoredByConsole:
    """The episode a console operator finished for this worker's seed."""

    episode_id: int
    success: bool
    request_id: int | None


class Attendant:
    """Worker side: run the policy until the first takeover, then ask the console and wait for an answer."""

    def __init__(self, spec: CollectSpec, config: AttendedConfig) -> None:
        from flywheel.store.db import Database

        self.spec = spec
        self.config = config
        self.db = Database(config.db_url, config.busy_timeout_ms, config.db_retry_seconds)
        self.requests = TakeoverRequests(self.db)
        self.worker = f"pid {os.getpid()} on {socket.gethostname()}"[:128]

    def attend(self, runner: EpisodeRunner, seed: int) -> StoredByConsole | None:
        """Step `runner` up to the simulated operator's first takeover and ask for a person.

        Returns the console's stored episode, or None: the runner then continues with the simulated operator
        (which already drives the takeover step) — also when the episode ended without a takeover.
        """
        source_key = self.spec.source_key(seed)
        stored = self.requests.stored_episode(source_key)
        if stored is not None:  # a console finished it while an earlier worker for this seed died
            return StoredByConsole(stored[0], stored[1], None)
        if runner.policy is None:
            return None
        actions: list[np.ndarray] = []
        while not runner.done:
            state = np.asarray(runner.obs["state"]).copy()
            outcome = runner.step()
            if runner.error is not None:
                return None
            if outcome.controller is not ControllerKind.POLICY:
                trigger = runner.result().segments[-1].trigger
                return self._ask(seed, outcome.t, trigger, np.array(actions), state)
            actions.append(np.asarray(outcome.action, dtype=np.float64))
        return None

    def _ask(
        self, seed: int, step: int, trigger: str | None, actions: np.ndarray, state: np.ndarray
    ) -> StoredByConsole | None:
        spec = self.spec
        assert spec.policy_checkpoint is not None
        request = self.requests.create(
            NewTakeoverRequest(
                source_key=spec.source_key(seed),
                task=spec.task,
                env_seed=seed,
                step=step,
                trigger=trigger,
                policy_version_id=spec.policy_version_id,
                iteration=spec.iteration,
                env_config={
                    "obs_mode": spec.obs_mode,
                    "cameras": list(spec.cameras),
                    "image_size": list(spec.image_size),
                    "max_steps": spec.max_steps,
                },
                policy_checkpoint=spec.policy_checkpoint,
                policy_sha256=spec.policy_sha256,
                actions=actions.reshape(len(actions), -1),
                state=state,
                worker=self.worker,
                timeout_s=self.config.timeout_s,
            )
        )
        return self._wait(request.id, request.source_key)

    def _wait(self, request_id: int, source_key: str) -> StoredByConsole | None:
        """Poll until the request is completed (→ the stored episode) or ends otherwise (→ None: fall back)."""
        while True:
            status, _episode_id, heartbeat, deadline = self.requests.status(request_id)
            if status == "completed":
                stored = self.requests.stored_episode(source_key)
                return None if stored is None else StoredByConsole(stored[0], stored[1], request_id)
            if status in ("expired", "abandoned"):
                return None
            now = utcnow()
            if status == "pending" and now >= deadline and self.requests.expire(request_id):
                return None
            if (
                status == "claimed"
                and heartbeat is not None
                and (now - heartbeat).total_seconds() > self.config.claim_timeout_s
                and self.requests.abandon_stale(request_id, self.config.claim_timeout_s)
            ):
                return None
            time.sleep(self.config.poll_s)

    def close(self) -> None:
        self.db.dispose()
