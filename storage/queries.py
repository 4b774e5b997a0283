"""Read queries shared by the core, the jobs and the command line."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, bindparam, func, select
from sqlalchemy.orm import Session, contains_eager, joinedload

from storage.models import (
    Binding,
    Checkpoint,
    ConversationState,
    Identity,
    Obligation,
    Person,
    Plan,
    Task,
    Unit,
    UnitAlias,
)

OPEN_STATES = ("owed", "returned")


# What people leave off a unit's name when they type it: 县发改局 → 发改局, 官桥镇人民政府 → 官桥镇.
_NAME_PREFIXES = ("县", "市")
_NAME_SUFFIXES = ("人民政府",)


def _core_name(name: str) -> str:
    for prefix in _NAME_PREFIXES:
        if name.startswith(prefix) and len(name) > len(prefix) + 1:
            name = name[len(prefix) :]
            break
    for suffix in _NAME_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix) + 1:
            name = name[: -len(suffix)]
            break
    return name


def match_units(session: Session, jurisdiction_id: int, name: str) -> list[Unit]:
    """The units a name as people type it may mean, by name: one when it is unambiguous, several to choose from.

    In order, the first rule that matches wins: the canonical name or a stored
    alias; the name without 县/市 before or 人民政府 after it (``发改局``,
    ``官桥镇``); any name or alias holding what was typed (``发改``, two
    characters at least).  Spaces inside the name are ignored.
    """
    cleaned = "".join(name.split())
    if not cleaned:
        return []
    exact = session.scalar(select(Unit).where(Unit.jurisdiction_id == jurisdiction_id, Unit.name == cleaned))
    if exact is None:
        exact = session.scalar(
            select(Unit)
            .join(UnitAlias, UnitAlias.unit_id == Unit.id)
            .where(Unit.jurisdiction_id == jurisdiction_id, UnitAlias.alias == cleaned)
        )
    if exact is not None:
        return [exact]
    units = {u.id: u for u in session.scalars(select(Unit).where(Unit.jurisdiction_id == jurisdiction_id))}
    spellings: list[tuple[str, Unit]] = [(u.name, u) for u in units.values()]
    for unit_id, alias in session.execute(
        select(UnitAlias.unit_id, UnitAlias.alias).where(UnitAlias.unit_id.in_(list(units)))
    ):
        spellings.append((alias, units[unit_id]))
    wanted = _core_name(cleaned)
    found = {u.id: u for spelling, u in spellings if _core_name(spelling) == wanted}
    if not found and len(cleaned) >= 2:
        found = {u.id: u for spelling, u in spellings if cleaned in spelling or wanted in spelling}
    return sorted(found.values(), key=lambda u: u.name)


def find_unit(session: Session, jurisdiction_id: int, name: str) -> Unit | None:
    """The one unit a name as people type it means (see :func:`match_units`), or None when none or several."""
    matches = match_units(session, jurisdiction_id, name)
    return matches[0] if len(matches) == 1 else None


# The statements every chat turn runs are built once, here, and executed with their parameters:
# building a statement (coercing each argument, generating its cache key) costs more than running it.
_FIND_TASK = select(Task).where(
    Task.plan_id == bindparam("plan_id"),
    Task.annex == bindparam("annex"),
    Task.number == bindparam("number"),
    Task.active.is_(True),
)
_FIND_IDENTITY = (
    select(Identity)
    .options(joinedload(Identity.person))
    .where(Identity.platform == bindparam("platform"), Identity.external_id == bindparam("external_id"))
)
_ACTIVE_BINDINGS = (
    select(Binding)
    .options(joinedload(Binding.unit))
    .where(Binding.person_id == bindparam("person_id"), Binding.revoked_at.is_(None))
    .order_by(Binding.id)
)
_PLANS = Plan.__table__.alias("newest")
_NEWEST_PLAN_ID = (
    select(_PLANS.c.id)
    .where(_PLANS.c.jurisdiction_id == Unit.jurisdiction_id)
    .order_by(_PLANS.c.year.desc())
    .limit(1)
    .correlate(Unit)
    .scalar_subquery()
)
# Who is writing, their active bindings (with units), each binding's county's newest plan and the
# person's conversation state in this chat: one query (each chat turn asks all of it).
_SENDER = (
    select(Identity, Binding, Plan, ConversationState)
    .outerjoin(Binding, and_(Binding.person_id == Identity.person_id, Binding.revoked_at.is_(None)))
    .outerjoin(Unit, Unit.id == Binding.unit_id)
    .outerjoin(Plan, Plan.id == _NEWEST_PLAN_ID)
    .outerjoin(
        ConversationState,
        and_(
            ConversationState.platform == Identity.platform,
            ConversationState.user_id == Identity.external_id,
            ConversationState.chat_id == bindparam("chat_id"),
        ),
    )
    .options(contains_eager(Binding.unit))
    .where(Identity.platform == bindparam("platform"), Identity.external_id == bindparam("external_id"))
    .order_by(Binding.id)
)


@dataclass
class Sender:
    """Who wrote a message (see :func:`sender`); ``identity`` None: someone the service does not know."""

    identity: Identity | None
    bindings: list[Binding]  # active, in the order they were made
    plan: Plan | None  # the first binding's county's newest plan (None without a binding)
    state: ConversationState | None  # the person's conversation state in the chat written in


def find_task(session: Session, plan_id: int, annex: str, number: int) -> Task | None:
    return session.scalar(_FIND_TASK, {"plan_id": plan_id, "annex": annex, "number": number})


def find_identity(session: Session, platform: str, external_id: str) -> Identity | None:
    return session.scalar(_FIND_IDENTITY, {"platform": platform, "external_id": external_id})


def active_bindings(session: Session, person_id: int) -> list[Binding]:
    return list(session.scalars(_ACTIVE_BINDINGS, {"person_id": person_id}))


def sender(session: Session, platform: str, external_id: str, chat_id: str) -> Sender:
    """Who wrote in a chat: the identity, its person's active bindings, their county's plan and the chat's state.

    What :func:`find_identity`, :func:`active_bindings`, :func:`newest_plan`
    of the first binding's jurisdiction and the conversation state of
    (platform, chat, user) answer, in one query.
    """
    rows = session.execute(_SENDER, {"platform": platform, "external_id": external_id, "chat_id": chat_id}).all()
    if not rows:
        return Sender(None, [], None, None)
    bindings = [binding for _, binding, _, _ in rows if binding is not None]
    identity, _, plan, state = rows[0]
    return Sender(identity, bindings, plan if bindings else None, state)


def identities_of_unit(
    session: Session, unit_ids: Iterable[int], roles: Sequence[str]
) -> list[tuple[Binding, Identity]]:
    """Every identity of every person bound to these units in these roles."""
    ids = list(unit_ids)
    if not ids:
        return []
    rows = session.execute(
        select(Binding, Identity)
        .join(Identity, Identity.person_id == Binding.person_id)
        .where(Binding.unit_id.in_(ids), Binding.role.in_(list(roles)), Binding.revoked_at.is_(None))
        .order_by(Binding.unit_id, Binding.person_id, Identity.id)
    )
    return [(b, i) for b, i in rows]


def identities_with_role(session: Session, jurisdiction_id: int | None, role: str) -> list[tuple[Binding, Identity]]:
    """Who holds ``role`` in a jurisdiction's units (None: in any jurisdiction of the deployment)."""
    query = (
        select(Binding, Identity)
        .join(Identity, Identity.person_id == Binding.person_id)
        .join(Unit, Unit.id == Binding.unit_id)
        .where(Binding.role == role, Binding.revoked_at.is_(None))
        .order_by(Binding.person_id, Identity.id)
    )
    if jurisdiction_id is not None:
        query = query.where(Unit.jurisdiction_id == jurisdiction_id)
    rows = session.execute(query)
    return [(b, i) for b, i in rows]


def person_identities(session: Session, person_id: int) -> list[Identity]:
    return list(session.scalars(select(Identity).where(Identity.person_id == person_id).order_by(Identity.id)))


def unit_obligations(
    session: Session,
    unit_id: int,
    *,
    checkpoint_id: int | None = None,
    states: Sequence[str] | None = None,
) -> list[Obligation]:
    """A unit's active obligations on live checkpoints, with their tasks and checkpoints loaded."""
    query = (
        select(Obligation)
        .join(Checkpoint, Checkpoint.id == Obligation.checkpoint_id)
        .join(Task, Task.id == Obligation.task_id)
        .options(joinedload(Obligation.task), joinedload(Obligation.checkpoint))
        .where(
            Obligation.unit_id == unit_id,
            Obligation.active.is_(True),
            Checkpoint.cancelled_at.is_(None),
            Task.active.is_(True),
        )
        .order_by(Checkpoint.due_at, Task.annex.desc(), Task.number)
    )
    if checkpoint_id is not None:
        query = query.where(Obligation.checkpoint_id == checkpoint_id)
    if states is not None:
        query = query.where(Obligation.state.in_(list(states)))
    return list(session.scalars(query))


def person(session: Session, person_id: int) -> Person | None:
    return session.get(Person, person_id)


def overdue_rows(session: Session, plan_id: int, now: datetime) -> list[tuple[Obligation, Task, Checkpoint, Unit]]:
    """Every open obligation of a plan past its deadline, by unit, deadline and task."""
    rows = session.execute(
        select(Obligation, Task, Checkpoint, Unit)
        .join(Task, Task.id == Obligation.task_id)
        .join(Checkpoint, Checkpoint.id == Obligation.checkpoint_id)
        .join(Unit, Unit.id == Obligation.unit_id)
        .where(
            Checkpoint.plan_id == plan_id,
            Checkpoint.cancelled_at.is_(None),
            Checkpoint.due_at < now,
            Obligation.active.is_(True),
            Obligation.state.in_(OPEN_STATES),
            Task.active.is_(True),
        )
        .order_by(Unit.id, Checkpoint.due_at, Task.annex.desc(), Task.number)
    )
    return [(o, t, c, u) for o, t, c, u in rows]


def checkpoint_state_counts(session: Session, checkpoint_id: int) -> dict[str, int]:
    """How many of a checkpoint's active obligations are in each state."""
    rows = session.execute(
        select(Obligation.state, func.count())
        .where(Obligation.checkpoint_id == checkpoint_id, Obligation.active.is_(True))
        .group_by(Obligation.state)
    )
    return {state: count for state, count in rows}


def newest_plan(session: Session, jurisdiction_id: int) -> Plan | None:
    """The plan a jurisdiction is running: its newest year."""
    return session.scalar(
        select(Plan).where(Plan.jurisdiction_id == jurisdiction_id).order_by(Plan.year.desc()).limit(1)
    )


def newest_plans(session: Session) -> list[Plan]:
    """Each jurisdiction's newest plan: every plan the service is running."""
    newest = select(Plan.jurisdiction_id, func.max(Plan.year).label("year")).group_by(Plan.jurisdiction_id).subquery()
    return list(
        session.scalars(
            select(Plan).join(newest, (Plan.jurisdiction_id == newest.c.jurisdiction_id) & (Plan.year == newest.c.year))
        )
    )
