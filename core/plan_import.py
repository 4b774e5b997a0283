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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.checkpoints import resync_plan, sync_config_checkpoints
from core.config import Settings
from core.plan_corrections import (
    OFFICE,
    Corrections,
    apply_task_units,
    directory_for,
    remembered_tables,
    stored_definitions,
)
from core.plan_parser import Annex, ParsedPlan, ParsedTask, Problem, Role, parse_plan
from core.task_targets import sync_targets
from core.units import UnitDirectory
from storage.models import (
    Assignment,
    AuditLog,
    Jurisdiction,
    Plan,
    Task,
    TaskGroup,
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
    rows = list(session.scalars(select(UnitGroupMember).where(UnitGroupMember.jurisdiction_id == jurisdiction.id)))
    members = {(m.phrase, m.unit_id) for m in rows}
    office_phrases = {m.phrase for m in rows if m.source == OFFICE}
    for phrase, listed in directory.groups.items():
        if phrase in office_phrases:  # the office's own definition replaces the configuration's
            continue
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


class ImportShrinks(Exception):
    """A re-import would deactivate more of the plan than allowed; nothing was imported."""

    def __init__(self, shrink: Shrink) -> None:
        super().__init__(f"would deactivate {shrink.removed} of {shrink.active} tasks")
        self.shrink = shrink


@dataclass(frozen=True)
class Shrink:
    """How much of the plan's active tasks a re-import would deactivate, against the allowed share."""

    active: int
    removed: int
    limit: float

    @property
    def share(self) -> float:
        return self.removed / self.active if self.active else 0.0

    @property
    def too_much(self) -> bool:
        return self.share > self.limit


@dataclass
class PreparedImport:
    """A document parsed with the office's definitions and corrections, next to what the database holds."""

    parsed: ParsedPlan
    directory: UnitDirectory
    definitions: Corrections  # stored office definitions with this import's corrections on top
    corrections: Corrections
    jurisdiction: Jurisdiction | None
    plan: Plan | None
    diff: ImportDiff
    shrink: Shrink


ParseFunction = Callable[[UnitDirectory], ParsedPlan]


def prepare_import(
    session: Session,
    settings: Settings,
    parse: ParseFunction,
    *,
    jurisdiction_name: str,
    now: datetime,
    corrections: Corrections | None = None,
    directory: UnitDirectory | None = None,
) -> PreparedImport:
    """Parse with the right directory, apply the corrections and compare with the database; writes nothing."""
    corrections = corrections or Corrections()
    jurisdiction = session.scalar(select(Jurisdiction).where(Jurisdiction.name == jurisdiction_name))
    definitions = stored_definitions(session, jurisdiction).merged_with(
        Corrections(merges=corrections.merges, groups=corrections.groups)
    )
    directory = directory_for(settings, definitions, remembered_tables(session, jurisdiction), directory)
    parsed = parse(directory)
    apply_task_units(parsed, directory, corrections)
    year = parsed.year or now.year
    plan = None
    if jurisdiction is not None:
        plan = session.scalar(select(Plan).where(Plan.jurisdiction_id == jurisdiction.id, Plan.year == year))
    diff = compute_diff(session, plan, parsed, jurisdiction)
    active = 0
    if plan is not None:
        active = (
            session.scalar(select(func.count()).select_from(Task).where(Task.plan_id == plan.id, Task.active.is_(True)))
            or 0
        )
    shrink = Shrink(active=active, removed=len(diff.removed_tasks), limit=settings.plan.max_shrink)
    return PreparedImport(parsed, directory, definitions, corrections, jurisdiction, plan, diff, shrink)


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
    allow_shrink: bool = False,
    corrections: Corrections | None = None,
    directory: UnitDirectory | None = None,
) -> ImportResult:
    """Parse ``text`` and bring the jurisdiction's plan for that year in line with it (see :func:`import_parsed`).

    ``directory`` holds the notice's own unit tables (``Settings.unit_directory(path)``);
    without it only the configuration's [units] apply.
    """
    return import_parsed(
        session,
        settings,
        lambda directory: parse_plan(text, directory),
        source_name=source_name,
        source_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        jurisdiction_name=jurisdiction_name,
        now=now,
        dry_run=dry_run,
        actor=actor,
        allow_shrink=allow_shrink,
        corrections=corrections,
        directory=directory,
    )


