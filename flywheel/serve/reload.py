"""Hot reload: hold the served policy, swap it atomically when its alias moves, poll in a background thread."""

from __future__ import annotations

import logging
import threading

from flywheel.serve.source import PolicySource, ServedPolicy

log = logging.getLogger("flywheel.serve")


class PolicyHolder:
    """The policy being served. A request takes `current` once and keeps that reference, so a swap never changes
    the policy under a request in flight: it finishes on the old one, the next request gets the new one."""

    def __init__(self, source: PolicySource, served: ServedPolicy) -> None:
        self.source = source
        self._lock = threading.Lock()
        self._served = served
        self._failed_version: int | None = None
        self.reloads = 0
        self.reload_error: str | None = None

    @property
    def current(self) -> ServedPolicy:
        with self._lock:
            return self._served

    def refresh(self) -> bool:
        """Load and swap in the version the source points at now, if it moved; True when swapped.

        Loading (and verifying the checkpoint) happens outside the lock; a version that failed to load is not
        retried until the alias moves again, and the old policy keeps serving meanwhile.
        """
        version: int | None = None
        try:
            version = self.source.current_version()
            if version in (self.current.version_id, self._failed_version):
                return False
            new = self.source.load(version)
        except Exception as exc:  # a bad checkpoint or a DB hiccup must not stop serving
            with self._lock:
                self._failed_version = version
                self.reload_error = f"{type(exc).__name__}: {exc}"
            log.warning("policy reload failed; still serving version %s: %s", self.current.version_id, exc)
            return False
        with self._lock:
            old, self._served = self._served, new
            self.reloads += 1
            self.reload_error = None
            self._failed_version = None
        log.info("reloaded %s: policy %s -> %s (sha256 %s)", new.alias, old.version_id, new.version_id, new.sha256[:12])
        return True


class ReloadWatcher:
    """Calls `holder.refresh()` every `interval_s` seconds in a daemon thread until `stop()`."""

    def __init__(self, holder: PolicyHolder, interval_s: float) -> None:
        self.holder = holder
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="flywheel-serve-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, 2 * self.interval_s))
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.holder.refresh()
