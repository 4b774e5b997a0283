"""What the supervision office does — urge, accept, return, list the overdue and the bound — as plain functions.

The chat commands and the web dashboard both call these, so an urge from the
dashboard and an urge typed in chat are the same act, recorded the same way.
Refusals are :class:`OfficeRefusal` with an error code the templates know.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config import PersonRole, Settings
from core.notices import days_late, queue_unit_notice, task_view
from core.outbox import About, Message, enqueue_to_identities
from core.reporting import latest_reviewable, review
from core.tasks import parse_task_ref, task_label
from messages import Messages
from storage.models import AuditLog, Binding, Identity, Obligation, Person, Plan, Task, Unit
from storage.queries import OPEN_STATES, find_task, identities_of_unit, match_units, overdue_rows, unit_obligations

REPORTER_ROLES = (PersonRole.LIAISON.value, PersonRole.HEAD.value)


class OfficeRefusal(ValueError):
    """An office action that cannot be done as asked; ``code`` selects the message."""

    def __init__(self, code: str, detail: str = "", **extra: Any) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.extra = extra


@dataclass
class UrgeResult:
    sent: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)
    nothing: list[str] = field(default_factory=list)


@dataclass
class ReviewResult:
    decision: str
    task: Task
    unit: Unit
    checkpoint_title: str
    reason: str
    notified: bool


def resolve_unit(session: Session, plan: Plan, name: str) -> Unit:
    """The unit ``name`` means as people type it (发改局, 官桥镇, 发改).

    Raises :class:`OfficeRefusal` ``unknown_unit`` when it means none, and
    ``ambiguous_unit`` with the ``choices`` (full names) when it means several.
    """
    matches = match_units(session, plan.jurisdiction_id, name)
    if not matches:
        raise OfficeRefusal("unknown_unit", name.strip())
    if len(matches) > 1:
        raise OfficeRefusal("ambiguous_unit", name.strip(), choices=[u.name for u in matches])
    return matches[0]


def owed_now(session: Session, unit: Unit, task_id: int | None = None) -> list[Obligation]:
    """Per task, the unit's earliest open obligation: what it owes now."""
    current: dict[int, Obligation] = {}
    for obligation in unit_obligations(session, unit.id, states=OPEN_STATES):
        if task_id is not None and obligation.task_id != task_id:
            continue
        current.setdefault(obligation.task_id, obligation)
    return list(current.values())


def urge(
    session: Session, messages: Messages, plan: Plan, target: str, *, now: datetime, actor: str, key: str
) -> UrgeResult:
    """催办: an immediate, recorded reminder to a unit's liaisons (or every unit owing a task)."""
    target = target.strip()
    if not target:
        raise OfficeRefusal("usage", messages.label("usage", "urge"))
    ref = parse_task_ref(target)
    task = find_task(session, plan.id, ref[0].value, ref[1]) if ref else None
    if task is not None:
        units = [a.unit for a in task.assignments if a.active]
    else:
        units = [resolve_unit(session, plan, target)]
    result = UrgeResult()
    for unit in units:
        owed = owed_now(session, unit, task.id if task else None)
        if not owed:
            if task is None:
                result.nothing.append(unit.name)
            continue
        queued = queue_unit_notice(
            session, messages, unit, owed, template="urge", kind="urge", dedup=f"urge:{key}:{unit.id}", now=now
        )
        (result.sent if queued else result.unreachable).append(unit.name)
        if not queued:  # nobody to tell: the office was told so, and nothing was urged
            continue
        session.add(
            AuditLog(
                at=now,
                actor=actor,
                action="urge",
                subject=unit.name,
                detail={
                    "tasks": [task_label(o.task.annex, o.task.number, messages.language) for o in owed],
                    "delivered_to": len(queued),
                },
            )
        )
    if task is not None and not result.sent and not result.unreachable:
        result.nothing.append(task_label(task.annex, task.number, messages.language))
    return result


def decide(
    session: Session,
    messages: Messages,
    plan: Plan,
    task_ref: str,
    unit_name: str,
    decision: str,
    reason: str,
    *,
    now: datetime,
    actor: str,
    person_id: int | None,
    key: str,
    confirmed: bool = False,
) -> ReviewResult:
    """Accept a unit's answer on a task, or return it with a reason (it is owed again); the unit is told.

    Returning an answer already accepted needs ``confirmed``: it withdraws the acceptance.
    """
    ref = parse_task_ref(task_ref)
    task = find_task(session, plan.id, ref[0].value, ref[1]) if ref else None
    if task is None:
        raise OfficeRefusal("unknown_task", task_ref)
    unit = resolve_unit(session, plan, unit_name)
    if decision == "returned" and not reason.strip():
        raise OfficeRefusal("usage", messages.label("usage", "return"))
    obligation = latest_reviewable(session, task.id, unit.id, decision)
    label = task_label(task.annex, task.number, messages.language)
    if obligation is None:
        raise OfficeRefusal("nothing_to_review", f"{label} {unit.name}", limit=messages.label("review_verb", decision))
    if decision == "returned" and obligation.state == "accepted" and not confirmed:
        # Undoing an acceptance is a deliberate act: asked for again, with the reason.
        raise OfficeRefusal("confirm_return", f"{label} {unit.name}", limit=obligation.checkpoint.title)
    review(session, obligation, decision=decision, reason=reason.strip(), person_id=person_id, now=now, actor=actor)
    identities = [identity for _, identity in identities_of_unit(session, [unit.id], REPORTER_ROLES)]
    notice = messages.render(
        decision, task=task_view(task, messages.language), checkpoint=obligation.checkpoint.title, reason=reason.strip()
    )
    notified = enqueue_to_identities(
        session,
        identities,
        kind="review",
        dedup_key=f"review:{key}",
        message=Message(text=notice),
        now=now,
        about=About(checkpoint_id=obligation.checkpoint_id, unit_id=unit.id, task_ids=(task.id,)),
    )
    return ReviewResult(decision, task, unit, obligation.checkpoint.title, reason.strip(), bool(notified))