def import_parsed(
    session: Session,
    settings: Settings,
    parse: ParseFunction,
    *,
    source_name: str,
    source_sha256: str,
    jurisdiction_name: str,
    now: datetime,
    dry_run: bool = False,
    actor: str = "cli",
    allow_shrink: bool = False,
    corrections: Corrections | None = None,
    directory: UnitDirectory | None = None,
) -> ImportResult:
    """Parse a document with ``parse`` and bring the jurisdiction's plan for that year in line with it.

    ``parse`` is called with the unit directory to use (the configuration plus
    the office's merges and group definitions), so text and documents of any
    format go through the same path.  Raises :class:`ImportRefused` (and
    changes nothing) when the document has errors, and :class:`ImportShrinks`
    when a re-import would deactivate more than ``[plan] max_shrink`` of the
    plan unless ``allow_shrink``.  With ``dry_run`` nothing is written.  The
    caller owns the transaction.
    """
    prepared = prepare_import(
        session,
        settings,
        parse,
        jurisdiction_name=jurisdiction_name,
        now=now,
        corrections=corrections,
        directory=directory,
    )
    parsed, directory, diff, plan = prepared.parsed, prepared.directory, prepared.diff, prepared.plan
    if parsed.errors:
        raise ImportRefused(parsed.errors)
    first_import = plan is None
    if dry_run:
        return ImportResult(parsed, diff, plan.id if plan else None, first_import, applied=False)
    if prepared.shrink.too_much and not allow_shrink:
        raise ImportShrinks(prepared.shrink)

    year = parsed.year or now.year
    jurisdiction = prepared.jurisdiction or _get_or_create_jurisdiction(session, jurisdiction_name)
    if plan is None:
        plan = Plan(jurisdiction_id=jurisdiction.id, year=year, name=settings.plan.name or parsed.title[:200])
        session.add(plan)
    plan.title = parsed.title
    plan.issued_on = parsed.issued_on
    plan.source_name = source_name
    plan.source_sha256 = source_sha256
    plan.imported_at = now
    session.flush()

    named = [u for t in parsed.tasks for u, _ in t.units()]
    defined = [u for members in prepared.definitions.groups.values() for u in members]
    units = _ensure_units(
        session,
        jurisdiction,
        list(dict.fromkeys(named + [directory.canonical(u) for u in defined])),
        directory,
    )
    _sync_aliases_and_groups(session, jurisdiction, units, parsed, directory)
    _store_definitions(session, jurisdiction, units, prepared.corrections, directory)

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
        task.deadline = parsed_task.deadline
        task.deadline_text = parsed_task.deadline_text[:100]
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
        wanted: dict[int, tuple[Role, str | None, str | None]] = {
            units[unit].id: (role, parsed_task.via_group.get(unit), parsed_task.notes.get(unit))
            for unit, role in parsed_task.units()
        }
        for unit_id, (role, via, note) in wanted.items():
            found = present.get(unit_id)
            note = note[:200] if note else None
            if found is None:
                session.add(
                    Assignment(task_id=task.id, unit_id=unit_id, role=role.value, via_group=via, note=note, active=True)
                )
            else:
                found.role = role.value
                found.via_group = via
                found.note = note
                found.active = True
        for unit_id, assignment in present.items():
            if unit_id not in wanted:
                assignment.active = False
    for key, task in tasks.items():
        if key not in seen:
            for assignment in by_task.get(task.id, {}).values():
                assignment.active = False
    _sync_task_groups(session, plan, tasks, parsed, seen)
    session.flush()
    targets = sync_targets(session, plan.id, now)
    resync_plan(session, plan)
    if first_import:  # a new county starts on the configured calendar at once
        ensure_office_unit(session, settings, plan)
        sync_config_checkpoints(session, settings, plan, now)
    elif any(item.task_deadlines for item in settings.checkpoints):
        sync_config_checkpoints(session, settings, plan, now)  # the tasks' own deadlines may have moved

    session.add(
        AuditLog(
            at=now,
            actor=actor,
            action="plan.import" if first_import else "plan.reimport",
            subject=f"{jurisdiction.name} {year}",
            detail={
                "source": source_name,
                "sha256": source_sha256,
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
                "corrections": prepared.corrections.as_dict(),
            },
        )
    )
    return ImportResult(parsed, diff, plan.id, first_import, applied=True)


