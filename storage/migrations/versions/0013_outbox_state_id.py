"""outbox: an index of the queued rows in id order, for the sender's claim

Revision ID: 0013_outbox_state_id
Revises: 0012_outbox_matters_until
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0013_outbox_state_id"
down_revision = "0012_outbox_matters_until"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_state_id", "outbox", ["state", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_outbox_state_id", table_name="outbox")
