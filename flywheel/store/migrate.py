"""Programmatic Alembic: upgrade, current revision, and the schema check done on every open.

The scripts are the top-level `migrations` package, which ships in flywheel's distribution beside `flywheel`;
`migrations_dir()` finds it through `importlib.resources`, so a checkout and an installed wheel work alike.
"""

from __future__ import annotations

import importlib
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from flywheel.errors import FlywheelError, SchemaOutOfDateError
from flywheel.store.db import Database

MIGRATIONS_PACKAGE = "migrations"


class MigrationsNotFoundError(FlywheelError):
    """flywheel's migration scripts are not importable (a broken install, or another `migrations` shadows them)."""


def migrations_dir() -> Path:
    """The Alembic script directory: the installed `migrations` package's folder."""
    try:
        package = importlib.import_module(MIGRATIONS_PACKAGE)
    except ImportError as exc:
        raise MigrationsNotFoundError(
            f"flywheel's migrations package is not importable ({exc}); reinstall flywheel (`pip install .`)"
        ) from exc
    root = resources.files(package)
    if getattr(package, "OWNER", None) != "flywheel" or not isinstance(root, Path) or not (root / "env.py").is_file():
        raise MigrationsNotFoundError(
            f"`{MIGRATIONS_PACKAGE}` at {root} is not flywheel's migration scripts; "
            "run flywheel from a directory without its own `migrations` package, or reinstall flywheel"
        )
    return root


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    return heads[0]


def current_revision(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(db: Database, revision: str = "head") -> None:
    command.upgrade(alembic_config(db.url), revision)


def downgrade(db: Database, revision: str = "base") -> None:
    command.downgrade(alembic_config(db.url), revision)


def ensure_schema(db: Database) -> None:
    """Migrate an empty database to head; refuse one at another revision with what to do."""
    current = current_revision(db)
    head = head_revision()
    if current == head:
        return
    if current is None:
        from sqlalchemy import inspect

        tables = set(inspect(db.engine).get_table_names()) - {"alembic_version"}
        if tables:
            raise SchemaOutOfDateError(
                f"database {db.safe_url} has tables but no flywheel schema revision; "
                "point FLYWHEEL_DB_URL at an empty or flywheel database"
            )
        upgrade(db)
        return
    known = {rev.revision for rev in ScriptDirectory.from_config(alembic_config(db.url)).walk_revisions()}
    if current not in known:
        raise SchemaOutOfDateError(
            f"database {db.safe_url} is at schema revision {current}, unknown to this flywheel version "
            f"(head {head}); upgrade flywheel"
        )
    raise SchemaOutOfDateError(
        f"database {db.safe_url} is at schema revision {current}, this flywheel needs {head}; "
        "run `flywheel db upgrade` (back up the database first)"
    )
