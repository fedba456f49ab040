"""iteration states constrained to the scheduler's (running, done)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 10:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATES = ("running", "done")  # as the migration was written; the model's IterationState may grow later


def upgrade() -> None:
    listed = ", ".join(f"'{state}'" for state in STATES)
    unknown = op.get_bind().execute(sa.text(f"SELECT number, state FROM iteration WHERE state NOT IN ({listed})")).all()
    if unknown:
        rows = ", ".join(f"iteration {number}: {state!r}" for number, state in unknown)
        raise RuntimeError(f"iteration rows with a state the scheduler never writes ({rows}); fix them, then upgrade")
    with op.batch_alter_table("iteration") as batch:
        batch.create_check_constraint("state", f"state IN ({listed})")


def downgrade() -> None:
    with op.batch_alter_table("iteration") as batch:
        batch.drop_constraint("state", type_="check")
