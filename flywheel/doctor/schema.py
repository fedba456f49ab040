"""The database's schema revision is this flywheel's head."""

from __future__ import annotations

from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from flywheel.doctor.problems import DoctorContext, Findings
from flywheel.store import migrate

CHECK = "schema"


def check(ctx: DoctorContext) -> Findings:
    findings = Findings(CHECK, checked=1)
    db = ctx.store.db
    current = migrate.current_revision(db)
    head = migrate.head_revision()
    if current == head:
        return findings
    subject = f"database {db.safe_url}"
    if current is None:
        tables = set(inspect(db.engine).get_table_names()) - {"alembic_version"}
        if tables:
            findings.add(
                subject, "has tables but no flywheel schema revision", "point FLYWHEEL_DB_URL at a flywheel database"
            )
        else:
            findings.add(
                subject, "is empty (no flywheel schema)", "`flywheel db upgrade` (or any command that opens the store)"
            )
        return findings
    known = {rev.revision for rev in ScriptDirectory.from_config(migrate.alembic_config(db.url)).walk_revisions()}
    if current not in known:
        findings.add(
            subject, f"is at schema revision {current}, unknown to this flywheel (head {head})", "upgrade flywheel"
        )
    else:
        findings.add(
            subject,
            f"is at schema revision {current}, this flywheel needs {head}",
            "back up the database, then `flywheel db upgrade`",
        )
    return findings
