"""durable inbox: inbound_update keeps the raw update until it is handled

Revision ID: 0009_inbox
Revises: 0008_task_groups
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_inbox"
down_revision = "0008_task_groups"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_update") as batch:
        # Rows from before the inbox were handled when they were written.
        batch.add_column(sa.Column("state", sa.String(length=10), nullable=False, server_default="handled"))
        batch.add_column(sa.Column("user_id", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("chat_id", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("payload", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("notified", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("handled_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_inbound_update_state_next", ["state", "next_attempt_at"])


def downgrade() -> None:
    with op.batch_alter_table("inbound_update") as batch:
        batch.drop_index("ix_inbound_update_state_next")
        for column in (
            "handled_at",
            "notified",
            "last_error",
            "next_attempt_at",
            "attempts",
            "payload",
            "chat_id",
            "user_id",
            "state",
        ):
            batch.drop_column(column)
