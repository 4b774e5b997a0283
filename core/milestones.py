"""Milestones (节点督办): the dated steps of a task's refined plan, each supervised as its own deadline.

A lead unit's 细化方案 states 完成时限 for its measures; the unit (in chat,
after uploading the plan) or the office (CLI, dashboard) enters the main
ones as lines such as ``6月底前 完成可研批复``.  Each milestone becomes a
checkpoint of its own (``source = "milestone"``, owed by the task's lead
units, due at the day's deadline hour), so the ordinary machinery reminds
the lead unit before it, asks after it whether it was met, and escalates a
missed one on the same ladder; ``duban simulate`` shows them like any round.
Milestones also set a task's expected pace (:mod:`core.progress`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.checkpoints import CheckpointSpec, upsert_checkpoint
from core.config import Settings
from core.plan_parser import find_deadline
from core.tasks import task_label
from storage.models import AuditLog, Checkpoint, Milestone, Plan, Task, Unit

MAX_MILESTONES = 12
DEADLINE_TIME = time(18)  # a milestone is due at the close of its day, like the configured rounds
_LINE = re.compile(r"[\n;；]+")
_NUMBERING = re.compile(r"^\s*(?:\d{1,2}\s*[.、)）]|[(（]\d{1,2}[)）]|[一二三四五六七八九十]+、)\s*")


class MilestoneRefused(ValueError):
    """Milestones that cannot be saved as written; the message is Chinese and names the line."""


@dataclass(frozen=True)
class MilestoneDraft:
    """One milestone as read from a line: its date, what is due, and the words as written."""

    due_on: date
    what: str
    written: str


def parse_milestones(text: str, year: int) -> list[MilestoneDraft]:
    """Milestones one per line (or separated by ;): ``6月底前 完成可研批复``, ``2024年9月30日 开工``.

    Raises :class:`MilestoneRefused` naming the first line without a date or without a step.
    """
    drafts: list[MilestoneDraft] = []
    lines = [line.strip() for line in _LINE.split(text) if line.strip()]
    if not lines:
        raise MilestoneRefused("没有读到节点,请每行写一个,例如:6月底前 完成可研批复")
    if len(lines) > MAX_MILESTONES:
        raise MilestoneRefused(f"节点最多 {MAX_MILESTONES} 个,请只写主要节点")
    for number, line in enumerate(lines, start=1):
        cleaned = _NUMBERING.sub("", line)
        deadline = find_deadline(cleaned, year)
        if deadline is None or deadline.on is None:
            raise MilestoneRefused(f"第{number}条没有日期:{line}(例如 6月底前、9月30日前、三季度末)")
        what = cleaned.replace(deadline.words, " ", 1).strip(" ,，:：、。")
        if not what:
            raise MilestoneRefused(f"第{number}条没有写要完成什么:{line}")
        drafts.append(MilestoneDraft(due_on=deadline.on, what=what, written=line))
    return sorted(drafts, key=lambda d: d.due_on)


def _spec(settings: Settings, task: Task, milestone: Milestone) -> CheckpointSpec:
    due = datetime.combine(milestone.due_on, DEADLINE_TIME, tzinfo=settings.tz)
    return CheckpointSpec(
        key=f"ms-{milestone.id}",
        title=f"节点督办:{task_label(task.annex, task.number)} {milestone.what}"[:200],
        due_at=due,
        owed_by="lead",
        tasks=[task.key],
        satisfied_by="status",
    )


def add_milestones(
    session: Session,
    settings: Settings,
    plan: Plan,
    task: Task,
    unit: Unit,
    drafts: list[MilestoneDraft],
    *,
    now: datetime,
    source: str,
    actor: str,
) -> list[Milestone]:
    """Save the milestones and give each its own checkpoint; those already past are kept but not supervised."""
    saved = []
    for draft in drafts:
        milestone = Milestone(
            task_id=task.id, unit_id=unit.id, due_on=draft.due_on, what=draft.what, source=source, created_at=now
        )
        session.add(milestone)
        session.flush()
        spec = _spec(settings, task, milestone)
        if spec.due_at > now:
            milestone.checkpoint_id = upsert_checkpoint(session, plan, spec, source="milestone", now=now).id
        saved.append(milestone)
    session.add(
        AuditLog(
            at=now,
            actor=actor,
            action="milestone.add",
            subject=task.key,
            detail={"unit": unit.name, "milestones": [f"{d.due_on.isoformat()} {d.what}" for d in drafts]},
        )
    )
    return saved


def change_milestone(
    session: Session,
    settings: Settings,
    plan: Plan,
    milestone: Milestone,
    *,
    now: datetime,
    actor: str,
    due_on: date | None = None,
    what: str | None = None,
    remove: bool = False,
) -> Milestone:
    """The office edits or removes a milestone; its checkpoint follows (moved, or cancelled)."""
    task = session.get(Task, milestone.task_id)
    assert task is not None
    before = {"due_on": milestone.due_on.isoformat(), "what": milestone.what, "active": milestone.active}
    if what is not None and not what.strip():
        raise MilestoneRefused("节点内容不能为空")
    milestone.due_on = due_on or milestone.due_on
    milestone.what = (what or milestone.what).strip()
    milestone.active = not remove
    checkpoint = session.get(Checkpoint, milestone.checkpoint_id) if milestone.checkpoint_id else None
    spec = _spec(settings, task, milestone)
    if remove or spec.due_at <= now:
        if checkpoint is not None and checkpoint.cancelled_at is None:
            checkpoint.cancelled_at = now
    else:
        milestone.checkpoint_id = upsert_checkpoint(session, plan, spec, source="milestone", now=now).id
    session.add(
        AuditLog(
            at=now,
            actor=actor,
            action="milestone.remove" if remove else "milestone.change",
            subject=task.key,
            detail={
                "milestone": milestone.id,
                "before": before,
                "due_on": milestone.due_on.isoformat(),
                "what": milestone.what,
            },
        )
    )
    return milestone


def task_milestones(session: Session, task_ids: list[int]) -> list[Milestone]:
    """Active milestones of the tasks, by date."""
    if not task_ids:
        return []
    return list(
        session.scalars(
            select(Milestone)
            .where(Milestone.task_id.in_(task_ids), Milestone.active.is_(True))
            .order_by(Milestone.due_on, Milestone.id)
        )
    )