def group_phrases(task: ParsedTask) -> list[tuple[Role, str]]:
    """The group phrases a task names, defined or not, each once with its role."""
    found: dict[str, Role] = {}
    for role, phrase in task.groups:
        found.setdefault(phrase, role)
    return [(role, phrase) for phrase, role in found.items()]


def _sync_task_groups(
    session: Session, plan: Plan, tasks: dict[tuple[str, int], Task], parsed: ParsedPlan, seen: set[tuple[str, int]]
) -> None:
    """Keep each task's group phrases: new ones added, dropped ones deactivated (never deleted)."""
    present: dict[tuple[int, str], TaskGroup] = {
        (row.task_id, row.phrase): row
        for row in session.scalars(
            select(TaskGroup).join(Task, Task.id == TaskGroup.task_id).where(Task.plan_id == plan.id)
        )
    }
    wanted: set[tuple[int, str]] = set()
    for parsed_task in parsed.tasks:
        task = tasks[(parsed_task.annex.value, parsed_task.number)]
        for role, phrase in group_phrases(parsed_task):
            wanted.add((task.id, phrase))
            row = present.get((task.id, phrase))
            if row is None:
                session.add(TaskGroup(task_id=task.id, phrase=phrase[:100], role=role.value, active=True))
            else:
                row.role = role.value
                row.active = True
    for key, row in present.items():
        if key not in wanted:
            row.active = False


def _store_definitions(
    session: Session,
    jurisdiction: Jurisdiction,
    units: dict[str, Unit],
    corrections: Corrections,
    directory: UnitDirectory,
) -> None:
    """Keep this import's merges and group definitions so later imports resolve names the same way."""
    for spelling, canonical in corrections.merges.items():
        unit = units.get(directory.canonical(canonical))
        if unit is not None and spelling != unit.name:
            _store_alias(session, unit, spelling)
    for phrase, members in corrections.groups.items():
        replace_group_members(session, jurisdiction, phrase, [units[directory.canonical(m)] for m in members])


def _store_alias(session: Session, unit: Unit, spelling: str) -> None:
    existing = session.scalar(select(UnitAlias).where(UnitAlias.unit_id == unit.id, UnitAlias.alias == spelling))
    if existing is None:
        session.add(UnitAlias(unit_id=unit.id, alias=spelling, source=OFFICE))
    else:
        existing.source = OFFICE
    # A spelling merged into another unit is no longer an alias of any other.
    for other in session.scalars(
        select(UnitAlias)
        .join(Unit, Unit.id == UnitAlias.unit_id)
        .where(Unit.jurisdiction_id == unit.jurisdiction_id, UnitAlias.alias == spelling, UnitAlias.unit_id != unit.id)
    ):
        session.delete(other)


