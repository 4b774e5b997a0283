"""task groups: a task's group phrases, and who defined a group's members

Revision ID: 0008_task_groups
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_task_groups"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "task_group",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("phrase", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["task.id"], name=op.f("fk_task_group_task_id_task")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_group")),
        sa.UniqueConstraint("task_id", "phrase", name=op.f("uq_task_group_task_id")),
    )
    op.create_index(op.f("ix_task_group_task_id"), "task_group", ["task_id"], unique=False)
    with op.batch_alter_table("unit_group_member") as batch:
        batch.add_column(sa.Column("source", sa.String(length=20), server_default="config", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("unit_group_member") as batch:
        batch.drop_column("source")
    op.drop_index(op.f("ix_task_group_task_id"), table_name="task_group")
    op.drop_table("task_group")
