"""outbox: the moment each message stops mattering; per-platform failure streaks for health

Revision ID: 0012_outbox_matters_until
Revises: 0011_task_deadlines
Create Date: 2026-12-02
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from alembic import op

revision = "0012_outbox_matters_until"
down_revision = "0011_task_deadlines"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("matters_until", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "platform_status",
        sa.Column("platform", sa.String(length=20), nullable=False),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("platform", name=op.f("pk_platform_status")),
    )
    # Rows still waiting keep the promise they were queued under: a day from when they were queued
    # (the default for a message whose own moment is unknown), not "forever".
    outbox = sa.table(
        "outbox",
        sa.column("id", sa.Integer()),
        sa.column("state", sa.String()),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("matters_until", sa.DateTime(timezone=True)),
    )
    connection = op.get_bind()
    waiting = connection.execute(
        sa.select(outbox.c.id, outbox.c.created_at).where(outbox.c.state.in_(("queued", "sending")))
    ).all()
    for row_id, created_at in waiting:
        if created_at is not None:
            connection.execute(
                outbox.update().where(outbox.c.id == row_id).values(matters_until=created_at + timedelta(days=1))
            )


def downgrade() -> None:
    op.drop_table("platform_status")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("matters_until")
