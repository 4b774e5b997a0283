"""digest runs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "digest_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scheduled", sa.Boolean(), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["plan_id"], ["plan.id"], name=op.f("fk_digest_run_plan_id_plan")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_digest_run")),
    )
    with op.batch_alter_table("digest_run", schema=None) as batch_op:
        batch_op.create_index("ix_digest_run_plan_at", ["plan_id", "at"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("digest_run", schema=None) as batch_op:
        batch_op.drop_index("ix_digest_run_plan_at")

    op.drop_table("digest_run")
