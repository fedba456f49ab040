"""Programmatic Alembic: upgrade, current revision, and the schema check done on every open."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from flywheel.errors import SchemaOutOfDateError
from flywheel.store.db import Database

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
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
