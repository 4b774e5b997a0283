"""task deadlines: a task's own deadline (date and words) and an assignment's scope note

Revision ID: 0011_task_deadlines
Revises: 0010_outbox_answered_at
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_task_deadlines"
down_revision = "0010_outbox_answered_at"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task") as batch:
        batch.add_column(sa.Column("deadline", sa.Date(), nullable=True))
        batch.add_column(sa.Column("deadline_text", sa.String(length=100), server_default="", nullable=False))
    with op.batch_alter_table("assignment") as batch:
        batch.add_column(sa.Column("note", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("assignment") as batch:
        batch.drop_column("note")
    with op.batch_alter_table("task") as batch:
        batch.drop_column("deadline_text")
        batch.drop_column("deadline")
