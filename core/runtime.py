"""The resources a command or the service works with, created once at start-up.

A :class:`Runtime` bundles the settings, the database engine and session
factory, and the clock.  It is built by :func:`open_runtime` and passed down;
no module keeps one globally.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from core.checkpoints import sync_config_checkpoints
from core.clock import Clock, SystemClock
from core.config import Settings
from core.plan_document import read_plan_file
from core.plan_import import ImportResult, ensure_office_unit, import_parsed
from storage.db import make_engine, session_factory, transaction, upgrade
from storage.models import Binding, Jurisdiction, Plan, Unit
from storage.queries import newest_plan, newest_plans


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock = field(default_factory=SystemClock)

    def transaction(self):  # type: ignore[no-untyped-def]
        """A session in a transaction that commits when the block ends without error."""
        return transaction(self.sessions)

    def close(self) -> None:
        self.engine.dispose()


def open_runtime(settings: Settings, clock: Clock | None = None, engine: Engine | None = None) -> Runtime:
    engine = engine or make_engine(settings.database_url, busy_timeout=settings.database.busy_timeout.total_seconds())
    return Runtime(settings=settings, engine=engine, sessions=session_factory(engine), clock=clock or SystemClock())


def current_plan(session: Session, settings: Settings, jurisdiction: str | None = None) -> Plan | None:
    """The newest plan of the configured (or named) jurisdiction."""
    name = jurisdiction or settings.plan.jurisdiction
    return session.scalar(
        select(Plan)
        .join(Jurisdiction, Jurisdiction.id == Plan.jurisdiction_id)
        .where(Jurisdiction.name == name)
        .order_by(Plan.year.desc())
        .limit(1)
    )


def initialise(runtime: Runtime, *, import_plan_if_empty: bool = True) -> ImportResult | None:
    """Create or upgrade the schema, import the configured plan into an empty database,
    and bring the plan's checkpoints in line with the configuration."""
    upgrade(runtime.engine)
    settings = runtime.settings
    result = None
    with runtime.transaction() as session:
        if import_plan_if_empty and current_plan(session, settings) is None:
            path: Path = settings.plan_path
            plan_file = read_plan_file(path, settings)
            result = import_parsed(
                session,
                settings,
                plan_file.parse,
                source_name=path.name,
                source_sha256=plan_file.sha256,
                jurisdiction_name=settings.plan.jurisdiction,
                now=runtime.clock.now(),
                actor="init",
                directory=settings.unit_directory(path),
            )
        # Every jurisdiction's plan follows config.toml's calendar, on every start.
        for plan in newest_plans(session):
            ensure_office_unit(session, settings, plan)
            sync_config_checkpoints(session, settings, plan, runtime.clock.now())
    return result


def plan_for_person(session: Session, settings: Settings, person_id: int | None) -> Plan | None:
    """The plan of the jurisdiction a person is bound in; the configured one for nobody in particular."""
    if person_id is not None:
        jurisdiction_id = session.scalar(
            select(Unit.jurisdiction_id)
            .join(Binding, Binding.unit_id == Unit.id)
            .where(Binding.person_id == person_id, Binding.revoked_at.is_(None))
            .order_by(Binding.id)
            .limit(1)
        )
        if jurisdiction_id is not None:
            return newest_plan(session, jurisdiction_id)
    return current_plan(session, settings)
