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
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from core.config import CheckpointSettings, Ladder, Settings
from core.ladder import ladder_to_json
from core.tasks import parse_task_ref, task_label
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


def config_specs(session: Session, settings: Settings, plan: Plan, item: CheckpointSettings) -> list[CheckpointSpec]:
    """The checkpoints one configured item stands for in a plan.

    Usually one.  With ``task_deadlines`` each task with a deadline of its own
    is due on that day (one checkpoint per day, keyed ``<id>-YYYYMMDD``, at
    ``due``'s time of day), and the rest at ``due``.
    """
    spec = spec_from_settings(settings, item)
    if not item.task_deadlines:
        return [spec]
    by_day: dict[date, list[str]] = defaultdict(list)
    undated: list[str] = []
    for task in sorted(_tasks_in_scope(session, plan.id, _scope_json(item.tasks)), key=lambda t: (t.annex, t.number)):
        if task.active:
            (by_day[task.deadline] if task.deadline else undated).append(task.key)
    specs = [replace(spec, tasks=undated)] if undated else []
    for day, keys in sorted(by_day.items()):
        due_at = settings.aware(datetime.combine(day, item.due.time()))
        specs.append(replace(spec, key=f"{item.id[:31]}-{day:%Y%m%d}", due_at=due_at, tasks=keys))
    return specs


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
        for spec in config_specs(session, settings, plan, item):
            keys.add(spec.key)
            result.append(upsert_checkpoint(session, plan, spec, source="config", now=now))
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


# A round's key: letters of any script (专项2026 as well as flood-1), digits, - and _; it is part of URLs and
# file names, so nothing else.
_ROUND_KEY = re.compile(r"[^\W_][\w-]{0,39}")


def check_task_scope(session: Session, plan: Plan, scope: str | list[str]) -> None:
    """Refuse a list that names tasks the plan does not have, naming every one of them."""
    if isinstance(scope, str):
        return
    known = {
        f"{annex}-{number}"
        for annex, number in session.execute(
            select(Task.annex, Task.number).where(Task.plan_id == plan.id, Task.active.is_(True))
        )
    }
    unknown = [key for key in scope if key not in known]
    if unknown:
        labels = [task_label(annex, int(number)) for annex, number in (key.split("-", 1) for key in unknown)]
        raise CheckpointError("unknown_task", "、".join(labels))


def new_round_key(session: Session, plan: Plan, due_at: datetime) -> str:
    """A free key for a round the office did not name: ``adhoc-20260710``, then ``adhoc-20260710-2`` …"""
    base = f"adhoc-{due_at:%Y%m%d}"
    used = set(session.scalars(select(Checkpoint.key).where(Checkpoint.plan_id == plan.id)))
    key, n = base, 1
    while key in used:
        n += 1
        key = f"{base}-{n}"
    return key


def add_adhoc_checkpoint(
    session: Session,
    plan: Plan,
    *,
    key: str | None,
    title: str,
    due_at: datetime,
    now: datetime,
    owed_by: str = "lead_and_responsible",
    tasks: str | list[str] = "all",
    satisfied_by: str = "status",
    ladder: Ladder | None = None,
    actor: str,
) -> Checkpoint:
    """An ad-hoc round (专项督查) added by the office at run time; without a ``key`` one is made up."""
    key = (key or "").strip() or new_round_key(session, plan, due_at)
    if not _ROUND_KEY.fullmatch(key):
        raise CheckpointError("bad_key", key)
    if session.scalar(select(Checkpoint.id).where(Checkpoint.plan_id == plan.id, Checkpoint.key == key)):
        raise CheckpointError("key_used", key)
    if due_at <= now:
        raise CheckpointError("due_past")
    if not title.strip():
        raise CheckpointError("no_title")
    check_task_scope(session, plan, tasks)
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


def _adhoc_round(session: Session, plan: Plan, key: str) -> Checkpoint:
    checkpoint = session.scalar(
        select(Checkpoint).where(
            Checkpoint.plan_id == plan.id, Checkpoint.key == key.strip(), Checkpoint.cancelled_at.is_(None)
        )
    )
    if checkpoint is None:
        raise CheckpointError("unknown_round", key)
    if checkpoint.source == "config":
        # The configured calendar is rebuilt from config.toml at every start: a change made here would not last.
        raise CheckpointError("from_config", key)
    return checkpoint


def cancel_checkpoint(
    session: Session, plan: Plan, key: str, *, now: datetime, actor: str, reason: str = ""
) -> Checkpoint:
    """Cancel an ad-hoc round: no more reminders, gone from the lists; its answers are kept."""
    checkpoint = _adhoc_round(session, plan, key)
    checkpoint.cancelled_at = now
    session.add(
        AuditLog(at=now, actor=actor, action="checkpoint.cancel", subject=checkpoint.key, detail={"reason": reason})
    )
    return checkpoint


def edit_checkpoint(
    session: Session,
    plan: Plan,
    key: str,
    *,
    now: datetime,
    actor: str,
    title: str | None = None,
    due_at: datetime | None = None,
    tasks: str | list[str] | None = None,
    ladder: Ladder | None = None,
) -> Checkpoint:
    """Change an ad-hoc round's title, deadline, tasks or ladder; what changed is written to the audit log.

    Obligations follow the new tasks (one no longer in scope is made inactive, its answers kept).
    """
    checkpoint = _adhoc_round(session, plan, key)
    before = {
        "title": checkpoint.title,
        "due_at": checkpoint.due_at.isoformat(),
        "tasks": checkpoint.task_scope,
        "ladder": checkpoint.ladder,
    }
    if title is not None and not title.strip():
        raise CheckpointError("no_title")
    if due_at is not None and due_at <= now and due_at != checkpoint.due_at:
        raise CheckpointError("due_past")
    if tasks is not None:
        check_task_scope(session, plan, tasks)
    savepoint = session.begin_nested()  # a change that leaves nobody owing is refused without a trace
    if title is not None:
        checkpoint.title = title.strip()
    if due_at is not None:
        checkpoint.due_at = due_at
    if tasks is not None:
        checkpoint.task_scope = _scope_json(tasks)
    if ladder is not None:
        checkpoint.ladder = ladder_to_json(ladder)
    session.flush()
    if not sync_obligations(session, checkpoint):
        savepoint.rollback()
        raise CheckpointError("empty")
    savepoint.commit()
    after = {
        "title": checkpoint.title,
        "due_at": checkpoint.due_at.isoformat(),
        "tasks": checkpoint.task_scope,
        "ladder": checkpoint.ladder,
    }
    changed = {name: {"from": before[name], "to": after[name]} for name in after if before[name] != after[name]}
    if changed:
        session.add(AuditLog(at=now, actor=actor, action="checkpoint.edit", subject=checkpoint.key, detail=changed))
    return checkpoint


def live_checkpoints(session: Session, plan_id: int) -> list[Checkpoint]:
    return list(
        session.scalars(
            select(Checkpoint)
            .where(Checkpoint.plan_id == plan_id, Checkpoint.cancelled_at.is_(None))
            .order_by(Checkpoint.due_at, Checkpoint.id)
        )
    )
