"""`flywheel fork`: a new home holding this store as it stood after one loop iteration."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from flywheel.cli.context import state
from flywheel.config import ENV_PREFIX
from flywheel.fork import fork_store

HOME_DERIVED = ("db_url", "episodes_dir", "checkpoints_dir")  # settings whose default lies under --home


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
    settings = state(ctx).settings
    report = fork_store(settings, destination, iteration, progress=console.print)
    champion = f"v{report.champion}" if report.champion is not None else "none"
    console.print(
        f"forked at iteration {report.iteration} into {report.destination}: {report.rows['episode']} episodes, "
        f"{report.rows['policy_version']} policy versions ({report.checkpoints} checkpoints copied), champion "
        f"{champion}. Continue with `flywheel --home {report.destination} run ...`"
    )
    overriding = [ENV_PREFIX + key.upper() for key in HOME_DERIVED if getattr(settings, key) is not None]
    if overriding:
        console.print(
            f"[yellow]note:[/] {', '.join(overriding)} (or the same keys in a config file, or --db-url) chose this "
            "store's database or folders and would override --home for the fork too: run the fork's commands "
            f"without them, e.g. `env -u {overriding[0]} flywheel --home {report.destination} ...`",
            highlight=False,
        )
