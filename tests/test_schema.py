"""The migrations build exactly the schema the models describe, with one head."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from storage.db import MIGRATIONS, head_revision, make_engine, upgrade
from storage.models import Base


def test_the_migrations_have_one_head() -> None:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert len(ScriptDirectory.from_config(config).get_heads()) == 1, "two migrations claim the same parent"


def test_the_migrated_schema_matches_the_models(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'schema.sqlite3'}")
    try:
        upgrade(engine)
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []
        assert head_revision() is not None
    finally:
        engine.dispose()


def test_messages_waiting_when_the_outbox_learns_expiry_get_a_day_from_when_they_were_queued(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from sqlalchemy import select, text
    from sqlalchemy.orm import Session

    from storage.models import OutboxMessage

    engine = make_engine(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    try:
        upgrade(engine, "0011_task_deadlines")
        with engine.begin() as connection:
            for number, state in enumerate(("queued", "sent"), start=1):
                connection.execute(
                    text(
                        "INSERT INTO outbox (platform, chat_id, kind, dedup_key, payload, state, attempts,"
                        " next_attempt_at, created_at, late) VALUES ('telegram', '7', 'reply', :key, '{}', :state,"
                        " 0, '2024-02-22 02:00:00.000000', '2024-02-22 02:00:00.000000', 0)"
                    ),
                    {"key": f"k{number}", "state": state},
                )
        upgrade(engine)
        with Session(engine) as session:
            until = dict(session.execute(select(OutboxMessage.state, OutboxMessage.matters_until)).all())
        assert until == {"queued": datetime(2024, 2, 23, 2, 0, tzinfo=UTC), "sent": None}
    finally:
        engine.dispose()
