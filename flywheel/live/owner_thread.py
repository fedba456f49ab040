"""A single daemon thread that runs calls in order and returns their results (or raises their exceptions).

The live session keeps its env and renderer on one thread because MuJoCo's EGL contexts are bound to the thread
that made them current. A `ThreadPoolExecutor` would do, except that it refuses new work once the interpreter
starts shutting down, and the console saves its open sessions from an exit hook, which runs after that point.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[Future, Callable[..., Any], tuple[Any, ...]]


class OwnerThread:
    """`call(fn, *args)` runs `fn` on the owned thread and waits for it; `stop()` ends the thread after queued work."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._stopped = False
        self._gate = threading.Lock()  # no job can be queued behind the stop marker
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        if threading.current_thread() is self._thread:
            return fn(*args)  # already on the owned thread: queueing would wait on itself
        future: Future = Future()
        with self._gate:
            if self._stopped:
                raise RuntimeError(f"{self._thread.name} is stopped")
            self._jobs.put((future, fn, args))
        return future.result()

    def stop(self, timeout_s: float = 30.0) -> None:
        with self._gate:
            if self._stopped:
                return
            self._stopped = True
            self._jobs.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=timeout_s)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to the caller, which re-raises it
                future.set_exception(exc)
