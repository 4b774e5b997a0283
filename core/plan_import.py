"""Import a parsed notice into the database, and re-import it safely.

Tasks are matched by (annex, number).  A re-import never deletes: a task that
left the document is marked inactive, an assignment that left is marked
inactive, and every status report, binding and review stays where it is.
What would change is computed first as an :class:`ImportDiff`, so the office
sees it before it is applied; the whole import is one transaction.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.checkpoints import resync_plan, sync_config_checkpoints
from core.config import Settings
from core.plan_parser import Annex, ParsedPlan, ParsedTask, Problem, Role, parse_plan
from core.task_targets import sync_targets
from core.units import UnitDirectory
from storage.models import (
    Assignment,
    AuditLog,
    Jurisdiction,
    Plan,
    Task,
    Unit,
    UnitAlias,
    UnitGroupMember,
)


class ImportRefused(Exception):
    """The document has errors; nothing was imported."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"{len(problems)} error(s)")
        self.problems = problems


@dataclass(frozen=True)
class AssignmentChange:
    task: str
    unit: str
    role: str
    old_role: str | None = None


@dataclass
class ImportDiff:
    """What an import would change, task by task and assignment by assignment."""

    new_tasks: list[str] = field(default_factory=list)
    changed_text: list[tuple[str, str, str]] = field(default_factory=list)
    removed_tasks: list[str] = field(default_factory=list)
    restored_tasks: list[str] = field(default_factory=list)
    added: list[AssignmentChange] = field(default_factory=list)
    removed: list[AssignmentChange] = field(default_factory=list)
    role_changed: list[AssignmentChange] = field(default_factory=list)
    new_units: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any(
            (
                self.new_tasks,
                self.changed_text,
                self.removed_tasks,
                self.restored_tasks,
                self.added,
                self.removed,
                self.role_changed,
                self.new_units,
            )
        )


@dataclass
class ImportResult:
    parsed: ParsedPlan
    diff: ImportDiff
    plan_id: int | None
    first_import: bool
    applied: bool


def short_title(text: str, limit: int = 24) -> str:
    """The first clause of a task's text, for lists and reports."""
    first = re.split(r"[。;,,;]", text, maxsplit=1)[0].strip()
    return first if len(first) <= limit else first[: limit - 1] + "…"


def task_key(annex: str, number: int) -> str:
    return f"{annex}-{number}"


def _units_of(parsed: ParsedTask) -> dict[str, Role]:
    return {unit: role for unit, role in parsed.units()}


def compute_diff(
    session: Session, plan: Plan | None, parsed: ParsedPlan, jurisdiction: Jurisdiction | None
) -> ImportDiff:
    """Compare a parsed document with what the database holds for its plan."""
    diff = ImportDiff()
    known_units: set[str] = set()
    if jurisdiction is not None:
        known_units = set(session.scalars(select(Unit.name).where(Unit.jurisdiction_id == jurisdiction.id)))
    for name in dict.fromkeys(u for t in parsed.tasks for u, _ in t.units()):
        if name not in known_units:
            diff.new_units.append(name)
    existing: dict[tuple[str, int], Task] = {}
    current: dict[tuple[str, int], dict[str, str]] = {}
    if plan is not None:
        for row in session.scalars(select(Task).where(Task.plan_id == plan.id)):
            existing[(row.annex, row.number)] = row
            current[(row.annex, row.number)] = {}
        rows = session.execute(
            select(Task.annex, Task.number, Unit.name, Assignment.role)
            .join(Assignment, Assignment.task_id == Task.id)
            .join(Unit, Unit.id == Assignment.unit_id)
            .where(Task.plan_id == plan.id, Assignment.active.is_(True))
        )
        for annex, number, unit, role in rows:
            current[(annex, number)][unit] = role
    seen: set[tuple[str, int]] = set()
    for parsed_task in parsed.tasks:
        key = (parsed_task.annex.value, parsed_task.number)
        label = task_key(*key)
        seen.add(key)
        task = existing.get(key)
        wanted = {u: r.value for u, r in _units_of(parsed_task).items()}
        if task is None:
            diff.new_tasks.append(label)
        else:
            if not task.active:
                diff.restored_tasks.append(label)
            if task.text != parsed_task.text:
                diff.changed_text.append((label, task.text, parsed_task.text))
        had = current.get(key, {})
        for unit, role in wanted.items():
            if unit not in had:
                if task is not None:
                    diff.added.append(AssignmentChange(label, unit, role))
            elif had[unit] != role:
                diff.role_changed.append(AssignmentChange(label, unit, role, had[unit]))
        for unit, role in had.items():
            if unit not in wanted:
                diff.removed.append(AssignmentChange(label, unit, role))
    for key, task in existing.items():
        if key not in seen and task.active:
            diff.removed_tasks.append(task_key(*key))
    return diff