def overdue_view(session: Session, messages: Messages, plan: Plan, now: datetime) -> dict[str, Any]:
    """Who owes what now, past due, grouped by unit (for /overdue and the dashboard)."""
    rows = overdue_rows(session, plan.id, now)
    reachable = {
        unit_id
        for (unit_id,) in session.execute(
            select(Binding.unit_id).where(Binding.revoked_at.is_(None), Binding.role.in_(REPORTER_ROLES)).distinct()
        )
    }
    units: dict[int, dict[str, Any]] = {}
    for obligation, task, checkpoint, unit in rows:
        entry = units.setdefault(
            unit.id, {"id": unit.id, "name": unit.name, "entries": [], "reachable": unit.id in reachable}
        )
        entry["entries"].append(
            {
                **task_view(task, messages.language),
                "checkpoint": checkpoint.title,
                "checkpoint_key": checkpoint.key,
                "due": checkpoint.due_at,
                "late_days": days_late(checkpoint.due_at, now),
                "state": obligation.state,
                "role": obligation.role,
            }
        )
    ordered = sorted(units.values(), key=lambda u: (-len(u["entries"]), u["name"]))
    return {"units": ordered, "total": len(rows), "now": now}


def who_view(session: Session, settings: Settings, messages: Messages, plan: Plan) -> dict[str, Any]:
    """Bound people per unit, and the units with nobody bound."""
    units = list(session.scalars(select(Unit).where(Unit.jurisdiction_id == plan.jurisdiction_id).order_by(Unit.id)))
    people: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for binding, identity in session.execute(
        select(Binding, Identity)
        .join(Identity, Identity.person_id == Binding.person_id)
        .where(Binding.revoked_at.is_(None))
        .order_by(Binding.unit_id, Binding.id)
    ):
        people[binding.unit_id].append(
            {
                "name": binding.person.display_name or identity.username or identity.external_id,
                "role": messages.label("role", binding.role),
                "role_code": binding.role,
                "platform": identity.platform,
                "reachable": identity.reachable,
                "reason": identity.unreachable_reason,
            }
        )
    office_unit = settings.office.unit
    bound = [{"name": u.name, "people": people[u.id]} for u in units if people.get(u.id)]
    unbound = [u.name for u in units if not people.get(u.id) and u.name != office_unit]
    return {"bound": bound, "unbound": unbound}


# How the audit log names who acted when it is not a person's chat account.
_ACTOR_WORDS = {
    "cli": "命令行",
    "init": "系统初始化",
    "sandbox": "本地沙盒",
    "web:secret": "看板(口令登录)",
    "web:local": "看板(本机)",
    "scheduler": "定时任务",
}
_TASK_KEY = re.compile(r"\b(county|city)-(\d+)\b")


def audit_view(session: Session, messages: Messages, limit: int = 12) -> list[dict[str, Any]]:
    """The latest audit entries as the office reads them: people's names, task labels, no internal ids."""
    rows = session.scalars(select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)).all()
    names = _actor_names(session, {row.actor for row in rows})
    return [
        {
            "at": row.at,
            "action": row.action,
            "actor": names.get(row.actor, row.actor),
            "subject": _TASK_KEY.sub(lambda m: task_label(m[1], int(m[2]), messages.language), row.subject),
        }
        for row in rows
    ]


def _actor_names(session: Session, actors: set[str]) -> dict[str, str]:
    """``web:person:7`` and ``telegram:1234`` to the person's name; fixed words for the service's own acts."""
    names: dict[str, str] = {}
    for actor in actors:
        if actor in _ACTOR_WORDS:
            names[actor] = _ACTOR_WORDS[actor]
            continue
        kind, _, rest = actor.partition(":")
        person: Person | None = None
        account = ""
        if kind == "web" and rest.startswith("person:") and rest[7:].isdigit():
            person = session.get(Person, int(rest[7:]))
        elif rest:
            identity = session.scalar(select(Identity).where(Identity.platform == kind, Identity.external_id == rest))
            if identity is not None:
                person, account = identity.person, identity.username
        if person is not None:
            names[actor] = person.display_name or account or "(未留姓名)"
        elif kind in ("telegram", "wecom", "sandbox"):
            names[actor] = "(未绑定的账号)"
    return names
