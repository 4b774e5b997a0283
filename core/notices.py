"""Messages that tell a unit what it owes: reminders, escalations and the office's urges.

They share one shape — the unit's open items, lead and responsible tasks apart,
with due dates — and one way of reaching people: every reachable identity of
everyone bound to the unit in the roles asked for, through the outbox.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from core.config import PersonRole
from core.outbox import About, Button, Message, enqueue_to_identities
from core.plan_import import short_title
from core.tasks import task_label
from messages import Messages
from storage.models import Identity, Obligation, Task, Unit
from storage.queries import identities_of_unit

REPORT_BUTTON_LIMIT = 6


def days_late(due_at: datetime, now: datetime) -> int:
    """Whole days past the deadline, counting a started day: 1 the moment it is missed, 0 before."""
    if now <= due_at:
        return 0
    return math.ceil((now - due_at) / timedelta(days=1))


def task_view(task: Task, language: str) -> dict[str, Any]:
    return {
        "id": task.id,
        "label": task_label(task.annex, task.number, language),
        "title": short_title(task.text),
        "text": task.text,
    }


def grouped_items(owed: list[Obligation], now: datetime, messages: Messages) -> list[dict[str, Any]]:
    """A unit's open obligations as the two groups every notice shows: lead, then responsible."""
    groups: dict[str, list[dict[str, Any]]] = {"lead": [], "responsible": []}
    for obligation in owed:
        groups[obligation.role].append(
            {
                **task_view(obligation.task, messages.language),
                "checkpoint": obligation.checkpoint.title,
                "due": obligation.checkpoint.due_at,
                "late_days": days_late(obligation.checkpoint.due_at, now),
                "state": obligation.state,
            }
        )
    return [
        {"title": messages.label("group", "lead"), "entries": groups["lead"]},
        {"title": messages.label("group", "responsible"), "entries": groups["responsible"]},
    ]


def report_buttons(tasks: list[Task], checkpoint_id: int | None, messages: Messages) -> list[list[Button]]:
    """One "report this task" button per task, when there are few enough to show."""
    if len(tasks) > REPORT_BUTTON_LIMIT:
        return []
    word = messages.label("button", "report_task")
    return [
        [Button(f"{word} {task_label(t.annex, t.number, messages.language)}", f"rt|{t.id}|{checkpoint_id or ''}")]
        for t in tasks
    ]


def queue_unit_notice(
    session: Session,
    messages: Messages,
    unit: Unit,
    owed: list[Obligation],
    *,
    template: str,
    kind: str,
    dedup: str,
    now: datetime,
    roles: tuple[str, ...] = (PersonRole.LIAISON.value,),
    identities: list[Identity] | None = None,
    extra: dict[str, Any] | None = None,
    about: About | None = None,
) -> list[int]:
    """Queue a message listing what a unit owes to its people in ``roles``; returns the outbox ids.

    ``identities``, when the caller has already loaded the unit's people in
    ``roles``, saves reading them again.
    """
    tasks = [o.task for o in owed]
    first = tasks[0]
    checkpoints = {o.checkpoint_id for o in owed}
    about = about or About(
        checkpoint_id=next(iter(checkpoints)) if len(checkpoints) == 1 else None,
        unit_id=unit.id,
        task_ids=tuple(t.id for t in tasks),
    )
    if identities is None:
        identities = [identity for _, identity in identities_of_unit(session, [unit.id], roles)]
    buttons = report_buttons(tasks, about.checkpoint_id, messages)
    groups = grouped_items(owed, now, messages)
    ids: list[int] = []
    # Each platform's text says what works there (a quoted reply on Telegram, buttons and a typed line on WeCom).
    for platform in sorted({identity.platform for identity in identities}):
        text = messages.render(
            template,
            unit=unit.name,
            groups=groups,
            single=len(tasks) == 1,
            example=task_label(first.annex, first.number, messages.language),
            platform=platform,
            has_buttons=bool(buttons),
            **(extra or {}),
        )
        ids += enqueue_to_identities(
            session,
            [identity for identity in identities if identity.platform == platform],
            kind=kind,
            dedup_key=dedup,
            message=Message(text=text, buttons=buttons),
            now=now,
            about=about,
        )
    return ids
