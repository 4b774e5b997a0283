"""outbox answer times, for per-chat windows shared by several processes

Revision ID: 0010_outbox_answered_at
Revises: 0009_inbox
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_outbox_answered_at"
down_revision = "0009_inbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_outbox_chat_answered", "outbox", ["platform", "chat_id", "answered_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_chat_answered", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("answered_at")
