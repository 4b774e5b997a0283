"""What the office reads about submissions: one report with its files, reviews and history; a unit's and a task's record; a round's files as one ZIP.

Plain queries returning plain data, always within one county's plan: a report,
file, unit or task of another county is not found.
"""

from __future__ import annotations

import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from core.notices import task_view
from core.plan_import import short_title
from core.tasks import parse_task_ref, task_label
from messages import Messages
from storage.models import (
    Attachment,
    Checkpoint,
    Obligation,
    Person,
    Plan,
    Review,
    StatusReport,
    Task,
    Unit,
)
from storage.queries import find_task, find_unit


@dataclass(frozen=True)
class StoredFile:
    """A kept attachment, found within the viewer's county."""

    path: Path
    name: str


def _files(attachments: list[Attachment]) -> list[dict[str, Any]]:
    return [{"id": a.id, "name": a.file_name, "size": a.size, "at": a.created_at} for a in attachments]


def _person_name(person: Person | None) -> str:
    return (person.display_name or "—") if person is not None else "—"


def _report_row(report: StatusReport, messages: Messages, checkpoints: dict[int, Checkpoint]) -> dict[str, Any]:
    checkpoint = checkpoints.get(report.checkpoint_id) if report.checkpoint_id else None
    return {
        "id": report.id,
        "at": report.reported_at,
        "status": messages.label("status", report.status),
        "note": report.note,
        "on_time": report.on_time,
        "checkpoint": checkpoint.title if checkpoint else None,
        "checkpoint_key": checkpoint.key if checkpoint else None,
        "by": _person_name(report.person),
        "files": _files(report.attachments),
    }


def _checkpoints(session: Session, plan: Plan) -> dict[int, Checkpoint]:
    return {c.id: c for c in session.scalars(select(Checkpoint).where(Checkpoint.plan_id == plan.id))}


def report_page(session: Session, messages: Messages, plan: Plan, report_id: int) -> dict[str, Any] | None:
    """One report: unit, task, round, status, note, files, the office's reviews and the unit's history on the task."""
    report = session.get(StatusReport, report_id)
    if report is None or report.unit.jurisdiction_id != plan.jurisdiction_id or report.task.plan_id != plan.id:
        return None
    checkpoints = _checkpoints(session, plan)
    obligation = session.get(Obligation, report.obligation_id) if report.obligation_id else None
    reviews = []
    if obligation is not None:
        for review in session.scalars(
            select(Review).where(Review.obligation_id == obligation.id).order_by(Review.at, Review.id)
        ):
            reviewer = session.get(Person, review.person_id) if review.person_id else None
            reviews.append(
                {
                    "decision": review.decision,
                    "reason": review.reason,
                    "at": review.at,
                    "by": _person_name(reviewer) if reviewer else "督查室",
                    "report_id": review.report_id,
                }
            )
    history = session.scalars(
        select(StatusReport)
        .options(selectinload(StatusReport.attachments), selectinload(StatusReport.person))
        .where(StatusReport.task_id == report.task_id, StatusReport.unit_id == report.unit_id)
        .order_by(StatusReport.reported_at.desc(), StatusReport.id.desc())
    ).all()
    return {
        "report": _report_row(report, messages, checkpoints),
        "task": task_view(report.task, messages.language),
        "unit": report.unit.name,
        "via": report.via,
        "platform": report.platform,
        "obligation": (
            {
                "state": obligation.state,
                "answered_at": obligation.answered_at,
                "due": obligation.checkpoint.due_at,
                "checkpoint": obligation.checkpoint.title,
                "checkpoint_key": obligation.checkpoint.key,
                "latest": obligation.last_report_id == report.id,
            }
            if obligation is not None
            else None
        ),
        "reviews": reviews,
        "history": [_report_row(r, messages, checkpoints) for r in history],
    }


def unit_page(session: Session, messages: Messages, plan: Plan, name: str) -> dict[str, Any] | None:
    """A unit's tasks in every live round with their state, and everything it reported, files included."""
    unit = find_unit(session, plan.jurisdiction_id, name)
    if unit is None:
        return None
    rows = session.execute(
        select(Obligation, Checkpoint, Task)
        .join(Checkpoint, Checkpoint.id == Obligation.checkpoint_id)
        .join(Task, Task.id == Obligation.task_id)
        .where(
            Obligation.unit_id == unit.id,
            Obligation.active.is_(True),
            Checkpoint.plan_id == plan.id,
            Checkpoint.cancelled_at.is_(None),
        )
        .order_by(Checkpoint.due_at, Task.annex.desc(), Task.number)
    ).all()
    rounds: dict[int, dict[str, Any]] = {}
    for obligation, checkpoint, task in rows:
        entry = rounds.setdefault(
            checkpoint.id, {"key": checkpoint.key, "title": checkpoint.title, "due": checkpoint.due_at, "items": []}
        )
        entry["items"].append(
            {
                **task_view(task, messages.language),
                "role": obligation.role,
                "state": obligation.state,
                "answered_at": obligation.answered_at,
                "report_id": obligation.last_report_id,
            }
        )
    return {
        "unit": unit.name,
        "rounds": list(rounds.values()),
        "reports": _reports_of(session, messages, plan, StatusReport.unit_id == unit.id),
    }


