"""Progress bars for long work: collection and evaluation (with live success and takeover counts), checks."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def episode_progress(enabled: bool = True) -> Progress:
    """A bar whose tasks carry `successes` and `interventions` fields."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("success {task.fields[successes]}"),
        TextColumn("takeovers {task.fields[interventions]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


def work_progress(enabled: bool = True, console: Console | None = None) -> Progress:
    """A plain bar for long checks and scans (one task per kind of work)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )
