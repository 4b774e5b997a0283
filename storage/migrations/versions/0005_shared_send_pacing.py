"""shared send pacing

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "rate_slot",
        sa.Column("platform", sa.String(length=20), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("platform", name=op.f("pk_rate_slot")),
    )


def downgrade() -> None:

    op.drop_table("rate_slot")
