"""Progress bars for long work: collection and evaluation (with live success and takeover counts), training, checks.

On a terminal each is rich's live bar. Where the output is not a terminal (a log file, `nohup`, CI, a job
runner) a live bar shows nothing until it ends, so there the same bars print a plain line per task at most every
`LOG_LINE_INTERVAL_S` seconds (`FLYWHEEL_PROGRESS_INTERVAL_S` overrides it) and when the task finishes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from flywheel.errors import ConfigError

LOG_LINE_INTERVAL_S = 60.0
LOG_LINE_INTERVAL_ENV = "FLYWHEEL_PROGRESS_INTERVAL_S"

FieldsText = Callable[[Mapping[str, Any]], str]


def log_line_interval(environ: Mapping[str, str] | None = None) -> float:
    """Seconds between a task's plain progress lines: `FLYWHEEL_PROGRESS_INTERVAL_S`, else the default."""
    raw = (os.environ if environ is None else environ).get(LOG_LINE_INTERVAL_ENV, "").strip()
    if not raw:
        return LOG_LINE_INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ConfigError(f"{LOG_LINE_INTERVAL_ENV}={raw!r}: expected seconds between progress lines, a number > 0")
    return value


def _duration(seconds: float | None) -> str:
    return "?" if seconds is None else str(timedelta(seconds=int(seconds)))


class LoggedProgress(Progress):
    """rich's Progress that, on a console that is not a terminal, prints one plain line per task every
    `interval_s` seconds and once when it completes (`description: done/total (pct), elapsed, left, fields`)
    in place of the bar."""

    def __init__(
        self,
        *columns: str | ProgressColumn,
        fields_text: FieldsText | None = None,
        interval_s: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*columns, **kwargs)
        self._fields_text = fields_text
        self._interval_s = log_line_interval() if interval_s is None else interval_s
        self._logs = not self.disable and not self.console.is_terminal
        if self._logs:  # the lines say it all: no last render of the bar, cut to the log's 80 columns
            self.live.transient = True
        self._last_line: dict[TaskID, float] = {}
        self._started_at: dict[TaskID, float] = {}  # the work already done when the task was added (a resumed run)
        self._finished_logged: set[TaskID] = set()

    def add_task(self, description: str, *args: Any, **kwargs: Any) -> TaskID:
        task_id = super().add_task(description, *args, **kwargs)
        self._last_line[task_id] = time.monotonic()
        self._started_at[task_id] = self._tasks[task_id].completed
        return task_id

    def update(self, task_id: TaskID, **kwargs: Any) -> None:  # type: ignore[override]
        super().update(task_id, **kwargs)
        self._maybe_log(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._maybe_log(task_id)

    def _maybe_log(self, task_id: TaskID) -> None:
        if not self._logs:
            return
        with self._lock:
            task = self._tasks[task_id]
        now = time.monotonic()
        if task.finished:
            if task_id in self._finished_logged:
                return
            self._finished_logged.add(task_id)
        elif now - self._last_line.get(task_id, now) < self._interval_s:
            return
        self._last_line[task_id] = now
        self.console.print(self.log_line(task), markup=False, highlight=False, soft_wrap=True)

    def _time_left(self, task: Task) -> float | None:
        """At the task's mean rate so far (a log line wants a steady estimate, not the bar's 30-second window)."""
        done = task.completed - self._started_at.get(task.id, 0.0)
        if not task.total or not task.elapsed or done <= 0:
            return None
        return (task.total - task.completed) * task.elapsed / done

    def log_line(self, task: Task) -> str:
        """The plain line for `task` as it stands."""
        done = int(task.completed)
        if task.total:
            head = f"{task.description}: {done}/{int(task.total)} ({100 * task.completed / task.total:.0f}%)"
        else:
            head = f"{task.description}: {done}"
        parts = [head, f"{_duration(task.elapsed)} elapsed"]
        if not task.finished:
            parts.append(f"{_duration(self._time_left(task))} left")
        extra = self._fields_text(task.fields) if self._fields_text is not None else ""
        if extra:
            parts.append(extra)
        return ", ".join(parts)


def _episode_fields(fields: Mapping[str, Any]) -> str:
    return f"success {fields.get('successes', 0)}, takeovers {fields.get('interventions', 0)}"


def _info_field(fields: Mapping[str, Any]) -> str:
    return str(fields.get("info", ""))


def _bar(
    fields: tuple[ProgressColumn, ...] = (),
    trailing: tuple[ProgressColumn, ...] = (),
    fields_text: FieldsText | None = None,
    enabled: bool = True,
    console: Console | None = None,
) -> LoggedProgress:
    """description, bar, done/total, `fields`, elapsed, time left, `trailing`."""
    return LoggedProgress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *fields,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *trailing,
        fields_text=fields_text,
        console=console,
        disable=not enabled,
        transient=False,
    )


def episode_progress(enabled: bool = True) -> LoggedProgress:
    """A bar whose tasks carry `successes` and `interventions` fields."""
    counts = (TextColumn("success {task.fields[successes]}"), TextColumn("takeovers {task.fields[interventions]}"))
    return _bar(fields=counts, fields_text=_episode_fields, enabled=enabled)


def step_progress(enabled: bool = True) -> LoggedProgress:
    """A bar over optimiser steps whose tasks carry an `info` field (the latest loss)."""
    return _bar(trailing=(TextColumn("{task.fields[info]}"),), fields_text=_info_field, enabled=enabled)


def work_progress(enabled: bool = True, console: Console | None = None) -> LoggedProgress:
    """A plain bar for long checks, scans, exports and imports (one task per kind of work)."""
    return _bar(enabled=enabled, console=console)