def _get_or_create_jurisdiction(session: Session, name: str) -> Jurisdiction:
    found = session.scalar(select(Jurisdiction).where(Jurisdiction.name == name))
    if found is None:
        found = Jurisdiction(name=name)
        session.add(found)
        session.flush()
    return found


def _ensure_units(
    session: Session, jurisdiction: Jurisdiction, names: list[str], directory: UnitDirectory
) -> dict[str, Unit]:
    units = {u.name: u for u in session.scalars(select(Unit).where(Unit.jurisdiction_id == jurisdiction.id))}
    for name in names:
        if name not in units:
            unit = Unit(jurisdiction_id=jurisdiction.id, name=name, kind=directory.kind_of(name).value)
            session.add(unit)
            units[name] = unit
        else:
            units[name].kind = directory.kind_of(name).value
    session.flush()
    return units


def _sync_aliases_and_groups(
    session: Session,
    jurisdiction: Jurisdiction,
    units: dict[str, Unit],
    parsed: ParsedPlan,
    directory: UnitDirectory,
) -> None:
    wanted: dict[tuple[int, str], str] = {}
    for alias, canonical in directory.aliases.items():
        target = directory.canonical(canonical)
        if target in units and alias != target:
            wanted[(units[target].id, alias)] = "config"
    for parsed_task in parsed.tasks:
        for unit, alias in parsed_task.aliases.items():
            if unit in units and alias != unit:
                wanted.setdefault((units[unit].id, alias), "document")
    unit_ids = [u.id for u in units.values()]
    present = {(a.unit_id, a.alias) for a in session.scalars(select(UnitAlias).where(UnitAlias.unit_id.in_(unit_ids)))}
    for (unit_id, alias), source in wanted.items():
        if (unit_id, alias) not in present:
            session.add(UnitAlias(unit_id=unit_id, alias=alias, source=source))
    members = {
        (m.phrase, m.unit_id)
        for m in session.scalars(select(UnitGroupMember).where(UnitGroupMember.jurisdiction_id == jurisdiction.id))
    }
    for phrase, listed in directory.groups.items():
        for name in listed:
            member = units.get(directory.canonical(name))
            if member is not None and (phrase, member.id) not in members:
                session.add(UnitGroupMember(jurisdiction_id=jurisdiction.id, phrase=phrase, unit_id=member.id))
                members.add((phrase, member.id))


def ensure_office_unit(session: Session, settings: Settings, plan: Plan) -> Unit:
    """The supervision office is a unit too: office-role people bind to it."""
    name = settings.office.unit
    unit = session.scalar(select(Unit).where(Unit.jurisdiction_id == plan.jurisdiction_id, Unit.name == name))
    if unit is None:
        unit = Unit(jurisdiction_id=plan.jurisdiction_id, name=name, kind="other")
        session.add(unit)
        session.flush()
    return unit


