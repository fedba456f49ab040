"""Progress bars for long work (collection, evaluation), with live success and takeover counts."""

from __future__ import annotations

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
