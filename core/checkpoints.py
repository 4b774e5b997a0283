"""Checkpoints (reporting obligations) and the per-unit obligations they create.

A checkpoint says who owes (lead units, or lead and responsible units), about
which tasks (all, one annex, or a list), by when, and what satisfies it (a
status report or a document).  For each active assignment in scope there is one
:class:`~storage.models.Obligation` row whose state moves owed → answered →
accepted (or returned → answered …).  The configuration's calendar becomes
checkpoints at start-up; the office adds ad-hoc rounds at run time.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from core.config import CheckpointSettings, Ladder, Settings
from core.ladder import ladder_to_json
from core.tasks import parse_task_ref
from messages import Messages
from storage.models import Assignment as AssignmentRow
from storage.models import AuditLog, Checkpoint, Obligation, Plan, Task


class CheckpointError(ValueError):
    """A checkpoint that cannot be created as asked; ``code`` names the reason for the message templates."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail

    def explain(self, messages: Messages) -> str:
        """The reason in the office's language."""
        return messages.label("round_error", self.code).replace("{detail}", self.detail)


@dataclass(frozen=True)
class CheckpointSpec:
    key: str
    title: str
    due_at: datetime
    owed_by: str = "lead_and_responsible"
    tasks: str | list[str] = "all"
    satisfied_by: str = "status"
    ladder: Ladder | None = None


def spec_from_settings(settings: Settings, item: CheckpointSettings) -> CheckpointSpec:
    return CheckpointSpec(
        key=item.id,
        title=item.title,
        due_at=settings.aware(item.due),
        owed_by=item.owed_by,
        tasks=item.tasks,
        satisfied_by=item.satisfied_by,
        ladder=item.ladder,
    )


def _scope_json(tasks: str | list[str]) -> Any:
    return tasks if isinstance(tasks, str) else list(tasks)


def _tasks_in_scope(session: Session, plan_id: int, scope: Any) -> list[Task]:
    query = select(Task).where(Task.plan_id == plan_id)
    if scope in ("county", "city"):
        query = query.where(Task.annex == scope)
    tasks = list(session.scalars(query))
    if isinstance(scope, list):
        wanted = {tuple(k.split("-", 1)) for k in scope}
        tasks = [t for t in tasks if (t.annex, str(t.number)) in wanted]
    return tasks


def sync_obligations(session: Session, checkpoint: Checkpoint) -> int:
    """Make the checkpoint's obligation rows match the plan's active assignments.

    New assignments get an ``owed`` obligation; an obligation whose assignment
    or task went away is made inactive (never deleted: its answers stay).
    Returns the number of active obligations.
    """
    tasks = {t.id: t for t in _tasks_in_scope(session, checkpoint.plan_id, checkpoint.task_scope)}
    roles = ("lead",) if checkpoint.owed_by == "lead" else ("lead", "responsible")
    wanted: dict[tuple[int, int], str] = {}
    if tasks:
        rows = session.execute(
            select(AssignmentRow.task_id, AssignmentRow.unit_id, AssignmentRow.role).where(
                AssignmentRow.task_id.in_(list(tasks)), AssignmentRow.active.is_(True)
            )
        )
        for task_id, unit_id, role in rows:
            if role in roles and tasks[task_id].active:
                wanted[(task_id, unit_id)] = role
    # Plain rows, not ORM objects: every start re-checks every county's
    # obligations (547,300 at province scale) and nearly always changes nothing.
    existing = {
        (task_id, unit_id): (obligation_id, active, role)
        for obligation_id, task_id, unit_id, active, role in session.execute(
            select(Obligation.id, Obligation.task_id, Obligation.unit_id, Obligation.active, Obligation.role).where(
                Obligation.checkpoint_id == checkpoint.id
            )
        )
    }
    new_rows = []
    revived: dict[str, list[int]] = defaultdict(list)
    for key, role in wanted.items():
        found = existing.get(key)
        if found is None:
            new_rows.append({"checkpoint_id": checkpoint.id, "task_id": key[0], "unit_id": key[1], "role": role})
        elif not found[1] or found[2] != role:
            revived[role].append(found[0])
    if new_rows:
        session.execute(
            insert(Obligation),
            [{**row, "state": "owed", "active": True, "updated_at": checkpoint.created_at} for row in new_rows],
        )
    for role, ids in revived.items():
        session.execute(update(Obligation).where(Obligation.id.in_(ids)).values(active=True, role=role))
    stale = [found[0] for key, found in existing.items() if key not in wanted and found[1]]
    if stale:
        session.execute(update(Obligation).where(Obligation.id.in_(stale)).values(active=False))
    return len(wanted)