def import_plan(
    session: Session,
    settings: Settings,
    text: str,
    *,
    source_name: str,
    jurisdiction_name: str,
    now: datetime,
    dry_run: bool = False,
    actor: str = "cli",
) -> ImportResult:
    """Parse ``text`` and bring the jurisdiction's plan for that year in line with it.

    Raises :class:`ImportRefused` (and changes nothing) when the document has
    errors.  With ``dry_run`` the diff is computed and nothing is written.
    The caller owns the transaction.
    """
    directory = settings.units.directory()
    parsed = parse_plan(text, directory)
    if parsed.errors:
        raise ImportRefused(parsed.errors)
    year = parsed.year or now.year
    jurisdiction = session.scalar(select(Jurisdiction).where(Jurisdiction.name == jurisdiction_name))
    plan = None
    if jurisdiction is not None:
        plan = session.scalar(select(Plan).where(Plan.jurisdiction_id == jurisdiction.id, Plan.year == year))
    diff = compute_diff(session, plan, parsed, jurisdiction)
    first_import = plan is None
    if dry_run:
        return ImportResult(parsed, diff, plan.id if plan else None, first_import, applied=False)

    jurisdiction = jurisdiction or _get_or_create_jurisdiction(session, jurisdiction_name)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if plan is None:
        plan = Plan(jurisdiction_id=jurisdiction.id, year=year, name=settings.plan.name or parsed.title[:200])
        session.add(plan)
    plan.title = parsed.title
    plan.issued_on = parsed.issued_on
    plan.source_name = source_name
    plan.source_sha256 = digest
    plan.imported_at = now
    session.flush()

    all_units = list(dict.fromkeys(u for t in parsed.tasks for u, _ in t.units()))
    units = _ensure_units(session, jurisdiction, all_units, directory)
    _sync_aliases_and_groups(session, jurisdiction, units, parsed, directory)

    tasks = {(t.annex, t.number): t for t in session.scalars(select(Task).where(Task.plan_id == plan.id))}
    seen: set[tuple[str, int]] = set()
    for parsed_task in parsed.tasks:
        key = (parsed_task.annex.value, parsed_task.number)
        seen.add(key)
        task = tasks.get(key)
        if task is None:
            task = Task(plan_id=plan.id, annex=key[0], number=key[1], text=parsed_task.text)
            session.add(task)
            tasks[key] = task
        if task.text != parsed_task.text or not task.active:
            task.updated_at = now
        task.text = parsed_task.text
        task.section = parsed_task.section[:200]
        task.subsection = parsed_task.subsection[:200]
        task.source_line = parsed_task.line
        task.active = True
    for key, task in tasks.items():
        if key not in seen and task.active:
            task.active = False
            task.updated_at = now
    session.flush()

    by_task: dict[int, dict[int, Assignment]] = {}
    for row in session.scalars(
        select(Assignment).join(Task, Task.id == Assignment.task_id).where(Task.plan_id == plan.id)
    ):
        by_task.setdefault(row.task_id, {})[row.unit_id] = row
    for parsed_task in parsed.tasks:
        task = tasks[(parsed_task.annex.value, parsed_task.number)]
        present = by_task.get(task.id, {})
        wanted: dict[int, tuple[Role, str | None]] = {
            units[unit].id: (role, parsed_task.via_group.get(unit)) for unit, role in parsed_task.units()
        }
        for unit_id, (role, via) in wanted.items():
            found = present.get(unit_id)
            if found is None:
                session.add(Assignment(task_id=task.id, unit_id=unit_id, role=role.value, via_group=via, active=True))
            else:
                found.role = role.value
                found.via_group = via
                found.active = True
        for unit_id, assignment in present.items():
            if unit_id not in wanted:
                assignment.active = False
    for key, task in tasks.items():
        if key not in seen:
            for assignment in by_task.get(task.id, {}).values():
                assignment.active = False
    session.flush()
    targets = sync_targets(session, plan.id, now)
    resync_plan(session, plan)
    if first_import:  # a new county starts on the configured calendar at once
        ensure_office_unit(session, settings, plan)
        sync_config_checkpoints(session, settings, plan, now)

    session.add(
        AuditLog(
            at=now,
            actor=actor,
            action="plan.import" if first_import else "plan.reimport",
            subject=f"{jurisdiction.name} {year}",
            detail={
                "source": source_name,
                "sha256": digest,
                "tasks": len(parsed.tasks),
                "new_tasks": len(diff.new_tasks),
                "changed_text": len(diff.changed_text),
                "removed_tasks": len(diff.removed_tasks),
                "assignments_added": len(diff.added),
                "assignments_removed": len(diff.removed),
                "role_changed": len(diff.role_changed),
                "warnings": len(parsed.warnings),
                "targets_added": targets.added,
                "targets_retired": targets.retired,
            },
        )
    )
    return ImportResult(parsed, diff, plan.id, first_import, applied=True)


def annex_counts(parsed: ParsedPlan) -> dict[Annex, int]:
    return {annex: len(parsed.tasks_in(annex)) for annex in Annex}
