"""`flywheel` command line: one Typer app; each command group lives in its own module."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from flywheel.cli import collect as collect_commands
from flywheel.cli import console as console_commands
from flywheel.cli import db as db_commands
from flywheel.cli import doctor as doctor_commands
from flywheel.cli import episodes as episode_commands
from flywheel.cli import fork as fork_commands
from flywheel.cli import interop as interop_commands
from flywheel.cli import loop as loop_commands
from flywheel.cli import policies as policy_commands
from flywheel.cli import serve as serve_commands
from flywheel.cli.context import CliState
from flywheel.errors import FlywheelError
from flywheel.headless import headless_defaults

app = typer.Typer(
    name="flywheel",
    help="Human-in-the-loop data flywheel for robot learning: collect, take over, retrain, promote.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db_commands.app, name="db")
app.add_typer(episode_commands.app, name="episodes")
app.add_typer(policy_commands.app, name="policies")
app.add_typer(interop_commands.export_app, name="export")
app.add_typer(interop_commands.import_app, name="import")
app.command("gc")(episode_commands.gc)
app.command("fork")(fork_commands.fork)
app.command("demos")(collect_commands.demos)
app.command("collect")(collect_commands.collect_command)
app.command("train")(loop_commands.train)
app.command("eval")(loop_commands.evaluate)
app.command("run")(loop_commands.run)
app.command("presets")(loop_commands.presets)
app.command("console")(console_commands.console)
app.command("serve")(serve_commands.serve)
app.command("doctor")(doctor_commands.doctor)


@app.callback()
def root(
    ctx: typer.Context,
    home: Path | None = typer.Option(None, "--home", help="data directory (env FLYWHEEL_HOME; default ./.flywheel)"),
    db_url: str | None = typer.Option(None, "--db-url", help="SQLAlchemy URL (env FLYWHEEL_DB_URL)"),
    operator: str | None = typer.Option(None, "--operator-name", help="who is acting, for the audit trail"),
) -> None:
    ctx.obj = CliState(overrides={"home": home, "db_url": db_url, "operator": operator})


def main() -> None:
    """Console-script entry point: user errors become one line on stderr and exit code 2."""
    headless_defaults()
    try:
        app()
    except FlywheelError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
