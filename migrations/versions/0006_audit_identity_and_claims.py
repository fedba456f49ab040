"""who the machine says acted (labels, alias moves) and imported operator names kept as claims

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 20:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("episode") as batch:
        batch.add_column(sa.Column("claimed_operator", sa.String(length=64), nullable=True))
    with op.batch_alter_table("segment") as batch:
        batch.add_column(sa.Column("claimed_operator", sa.String(length=64), nullable=True))
    with op.batch_alter_table("label") as batch:
        batch.add_column(sa.Column("recorded_by", sa.String(length=160), nullable=True))
    with op.batch_alter_table("alias_event") as batch:
        batch.add_column(sa.Column("recorded_by", sa.String(length=160), nullable=True))


def downgrade() -> None:
    for table, column in (
        ("alias_event", "recorded_by"),
        ("label", "recorded_by"),
        ("segment", "claimed_operator"),
        ("episode", "claimed_operator"),
    ):
        with op.batch_alter_table(table) as batch:
            batch.drop_column(column)
