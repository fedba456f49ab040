"""`flywheel fork`: a new home holding this store as it stood after one loop iteration."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from flywheel.cli.context import state
from flywheel.store.fork import fork_store


def fork(
    ctx: typer.Context,
    destination: Path = typer.Argument(..., help="the new home (must not exist)"),
    iteration: int | None = typer.Option(
        None, "--iteration", "-i", min=0, help="fork as iteration N finished (default: the last finished one)"
    ),
) -> None:
    """Copy this store, as it stood when a loop iteration finished, into a new home.

    For ablations from one start: fork after the bootstrap (`--iteration 0`) and run each arm's `flywheel run
    --config ...` in its own fork. Rows, episode files (hard-linked where possible) and checkpoints come along;
    later iterations do not. The source is only read."""
    console = Console()
    report = fork_store(state(ctx).settings, destination, iteration, progress=console.print)
    champion = f"v{report.champion}" if report.champion is not None else "none"
    console.print(
        f"forked at iteration {report.iteration} into {report.destination}: {report.rows['episode']} episodes, "
        f"{report.rows['policy_version']} policy versions ({report.checkpoints} checkpoints copied), champion "
        f"{champion}. Continue with `flywheel --home {report.destination} run ...`"
    )