def task_page(session: Session, messages: Messages, plan: Plan, ref_text: str) -> dict[str, Any] | None:
    """A task's units in every live round with their state, and every report on it, files included."""
    ref = parse_task_ref(ref_text)
    task = find_task(session, plan.id, ref[0].value, ref[1]) if ref else None
    if task is None:
        return None
    rows = session.execute(
        select(Obligation, Checkpoint, Unit)
        .join(Checkpoint, Checkpoint.id == Obligation.checkpoint_id)
        .join(Unit, Unit.id == Obligation.unit_id)
        .where(Obligation.task_id == task.id, Obligation.active.is_(True), Checkpoint.cancelled_at.is_(None))
        .order_by(Checkpoint.due_at, Obligation.role, Unit.name)
    ).all()
    rounds: dict[int, dict[str, Any]] = {}
    for obligation, checkpoint, unit in rows:
        entry = rounds.setdefault(
            checkpoint.id, {"key": checkpoint.key, "title": checkpoint.title, "due": checkpoint.due_at, "items": []}
        )
        entry["items"].append(
            {
                "unit": unit.name,
                "role": obligation.role,
                "state": obligation.state,
                "answered_at": obligation.answered_at,
                "report_id": obligation.last_report_id,
            }
        )
    return {
        "task": {**task_view(task, messages.language), "section": task.section, "subsection": task.subsection},
        "rounds": list(rounds.values()),
        "reports": _reports_of(session, messages, plan, StatusReport.task_id == task.id),
    }


def recent_reports(session: Session, messages: Messages, plan: Plan, limit: int = 15) -> list[dict[str, Any]]:
    """The county's latest reports, with their files (the overview's list)."""
    return _reports_of(session, messages, plan, Task.plan_id == plan.id, limit)


def _reports_of(
    session: Session, messages: Messages, plan: Plan, condition: Any, limit: int = 200
) -> list[dict[str, Any]]:
    checkpoints = _checkpoints(session, plan)
    reports = session.scalars(
        select(StatusReport)
        .join(Task, Task.id == StatusReport.task_id)
        .options(
            selectinload(StatusReport.attachments),
            selectinload(StatusReport.person),
            selectinload(StatusReport.task),
            selectinload(StatusReport.unit),
        )
        .where(condition, Task.plan_id == plan.id)
        .order_by(StatusReport.reported_at.desc(), StatusReport.id.desc())
        .limit(limit)
    ).all()
    return [
        {
            **_report_row(r, messages, checkpoints),
            "unit": r.unit.name,
            "task_label": task_label(r.task.annex, r.task.number, messages.language),
            "task_title": short_title(r.task.text),
        }
        for r in reports
    ]


def stored_file(session: Session, plan: Plan, attachment_id: int) -> StoredFile | None:
    """An attachment of a report in ``plan``'s county, if its file is still on disk."""
    attachment = session.get(Attachment, attachment_id)
    if attachment is None or attachment.report is None:
        return None
    report = attachment.report
    if report.unit.jurisdiction_id != plan.jurisdiction_id or report.task.plan_id != plan.id:
        return None
    path = Path(attachment.stored_path)
    return StoredFile(path, attachment.file_name) if path.is_file() else None


def round_files(session: Session, plan: Plan, checkpoint_key: str) -> list[tuple[str, Path]] | None:
    """Every kept file sent for a round, as (name in the archive, path): ``单位/县12-细化方案.pdf``."""
    checkpoint = session.scalar(
        select(Checkpoint).where(
            Checkpoint.plan_id == plan.id, Checkpoint.key == checkpoint_key, Checkpoint.cancelled_at.is_(None)
        )
    )
    if checkpoint is None:
        return None
    rows = session.execute(
        select(Attachment, StatusReport, Unit, Task)
        .join(StatusReport, StatusReport.id == Attachment.report_id)
        .join(Unit, Unit.id == StatusReport.unit_id)
        .join(Task, Task.id == StatusReport.task_id)
        .where(StatusReport.checkpoint_id == checkpoint.id)
        .order_by(Unit.name, Task.annex.desc(), Task.number, Attachment.id)
    ).all()
    taken: dict[str, int] = defaultdict(int)
    entries = []
    for attachment, report, unit, task in rows:
        path = Path(attachment.stored_path)
        if not path.is_file():
            continue
        name = f"{_clean(unit.name)}/{task_label(task.annex, task.number)}-{_clean(attachment.file_name)}"
        taken[name] += 1
        if taken[name] > 1:  # the same file name sent twice: both kept, the later one numbered by its report
            stem, dot, suffix = name.rpartition(".")
            name = f"{stem}-{report.id}{dot}{suffix}" if dot else f"{name}-{report.id}"
        entries.append((name, path))
    return entries


def _clean(name: str) -> str:
    return name.replace("/", "_").replace("\\", "_").strip() or "file"


def round_archive_name(plan: Plan, checkpoint_key: str) -> str:
    return f"附件-{plan.jurisdiction.name}-{checkpoint_key}.zip"


def write_round_archive(entries: list[tuple[str, Path]], target: Path) -> Path:
    """The round's files in one ZIP (UTF-8 names), written to ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, path in entries:
            archive.write(path, name)
    return target
