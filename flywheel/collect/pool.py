"""Local worker processes: a dispatcher hands one seed at a time to each worker and replaces dead ones.

A worker that dies mid-episode loses only that episode (nothing of it reaches the store); its seed goes
back into the queue and a fresh worker takes its place, so the count of stored episodes stays right.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

from flywheel.collect.outcome import EpisodeOutcome
from flywheel.collect.spec import CollectSpec
from flywheel.errors import FlywheelError

POLL_SECONDS = 0.5


class CollectionError(FlywheelError):
    """Collection cannot continue (workers keep dying or cannot start)."""


def _worker_main(spec: CollectSpec, inbox: Any, outbox: Any, worker_id: int) -> None:
    from flywheel.collect.runtime import WorkerRuntime

    try:
        runtime = WorkerRuntime(spec)
    except Exception as exc:  # report start-up failures (bad checkpoint, unknown camera) to the dispatcher
        outbox.put(("fatal", worker_id, None, f"{type(exc).__name__}: {exc}"))
        return
    outbox.put(("ready", worker_id, None, None))
    while True:
        seed = inbox.get()
        if seed is None:
            break
        try:
            outbox.put(("done", worker_id, seed, runtime.run(seed)))
        except Exception:
            outbox.put(("failed", worker_id, seed, traceback.format_exc(limit=5)))
    runtime.close()


@dataclass
class _Worker:
    process: BaseProcess
    inbox: Any
    seed: int | None = None
    stopping: bool = False


class ProcessPool:
    """Runs seeds on `workers` processes; yields outcomes in completion order."""

    def __init__(self, spec: CollectSpec, workers: int, max_restarts: int = 4) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.spec = spec
        self.workers = workers
        self.max_restarts = max_restarts
        self._ctx = mp.get_context("spawn")
        self._outbox = self._ctx.Queue()
        self._pool: dict[int, _Worker] = {}
        self._next_id = 0
        self.restarts = 0
        self.discarded: list[int] = []

    def _spawn(self) -> None:
        inbox = self._ctx.Queue()
        worker_id = self._next_id
        self._next_id += 1
        process = self._ctx.Process(
            target=_worker_main,
            args=(self.spec, inbox, self._outbox, worker_id),
            daemon=True,
            name=f"flywheel-collect-{worker_id}",
        )
        process.start()
        self._pool[worker_id] = _Worker(process, inbox)

    def run(self, seeds: Sequence[int], on_start: Callable[[int], None] | None = None) -> Iterator[EpisodeOutcome]:
        pending = deque(seeds)
        remaining = len(pending)
        for _ in range(min(self.workers, remaining)):
            self._spawn()
        try:
            while remaining:
                try:
                    kind, worker_id, seed, payload = self._outbox.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    self._reap_dead(pending)
                    continue
                worker = self._pool.get(worker_id)
                if kind == "fatal":
                    raise CollectionError(f"collection worker could not start: {payload}")
                if kind == "done":
                    remaining -= 1
                    yield payload
                elif kind == "failed":
                    raise CollectionError(f"episode with seed {seed} crashed in its worker:\n{payload}")
                if worker is not None:
                    worker.seed = pending.popleft() if pending else None
                    worker.stopping = worker.seed is None
                    worker.inbox.put(worker.seed)
                    if worker.seed is not None and on_start is not None:
                        on_start(worker.seed)
        finally:
            self.shutdown()

    def _reap_dead(self, pending: deque[int]) -> None:
        for worker_id, worker in list(self._pool.items()):
            if worker.process.is_alive():
                continue
            del self._pool[worker_id]
            if worker.stopping:
                continue
            if worker.seed is not None:
                self.discarded.append(worker.seed)
                pending.appendleft(worker.seed)  # re-collect it: the count of stored episodes stays right
            self.restarts += 1
            if self.restarts > self.max_restarts:
                raise CollectionError(
                    f"collection workers died {self.restarts} times (last exit code {worker.process.exitcode}); "
                    "giving up — check memory and the worker log"
                )
            self._spawn()

    def shutdown(self) -> None:
        for worker in self._pool.values():
            if worker.process.is_alive() and not worker.stopping:
                worker.inbox.put(None)
        for worker in self._pool.values():
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.kill()
        self._pool.clear()

    def pids(self) -> dict[int, int | None]:
        """Worker id → pid (for tests and the jobs view)."""
        return {wid: w.process.pid for wid, w in self._pool.items()}