def define_group(
    session: Session,
    settings: Settings,
    plan: Plan,
    phrase: str,
    members: list[str],
    *,
    now: datetime,
    actor: str,
) -> GroupDefined:
    """Define (or redefine) a group phrase's members for the plan's jurisdiction, and assign its tasks.

    Every active task naming the phrase gets an assignment (``via_group``) for
    each member; a unit that left the group loses its group assignment
    (deactivated, with everything it recorded kept).  A unit the task names
    directly keeps its own assignment.  Raises :class:`CorrectionError` for an
    empty definition.
    """
    corrections = Corrections()
    corrections.define_group(phrase, members)
    phrase, names = next(iter(corrections.groups.items()))
    jurisdiction = plan.jurisdiction
    definitions = stored_definitions(session, jurisdiction)
    directory = directory_for(settings, definitions, remembered_tables(session, jurisdiction))
    canonical = list(dict.fromkeys(directory.canonical(name) for name in names))
    units = _ensure_units(session, jurisdiction, canonical, directory)
    replace_group_members(session, jurisdiction, phrase, [units[name] for name in canonical])
    member_ids = {units[name].id for name in canonical}
    result = GroupDefined(phrase=phrase, members=canonical)
    refs = session.execute(
        select(TaskGroup, Task)
        .join(Task, Task.id == TaskGroup.task_id)
        .where(Task.plan_id == plan.id, Task.active.is_(True), TaskGroup.active.is_(True), TaskGroup.phrase == phrase)
    ).all()
    for ref, task in refs:
        result.tasks.append(task.key)
        present = {a.unit_id: a for a in session.scalars(select(Assignment).where(Assignment.task_id == task.id))}
        for unit_id in member_ids:
            found = present.get(unit_id)
            if found is None:
                session.add(Assignment(task_id=task.id, unit_id=unit_id, role=ref.role, via_group=phrase, active=True))
                result.added += 1
            elif not found.active:
                found.role, found.via_group, found.active = ref.role, phrase, True
                result.added += 1
        for unit_id, assignment in present.items():
            if assignment.active and assignment.via_group == phrase and unit_id not in member_ids:
                assignment.active = False
                result.removed += 1
    session.flush()
    resync_plan(session, plan)
    session.add(
        AuditLog(
            at=now,
            actor=actor,
            action="group.define",
            subject=f"{jurisdiction.name} {phrase}",
            detail={"members": canonical, "tasks": result.tasks, "added": result.added, "removed": result.removed},
        )
    )
    return result


@dataclass
class GroupDefined:
    """What defining a group did: its members, the tasks naming it, assignments added and deactivated."""

    phrase: str
    members: list[str]
    tasks: list[str] = field(default_factory=list)
    added: int = 0
    removed: int = 0


def replace_group_members(session: Session, jurisdiction: Jurisdiction, phrase: str, members: list[Unit]) -> None:
    """The office's definition of a group: exactly these members (it overrides the configuration's)."""
    wanted = {unit.id for unit in members}
    for row in session.scalars(
        select(UnitGroupMember).where(
            UnitGroupMember.jurisdiction_id == jurisdiction.id, UnitGroupMember.phrase == phrase
        )
    ):
        if row.unit_id in wanted:
            row.source = OFFICE
            wanted.discard(row.unit_id)
        else:
            session.delete(row)
    for unit_id in wanted:
        session.add(UnitGroupMember(jurisdiction_id=jurisdiction.id, phrase=phrase, unit_id=unit_id, source=OFFICE))
    session.flush()


def annex_counts(parsed: ParsedPlan) -> dict[Annex, int]:
    return {annex: len(parsed.tasks_in(annex)) for annex in Annex}


@dataclass(frozen=True)
class PlanGroup:
    """A group phrase the plan's tasks name: its members (empty until defined) and the tasks naming it."""

    phrase: str
    defined: bool
    members: list[str]
    tasks: list[str]


def plan_groups(session: Session, settings: Settings, plan: Plan) -> list[PlanGroup]:
    """Every group phrase of the plan's active tasks, defined (configuration or office) or still to define."""
    directory = directory_for(
        settings, stored_definitions(session, plan.jurisdiction), remembered_tables(session, plan.jurisdiction)
    )
    members: dict[str, list[str]] = {}
    for phrase, unit in session.execute(
        select(UnitGroupMember.phrase, Unit.name)
        .join(Unit, Unit.id == UnitGroupMember.unit_id)
        .where(UnitGroupMember.jurisdiction_id == plan.jurisdiction_id)
        .order_by(UnitGroupMember.id)
    ):
        members.setdefault(phrase, []).append(unit)
    tasks: dict[str, list[str]] = {}
    for phrase, annex, number in session.execute(
        select(TaskGroup.phrase, Task.annex, Task.number)
        .join(Task, Task.id == TaskGroup.task_id)
        .where(Task.plan_id == plan.id, Task.active.is_(True), TaskGroup.active.is_(True))
        .order_by(Task.annex.desc(), Task.number)
    ):
        tasks.setdefault(phrase, []).append(task_key(annex, number))
    return [
        PlanGroup(phrase, phrase in directory.groups or phrase in members, members.get(phrase, []), keys)
        for phrase, keys in tasks.items()
    ]
