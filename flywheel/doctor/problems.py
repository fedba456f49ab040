"""What every doctor check shares: the problem it reports, its findings, and the context it reads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rich.progress import Progress

from flywheel.config import Settings
from flywheel.store import EpisodeStore

IN_FLIGHT_GRACE = timedelta(hours=1)
"""Files younger than this are not judged: a writer may still be committing their row (or waiting out an outage)."""


@dataclass(frozen=True)
class Problem:
    """One broken invariant: which check found it, on what, what is wrong, and the fix to apply."""

    check: str
    subject: str
    detail: str
    fix: str
    repairable: bool = False

    def line(self) -> str:
        return f"{self.check}: {self.subject}: {self.detail} — fix: {self.fix}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "subject": self.subject,
            "detail": self.detail,
            "fix": self.fix,
            "repairable": self.repairable,
        }


@dataclass
class Findings:
    """What one check saw: its problems, how many things it examined, and notes on what it left unjudged."""

    check: str
    checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, subject: str, detail: str, fix: str, repairable: bool = False) -> None:
        self.problems.append(Problem(self.check, subject, detail, fix, repairable))


@dataclass(frozen=True)
class DoctorContext:
    """The opened store and settings, the clock, and how thorough and visible the checks are."""

    store: EpisodeStore
    settings: Settings
    now: datetime
    hash_files: bool = True
    grace: timedelta = IN_FLIGHT_GRACE
    progress: Progress | None = None

    @contextmanager
    def track(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        """A progress task for long work; yields `advance(n)` (a no-op without a progress display)."""
        if self.progress is None:
            yield lambda _n: None
            return
        task = self.progress.add_task(description, total=total)
        try:
            yield lambda n: self.progress.advance(task, n) if self.progress is not None else None
        finally:
            self.progress.update(task, completed=total)
