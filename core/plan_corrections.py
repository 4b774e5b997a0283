"""What the office corrects in a parsed plan before it is imported, and the directory the parser then uses.

A correction set holds three kinds of fix, the ones an office makes while
checking the preview:

- a **merge**: a spelling is an alias of a canonical unit (县交通运输局 = 县交通局);
- a **group definition**: the units a group phrase stands for (各镇人民政府 = …);
- a task's **units replaced**: its lead and/or responsible units as they should be.

Merges and group definitions change how names resolve, so they go into the
:class:`UnitDirectory` the document is parsed with (together with what the
office defined earlier, stored in the database); task replacements are applied
to the parsed plan afterwards.  Nothing is written to the plan here.  On
import, merges are stored as unit aliases and group definitions as group
members (source ``office``), so the next re-import resolves names the same way.

The same set comes from the command line (``--merge``, ``--group``, a TOML
file) and from the dashboard's import page (kept as JSON in its staging area).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config import Settings
from core.plan_parser import Annex, ParsedPlan, Problem, Role, Severity, split_unit_list
from core.units import UnitDirectory, clean_name
from storage.models import Assignment, Jurisdiction, Plan, Task, Unit, UnitAlias, UnitGroupMember

OFFICE = "office"  # source of aliases and group members the office defined
_TASK_KEY = re.compile(r"^(county|city)-(\d{1,4})$")


class CorrectionError(ValueError):
    """A correction that cannot be understood; the message is Chinese and names the bad part."""


@dataclass
class TaskUnits:
    """A task's units as the office says they are; ``None`` leaves that role as parsed."""

    lead: list[str] | None = None
    responsible: list[str] | None = None


