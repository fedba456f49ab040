"""`flywheel db`: schema migrations."""

from __future__ import annotations

import typer
from rich.console import Console

from flywheel.cli.context import state
from flywheel.store import Database
from flywheel.store import migrate as migrations

app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)


def _database(ctx: typer.Context) -> Database:
    settings = state(ctx).settings
    db = Database(settings.database_url, settings.sqlite_busy_timeout_ms, settings.db_retry_seconds)
    db.ping()
    return db


@app.command()
def upgrade(ctx: typer.Context, revision: str = typer.Argument("head", help="target revision")) -> None:
    """Migrate the database to the newest schema (or REVISION)."""
    db = _database(ctx)
    before = migrations.current_revision(db)
    migrations.upgrade(db, revision)
    after = migrations.current_revision(db)
    Console().print(f"database {db.safe_url}: {before or 'empty'} → {after}")


@app.command()
def current(ctx: typer.Context) -> None:
    """Show the database's schema revision and whether it is up to date."""
    db = _database(ctx)
    rev = migrations.current_revision(db)
    head = migrations.head_revision()
    status = "up to date" if rev == head else ("empty" if rev is None else f"behind head {head}")
    Console().print(f"database {db.safe_url}: revision {rev or '-'} ({status})")


@app.command()
def downgrade(ctx: typer.Context, revision: str = typer.Argument(..., help="target revision, e.g. base")) -> None:
    """Migrate the schema down to REVISION (destroys data in dropped tables)."""
    db = _database(ctx)
    migrations.downgrade(db, revision)
    Console().print(f"database {db.safe_url}: now at {migrations.current_revision(db) or 'base'}")