def upsert_checkpoint(session: Session, plan: Plan, spec: CheckpointSpec, *, source: str, now: datetime) -> Checkpoint:
    """Create the checkpoint or bring it in line with ``spec``; then sync its obligations."""
    checkpoint = session.scalar(select(Checkpoint).where(Checkpoint.plan_id == plan.id, Checkpoint.key == spec.key))
    ladder = ladder_to_json(spec.ladder) if spec.ladder else None
    if checkpoint is None:
        checkpoint = Checkpoint(plan_id=plan.id, key=spec.key, created_at=now, source=source)
        session.add(checkpoint)
    checkpoint.title = spec.title
    checkpoint.due_at = spec.due_at
    checkpoint.owed_by = spec.owed_by
    checkpoint.task_scope = _scope_json(spec.tasks)
    checkpoint.satisfied_by = spec.satisfied_by
    checkpoint.ladder = ladder
    checkpoint.cancelled_at = None
    session.flush()
    sync_obligations(session, checkpoint)
    return checkpoint


def sync_config_checkpoints(session: Session, settings: Settings, plan: Plan, now: datetime) -> list[Checkpoint]:
    """The configuration's calendar, as checkpoints of the plan; dropped ones are cancelled."""
    keys = set()
    result = []
    for item in settings.checkpoints:
        keys.add(item.id)
        result.append(upsert_checkpoint(session, plan, spec_from_settings(settings, item), source="config", now=now))
    for checkpoint in session.scalars(
        select(Checkpoint).where(Checkpoint.plan_id == plan.id, Checkpoint.source == "config")
    ):
        if checkpoint.key not in keys and checkpoint.cancelled_at is None:
            checkpoint.cancelled_at = now
    return result


def resync_plan(session: Session, plan: Plan) -> None:
    """After a re-import: every live checkpoint's obligations follow the new assignments."""
    for checkpoint in session.scalars(
        select(Checkpoint).where(Checkpoint.plan_id == plan.id, Checkpoint.cancelled_at.is_(None))
    ):
        sync_obligations(session, checkpoint)


def parse_task_scope(text: str) -> str | list[str]:
    """``all``/``county``/``city`` or a list like ``22,市3`` as the office types it."""
    cleaned = text.strip()
    if cleaned in ("all", "county", "city", "全部"):
        return "all" if cleaned == "全部" else cleaned
    keys = []
    for part in re.split(r"[,、\s]+", cleaned):
        if not part:
            continue
        ref = parse_task_ref(part)
        if ref is None:
            raise CheckpointError("bad_task", part)
        keys.append(f"{ref[0].value}-{ref[1]}")
    if not keys:
        raise CheckpointError("no_tasks")
    return keys


def add_adhoc_checkpoint(
    session: Session,
    plan: Plan,
    *,
    key: str,
    title: str,
    due_at: datetime,
    now: datetime,
    owed_by: str = "lead_and_responsible",
    tasks: str | list[str] = "all",
    satisfied_by: str = "status",
    ladder: Ladder | None = None,
    actor: str,
) -> Checkpoint:
    """An ad-hoc round (专项督查) added by the office at run time."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,39}", key):
        raise CheckpointError("bad_key", key)
    if session.scalar(select(Checkpoint.id).where(Checkpoint.plan_id == plan.id, Checkpoint.key == key)):
        raise CheckpointError("key_used", key)
    if due_at <= now:
        raise CheckpointError("due_past")
    if not title.strip():
        raise CheckpointError("no_title")
    spec = CheckpointSpec(key, title.strip(), due_at, owed_by, tasks, satisfied_by, ladder)
    savepoint = session.begin_nested()  # an empty round is refused without a trace
    checkpoint = upsert_checkpoint(session, plan, spec, source="adhoc", now=now)
    if not session.scalar(select(Obligation.id).where(Obligation.checkpoint_id == checkpoint.id).limit(1)):
        savepoint.rollback()
        raise CheckpointError("empty")
    savepoint.commit()
    session.add(
        AuditLog(
            at=now,
            actor=actor,
            action="checkpoint.add",
            subject=key,
            detail={"title": title, "due_at": due_at.isoformat(), "tasks": _scope_json(tasks), "owed_by": owed_by},
        )
    )
    return checkpoint


def live_checkpoints(session: Session, plan_id: int) -> list[Checkpoint]:
    return list(
        session.scalars(
            select(Checkpoint)
            .where(Checkpoint.plan_id == plan_id, Checkpoint.cancelled_at.is_(None))
            .order_by(Checkpoint.due_at, Checkpoint.id)
        )
    )