@dataclass
class Corrections:
    """Unit merges, group definitions and task unit replacements, applied before anything is written."""

    merges: dict[str, str] = field(default_factory=dict)  # spelling -> canonical unit
    groups: dict[str, list[str]] = field(default_factory=dict)  # phrase -> member units
    tasks: dict[str, TaskUnits] = field(default_factory=dict)  # "county-5" -> its units

    @property
    def empty(self) -> bool:
        return not (self.merges or self.groups or self.tasks)

    def merge(self, spelling: str, canonical: str) -> None:
        spelling, canonical = clean_name(spelling), clean_name(canonical)
        if not spelling or not canonical:
            raise CorrectionError("合并单位需要写成“别名=标准名称”")
        if spelling == canonical:
            raise CorrectionError(f"不能把“{spelling}”合并到它自己")
        if self.merges.get(canonical) == spelling:
            raise CorrectionError(f"“{spelling}”与“{canonical}”已按相反方向合并")
        self.merges[spelling] = canonical

    def define_group(self, phrase: str, members: list[str]) -> None:
        phrase = clean_name(phrase)
        names = list(dict.fromkeys(clean_name(m) for m in members if clean_name(m)))
        if not phrase or not names:
            raise CorrectionError("定义群体需要写成“群体名称=单位1,单位2”")
        if phrase in names:
            raise CorrectionError(f"群体“{phrase}”不能包含它自己")
        self.groups[phrase] = names

    def set_task_units(self, key: str, *, lead: list[str] | None = None, responsible: list[str] | None = None) -> None:
        if not _TASK_KEY.match(key):
            raise CorrectionError(f"任务编号应写成 county-5 或 city-7:{key}")
        if lead is not None and not [u for u in lead if clean_name(u)]:
            raise CorrectionError(f"任务 {key} 至少需要一个牵头单位")
        current = self.tasks.setdefault(key, TaskUnits())
        if lead is not None:
            current.lead = [clean_name(u) for u in lead if clean_name(u)]
        if responsible is not None:
            current.responsible = [clean_name(u) for u in responsible if clean_name(u)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "merge": dict(self.merges),
            "groups": {k: list(v) for k, v in self.groups.items()},
            "tasks": {
                key: {
                    role: units
                    for role, units in (("lead", t.lead), ("responsible", t.responsible))
                    if units is not None
                }
                for key, t in self.tasks.items()
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Corrections:
        """Read the TOML/JSON form: ``[merge]``, ``[groups]``, ``[tasks."county-5"] lead/responsible``."""
        unknown = set(data) - {"merge", "groups", "tasks"}
        if unknown:
            raise CorrectionError(f"更正文件中有无法识别的部分:{'、'.join(sorted(unknown))}(可用 merge、groups、tasks)")
        corrections = cls()
        for spelling, canonical in _table(data, "merge").items():
            if not isinstance(canonical, str):
                raise CorrectionError(f"[merge] “{spelling}”的值应是单位名称")
            corrections.merge(spelling, canonical)
        for phrase, members in _table(data, "groups").items():
            corrections.define_group(phrase, _names(members, f"[groups] “{phrase}”"))
        for key, units in _table(data, "tasks").items():
            if not isinstance(units, dict) or not set(units) <= {"lead", "responsible"}:
                raise CorrectionError(f'[tasks."{key}"] 只能有 lead 和 responsible')
            corrections.set_task_units(
                key,
                lead=_names(units["lead"], f"{key} lead") if "lead" in units else None,
                responsible=_names(units["responsible"], f"{key} responsible") if "responsible" in units else None,
            )
        return corrections

    def merged_with(self, other: Corrections) -> Corrections:
        """These corrections with ``other``'s added on top (a later fix wins)."""
        combined = Corrections.from_dict(self.as_dict())
        combined.merges.update(other.merges)
        combined.groups.update(other.groups)
        for key, units in other.tasks.items():
            combined.set_task_units(key, lead=units.lead, responsible=units.responsible)
        return combined


def _table(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise CorrectionError(f"[{name}] 应是一个表")
    return value


def _names(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        return split_unit_list(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [clean_name(v) for v in value if clean_name(v)]
    raise CorrectionError(f"{where} 应是单位名称列表")


def load_corrections(path: Path) -> Corrections:
    """A corrections file (TOML), with a Chinese message naming the file when it cannot be read."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CorrectionError(f"无法读取更正文件 {path.name}:{exc}") from exc
    try:
        return Corrections.from_dict(data)
    except CorrectionError as exc:
        raise CorrectionError(f"{path.name}:{exc}") from exc


def parse_merge(text: str) -> tuple[str, str]:
    """``别名=标准名称`` as typed after ``--merge``."""
    spelling, sep, canonical = text.partition("=")
    if not sep:
        raise CorrectionError(f"合并单位需要写成“别名=标准名称”:{text}")
    return spelling, canonical


def parse_group(text: str) -> tuple[str, list[str]]:
    """``群体名称=单位1,单位2`` (or 、-separated) as typed after ``--group``."""
    phrase, sep, members = text.partition("=")
    if not sep:
        raise CorrectionError(f"定义群体需要写成“群体名称=单位1,单位2”:{text}")
    return phrase, split_unit_list(members.replace(",", "、").replace("，", "、"))


def stored_definitions(session: Session, jurisdiction: Jurisdiction | None) -> Corrections:
    """The merges and group definitions the office made on earlier imports (source ``office``)."""
    return _stored(session, jurisdiction, office=True)


def remembered_tables(session: Session, jurisdiction: Jurisdiction | None) -> UnitDirectory:
    """The aliases and groups an earlier import stored from the configuration or the notice's own tables.

    They are the jurisdiction's, so they apply under the configuration when the same county's plan is
    imported again from a file that has no unit tables beside it (a dashboard upload, an edited copy, the
    exported ledger).  A phrase that meant fewer units in one task than the group has (a notice's
    ``task_groups``) is remembered from that task's group assignments.
    """
    stored = _stored(session, jurisdiction, office=False)
    remembered = UnitDirectory(aliases=stored.merges, groups=stored.groups)
    if jurisdiction is None:
        return remembered
    members = {phrase: set(units) for phrase, units in _stored(session, jurisdiction, office=True).groups.items()}
    for phrase, units in stored.groups.items():
        members.setdefault(phrase, set(units))
    via: dict[str, dict[str, list[str]]] = {}
    for annex, number, group, unit in session.execute(
        select(Task.annex, Task.number, Assignment.via_group, Unit.name)
        .join(Assignment, Assignment.task_id == Task.id)
        .join(Unit, Unit.id == Assignment.unit_id)
        .join(Plan, Plan.id == Task.plan_id)
        .where(Plan.jurisdiction_id == jurisdiction.id, Assignment.active.is_(True), Assignment.via_group.is_not(None))
        .order_by(Plan.year, Assignment.id)
    ):
        via.setdefault(f"{annex}-{number}", {}).setdefault(str(group), []).append(unit)
    for key, phrases in via.items():
        for phrase, units in phrases.items():
            if phrase in members and set(units) < members[phrase]:
                remembered.task_groups.setdefault(key, {})[phrase] = units
    return remembered


def _stored(session: Session, jurisdiction: Jurisdiction | None, *, office: bool) -> Corrections:
    stored = Corrections()
    if jurisdiction is None:
        return stored
    alias_source = UnitAlias.source == OFFICE if office else UnitAlias.source != OFFICE
    member_source = UnitGroupMember.source == OFFICE if office else UnitGroupMember.source != OFFICE
    for alias, unit in session.execute(
        select(UnitAlias.alias, Unit.name)
        .join(Unit, Unit.id == UnitAlias.unit_id)
        .where(Unit.jurisdiction_id == jurisdiction.id, alias_source)
    ):
        stored.merges[alias] = unit
    for phrase, unit in session.execute(
        select(UnitGroupMember.phrase, Unit.name)
        .join(Unit, Unit.id == UnitGroupMember.unit_id)
        .where(UnitGroupMember.jurisdiction_id == jurisdiction.id, member_source)
        .order_by(UnitGroupMember.id)
    ):
        stored.groups.setdefault(phrase, []).append(unit)
    return stored


def directory_for(
    settings: Settings,
    definitions: Corrections,
    remembered: UnitDirectory | None = None,
    base: UnitDirectory | None = None,
) -> UnitDirectory:
    """The notice's directory (``base``: its own tables and the configuration's, else the configuration's)
    over what the jurisdiction's earlier imports stored (``remembered``), with the office's merges and
    group definitions on top (they win)."""
    source = base or settings.unit_directory()
    lower = remembered or UnitDirectory()
    directory = UnitDirectory(
        aliases={**lower.aliases, **source.aliases},
        groups={phrase: list(members) for phrase, members in {**lower.groups, **source.groups}.items()},
        kinds=dict(source.kinds),
        task_groups={key: dict(value) for key, value in {**lower.task_groups, **source.task_groups}.items()},
    )
    directory.aliases.update(definitions.merges)
    directory.groups.update({phrase: list(members) for phrase, members in definitions.groups.items()})
    return directory


def apply_task_units(parsed: ParsedPlan, directory: UnitDirectory, corrections: Corrections) -> None:
    """Replace the units of the tasks the office corrected; a correction naming no such task is an error."""
    for key, units in corrections.tasks.items():
        annex, number = key.split("-")
        task = parsed.task(Annex(annex), int(number))
        if task is None:
            parsed.problems.append(Problem(0, Severity.ERROR, f"更正指向不存在的任务 {key}"))
            continue
        for role, names in ((Role.LEAD, units.lead), (Role.RESPONSIBLE, units.responsible)):
            if names is None:
                continue
            target = task.lead if role is Role.LEAD else task.responsible
            for unit in list(target):
                task.via_group.pop(unit, None)
            target.clear()
            task.raw_names = [(r, n) for r, n in task.raw_names if r is not role]
            task.unresolved_groups = [(r, g) for r, g in task.unresolved_groups if r is not role]
            task.groups = [(r, g) for r, g in task.groups if r is not role]
            for name in names:
                resolved = directory.resolve(name, key)
                task.raw_names.append((role, resolved))
                if resolved.group is not None:
                    task.groups.append((role, resolved.group))
                if resolved.unresolved_group:
                    task.unresolved_groups.append((role, resolved.raw))
                for unit in resolved.units:
                    if unit not in target:
                        target.append(unit)
                        if resolved.group is not None:
                            task.via_group[unit] = resolved.group
        task.responsible = [u for u in task.responsible if u not in task.lead]
        if not task.lead:
            parsed.problems.append(Problem(task.line, Severity.ERROR, f"更正后任务 {key} 没有牵头单位"))
