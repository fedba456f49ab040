"""`flywheel doctor`: check a home and its database, one line per problem with its fix; `--repair` the safe ones."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from flywheel.cli.collect import HOME_HELP
from flywheel.cli.context import state
from flywheel.doctor import DoctorReport, open_store, run_doctor
from flywheel.progress import work_progress


def doctor(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="machine-readable report"),
    repair: bool = typer.Option(False, "--repair", help="apply the safe repairs (orphan files, stuck jobs), re-check"),
    quick: bool = typer.Option(False, "--quick", help="check sizes and manifests only, skip hashing every file"),
    home: Path | None = typer.Option(None, "--home", help=HOME_HELP),
) -> None:
    """Check every invariant of the store; exit 0 only when clean (1: problems found). Changes nothing without
    --repair."""
    cli = state(ctx, home=home)
    settings = cli.settings
    store = open_store(settings)
    try:
        err = Console(stderr=True)
        with work_progress(enabled=err.is_terminal, console=err) as progress:
            report = run_doctor(store, settings, repair=repair, hash_files=not quick, progress=progress)
    finally:
        store.db.dispose()
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        _print(report)
    raise typer.Exit(0 if report.ok else 1)


def _print(report: DoctorReport) -> None:
    console = Console(highlight=False, soft_wrap=True)
    for line in report.repaired:
        console.print(f"repaired: {line}", markup=False)
    for problem in report.problems:
        console.print(problem.line(), markup=False)
    for note in report.notes:
        console.print(f"note: {note}", markup=False)
    checked = ", ".join(f"{name} {n}" for name, n in report.checked.items())
    if report.ok:
        console.print(f"no problems ({checked})", markup=False)
        return
    repairable = sum(p.repairable for p in report.problems)
    hint = f"; {repairable} repairable with `flywheel doctor --repair`" if repairable else ""
    console.print(f"{len(report.problems)} problem(s){hint} ({checked})", markup=False)
