"""Local worker processes: a dispatcher hands each worker a job of seeds and replaces dead workers.

A job holds one seed, or up to `envs_per_worker` seeds that the worker steps in lockstep; the worker reports each
episode as it ends and asks for the next job when the last one is done. Each worker talks to the dispatcher over
its own pipe, so a worker killed mid-write can only break its own channel. A worker that dies mid-job loses only
its unfinished episodes (nothing of them reaches the store); their seeds go back into the queue and a fresh worker
takes its place, so the count of stored episodes stays right. A worker whose dispatcher dies exits at once.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

from flywheel.collect.outcome import EpisodeOutcome
from flywheel.collect.spec import CollectSpec
from flywheel.errors import FlywheelError

POLL_SECONDS = 1.0


class CollectionError(FlywheelError):
    """Collection cannot continue (workers keep dying or cannot start)."""


def _exit_with_the_dispatcher() -> None:
    """End this worker the moment its dispatcher process dies (even by `kill -9`, which skips every cleanup), so
    no orphan keeps stepping episodes nobody will store."""
    parent = mp.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="flywheel-collect-parent-watch", daemon=True).start()


def _worker_main(spec: CollectSpec, conn: Connection) -> None:
    from flywheel.collect.runtime import WorkerRuntime

    _exit_with_the_dispatcher()
    try:
        runtime = WorkerRuntime(spec)
    except Exception as exc:  # report start-up failures (bad checkpoint, unknown camera) to the dispatcher
        conn.send(("fatal", None, f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None, None))
    while True:
        job: list[int] | None = conn.recv()
        if job is None:
            break
        unfinished = list(job)
        try:
            for outcome in runtime.run_many(job):
                unfinished.remove(outcome.seed)
                conn.send(("done", outcome.seed, outcome))
        except Exception:
            conn.send(("failed", unfinished, traceback.format_exc(limit=5)))
        conn.send(("idle", None, None))
    runtime.close()


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    seeds: list[int] = field(default_factory=list)  # the current job's episodes not reported yet
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
        self._pool: list[_Worker] = []
        self.restarts = 0
        self.discarded: list[int] = []

    def _spawn(self) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(target=_worker_main, args=(self.spec, child), daemon=True, name="flywheel-collect")
        process.start()
        child.close()
        self._pool.append(_Worker(process, parent))

    def run(self, seeds: Sequence[int], on_start: Callable[[int], None] | None = None) -> Iterator[EpisodeOutcome]:
        pending = deque(seeds)
        remaining = len(pending)
        for _ in range(min(self.workers, remaining)):
            self._spawn()
        try:
            while remaining:
                by_conn = {w.conn: w for w in self._pool}
                ready = wait(list(by_conn), timeout=POLL_SECONDS)
                for conn in ready:
                    worker = by_conn[conn]
                    try:
                        kind, seed, payload = conn.recv()
                    except (EOFError, OSError):
                        self._lost(worker, pending)
                        continue
                    if kind == "fatal":
                        raise CollectionError(f"collection worker could not start: {payload}")
                    if kind == "failed":
                        raise CollectionError(f"episode with seed(s) {seed} crashed in its worker:\n{payload}")
                    if kind == "done":
                        remaining -= 1
                        worker.seeds.remove(seed)
                        yield payload
                    else:  # "ready" or "idle": the worker wants a job
                        self._assign(worker, pending, on_start)
                for worker in [w for w in self._pool if not w.process.is_alive() and w.conn not in ready]:
                    if not worker.conn.poll():  # pending messages are read first
                        self._lost(worker, pending)
        finally:
            self.shutdown()

    def _assign(self, worker: _Worker, pending: deque[int], on_start: Callable[[int], None] | None) -> None:
        size = self.spec.job_size(len(pending), len(self._pool)) if pending else 0
        worker.seeds = [pending.popleft() for _ in range(size)]
        worker.stopping = not worker.seeds
        worker.conn.send(worker.seeds or None)
        if on_start is not None:
            for seed in worker.seeds:
                on_start(seed)

    def _lost(self, worker: _Worker, pending: deque[int]) -> None:
        """A worker's channel closed: if it was not told to stop, re-queue its unfinished seeds and replace it."""
        if worker not in self._pool:
            return
        self._pool.remove(worker)
        worker.conn.close()
        worker.process.join(timeout=5)
        if worker.stopping:
            return
        self.discarded.extend(worker.seeds)
        pending.extendleft(reversed(worker.seeds))  # re-collect them: the count of stored episodes stays right
        self.restarts += 1
        if self.restarts > self.max_restarts:
            raise CollectionError(
                f"collection workers died {self.restarts} times (last exit code {worker.process.exitcode}); "
                "giving up — check memory and the worker log"
            )
        self._spawn()

    def shutdown(self) -> None:
        for worker in self._pool:
            if worker.process.is_alive() and not worker.stopping:
                with contextlib.suppress(BrokenPipeError, OSError):
                    worker.conn.send(None)
        for worker in self._pool:
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.kill()
            worker.conn.close()
        self._pool.clear()

    def pids(self) -> list[int]:
        """Pids of the live workers (for tests and the jobs view)."""
        return [w.process.pid for w in self._pool if w.process.pid is not None]
