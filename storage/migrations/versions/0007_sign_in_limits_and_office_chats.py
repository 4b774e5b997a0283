"""sign-in limits, live sign-in codes and office group chats

Revision ID: 0007
Revises: 0006_targets
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006_targets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sign_in_limit",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("lockouts", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_sign_in_limit")),
    )
    op.create_table(
        "office_chat",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=20), nullable=False),
        sa.Column("chat_id", sa.String(length=100), nullable=False),
        sa.Column("jurisdiction_id", sa.Integer(), nullable=False),
        sa.Column("added_by_person_id", sa.Integer(), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["jurisdiction_id"], ["jurisdiction.id"], name=op.f("fk_office_chat_jurisdiction_id_jurisdiction")
        ),
        sa.ForeignKeyConstraint(
            ["added_by_person_id"], ["person.id"], name=op.f("fk_office_chat_added_by_person_id_person")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_office_chat")),
        sa.UniqueConstraint("platform", "chat_id", name=op.f("uq_office_chat_platform")),
    )
    with op.batch_alter_table("login_code", schema=None) as batch_op:
        batch_op.add_column(sa.Column("code", sa.String(length=12), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("login_code", schema=None) as batch_op:
        batch_op.drop_column("code")
    op.drop_table("office_chat")
    op.drop_table("sign_in_limit")
