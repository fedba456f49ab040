"""eval episodes stored per seed; eval run kind and metrics (issue 21: sequential gates, throughput)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "eval_episode",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("policy_version_id", sa.Integer(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("max_steps", sa.Integer(), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("act_latency_ms", sa.JSON(), nullable=False),
        sa.Column("nan_action", sa.Boolean(), nullable=False),
        sa.Column("joint_limit_violations", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["policy_version_id"],
            ["policy_version.id"],
            name=op.f("fk_eval_episode_policy_version_id_policy_version"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_eval_episode")),
        sa.UniqueConstraint("policy_version_id", "seed", "max_steps", name="uq_eval_episode_version_seed_steps"),
    )
    with op.batch_alter_table("eval_episode", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_eval_episode_policy_version_id"), ["policy_version_id"], unique=False)
    with op.batch_alter_table("eval_run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=16), server_default="gate", nullable=False))
        batch_op.add_column(sa.Column("metrics", sa.JSON(), nullable=True))
    # champion baselines were the runs stored without gates
    op.execute("UPDATE eval_run SET kind = 'baseline' WHERE passed IS NULL")


def downgrade() -> None:
    with op.batch_alter_table("eval_run", schema=None) as batch_op:
        batch_op.drop_column("metrics")
        batch_op.drop_column("kind")
    with op.batch_alter_table("eval_episode", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_eval_episode_policy_version_id"))
    op.drop_table("eval_episode")
