"""A plan's targets in the database: read at import, corrected by the office, kept across re-imports.

:func:`sync_targets` reads every active task's targets from its text
(:func:`core.targets.extract_targets`) and brings the ``target`` rows in line.
The office's word wins: a target it corrected or removed keeps the phrase it
was read from, and a re-import that reads the same phrase again leaves it be.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from core.targets import Target as ParsedTarget
from core.targets import TargetKind, extract_targets
from storage.models import AuditLog, Task
from storage.models import Target as TargetRow


class TargetRefused(ValueError):
    """An office correction that cannot be applied; the message is Chinese."""


# Built once: every recorded report runs it.
_TARGETS_OF_TASKS = (
    select(TargetRow)
    .where(TargetRow.task_id.in_(bindparam("task_ids", expanding=True)), TargetRow.active.is_(True))
    .order_by(TargetRow.task_id, TargetRow.position, TargetRow.id)
)

# One task's values (every recorded report asks): the columns only, read into plain values, and no
# IN list, so the SQL is the same string every time.
_TARGET_VALUES_OF_TASK = (
    select(TargetRow.id, TargetRow.metric, TargetRow.value, TargetRow.unit, TargetRow.kind, TargetRow.phrase)
    .where(TargetRow.task_id == bindparam("task_id"), TargetRow.active.is_(True))
    .order_by(TargetRow.position, TargetRow.id)
)


def targets_by_task(session: Session, task_ids: list[int]) -> dict[int, list[TargetRow]]:
    """Active targets of the given tasks, in the order written."""
    found: dict[int, list[TargetRow]] = {task_id: [] for task_id in task_ids}
    if not task_ids:
        return found
    rows = session.scalars(_TARGETS_OF_TASKS, {"task_ids": list(task_ids)})
    for row in rows:
        found[row.task_id].append(row)
    return found


def task_target_values(session: Session, task_id: int) -> dict[int, ParsedTarget]:
    """A task's active targets as plain values, by id, in the order written."""
    return {
        target_id: ParsedTarget(metric=metric, value=value, unit=unit, kind=TargetKind(kind), phrase=phrase)
        for target_id, metric, value, unit, kind, phrase in session.execute(
            _TARGET_VALUES_OF_TASK, {"task_id": task_id}
        )
    }


@dataclass
class TargetSync:
    """What one sync changed, for the import's audit record."""

    added: int = 0
    retired: int = 0
    kept: int = 0


def sync_targets(session: Session, plan_id: int, now: datetime) -> TargetSync:
    """Read the targets of every task of the plan and store what changed."""
    result = TargetSync()
    tasks = list(session.scalars(select(Task).where(Task.plan_id == plan_id)))
    existing: dict[int, list[TargetRow]] = {task.id: [] for task in tasks}
    if tasks:
        for row in session.scalars(select(TargetRow).where(TargetRow.task_id.in_(list(existing)))):
            existing[row.task_id].append(row)
    for task in tasks:
        rows = existing[task.id]
        office_phrases = {row.phrase for row in rows if row.source == "office" and row.phrase}
        document_rows = {
            (row.phrase, row.metric, row.value, row.unit, row.kind): row for row in rows if row.source == "document"
        }
        wanted = extract_targets(task.text) if task.active else []
        seen: set[int] = set()
        for position, target in enumerate(wanted):
            if target.phrase in office_phrases:
                continue
            key = (target.phrase, target.metric, target.value, target.unit, target.kind.value)
            known = document_rows.get(key)
            if known is not None:
                seen.add(known.id)
                if not known.active or known.position != position:
                    known.active, known.position, known.updated_at = True, position, now
                result.kept += 1
                continue
            session.add(
                TargetRow(
                    task_id=task.id,
                    position=position,
                    metric=target.metric,
                    value=target.value,
                    unit=target.unit,
                    kind=target.kind.value,
                    phrase=target.phrase,
                    source="document",
                    active=True,
                    updated_at=now,
                )
            )
            result.added += 1
        for row in document_rows.values():
            if row.id not in seen and row.active:
                row.active, row.updated_at = False, now
                result.retired += 1
    session.flush()
    return result


def set_target(
    session: Session,
    task: Task,
    *,
    now: datetime,
    actor: str,
    target_id: int | None = None,
    metric: str | None = None,
    value: float | None = None,
    unit: str | None = None,
    kind: str | None = None,
    remove: bool = False,
) -> TargetRow:
    """Correct, add (no ``target_id``) or remove one of a task's targets, as the office."""
    if kind is not None and kind not in {k.value for k in TargetKind}:
        raise TargetRefused(f"类型“{kind}”无效,可选:{'、'.join(k.value for k in TargetKind)}")
    if target_id is None:
        if remove:
            raise TargetRefused("删除目标需要指定目标编号")
        if not metric or value is None or not unit:
            raise TargetRefused("新增目标需要指标名称、数值和单位")
        position = 1 + max(
            (row.position for row in session.scalars(select(TargetRow).where(TargetRow.task_id == task.id))), default=-1
        )
        row = TargetRow(
            task_id=task.id,
            position=position,
            metric=metric,
            value=value,
            unit=unit,
            kind=kind or TargetKind.AMOUNT.value,
            phrase="",
            source="office",
            active=True,
            updated_at=now,
        )
        session.add(row)
        action = "target.add"
    else:
        found = session.get(TargetRow, target_id)
        if found is None or found.task_id != task.id:
            raise TargetRefused(f"任务没有编号为 {target_id} 的目标")
        row = found
        before = {"metric": row.metric, "value": row.value, "unit": row.unit, "kind": row.kind, "active": row.active}
        row.metric = metric or row.metric
        row.value = row.value if value is None else value
        row.unit = unit or row.unit
        row.kind = kind or row.kind
        row.active = not remove
        row.source = "office"
        row.updated_at = now
        action = "target.remove" if remove else "target.correct"
    session.flush()
    session.add(
        AuditLog(
            at=now,
            actor=actor,
            action=action,
            subject=task.key,
            detail={"target": row.id, "metric": row.metric, "value": row.value, "unit": row.unit, "kind": row.kind}
            | ({"before": before} if target_id is not None else {}),
        )
    )
    return row
