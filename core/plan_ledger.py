"""The plan as a standard task ledger (任务台账) workbook, which imports back unchanged.

Layout (documented in the workbook's first sheet too):

- sheet ``说明``: the plan's title, its year and issue date, and how to edit;
- one sheet per annex, ``附件1`` (the county's tasks) and ``附件2`` (the city's),
  each with ``附件N`` and the annex's name above the header row
  ``序号 | 任务 | 牵头单位 | 责任单位 | 完成时限 | 分组 | 备注``.

Units are written as the plan holds them: canonical names, and a group phrase
(各镇人民政府 …) written once as the phrase, not as its members, so a group
defined later still applies — unless in that task the phrase stood for other
units than the group holds (a task-specific meaning), when those units are
written by name.  ``分组`` holds the task's section heading (and
its subsection on a second line).  Reading this file back
(:mod:`core.plan_document`) gives the same tasks and assignments; an office
may edit it in WPS or Excel and re-import it, and the import shows the diff.
"""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.plan_parser import Annex, Role
from storage.models import Assignment, Plan, Task, TaskGroup, Unit, UnitGroupMember

LEDGER_HEADER = ("序号", "任务", "牵头单位", "责任单位", "完成时限", "分组", "备注")
ANNEX_SHEETS: dict[Annex, tuple[str, str]] = {
    Annex.COUNTY: ("附件1", "县级任务"),
    Annex.CITY: ("附件2", "市级任务"),
}
_WIDTHS = (6, 60, 18, 40, 14, 24, 16)
_HOW_TO = (
    "本工作簿由督办系统导出,是方案的标准任务台账:每个附件一个工作表,表头为"
    " 序号、任务、牵头单位、责任单位、完成时限、分组、备注。"
    "可在 WPS 或 Excel 中修改后用“duban import 文件名”重新导入,导入前会先列出变更;已记录的进展不会丢失。"
    "多个单位用“、”分隔;“各镇人民政府”等群体称谓照写,由系统按配置展开。"
)


@dataclass
class LedgerRow:
    """One task as a ledger row."""

    number: int
    text: str
    lead: list[str] = field(default_factory=list)
    responsible: list[str] = field(default_factory=list)
    deadline: str = ""
    group: str = ""
    note: str = ""

    def cells(self) -> list[object]:
        return [
            self.number,
            self.text,
            "、".join(self.lead),
            "、".join(self.responsible),
            self.deadline,
            self.group,
            self.note,
        ]


def ledger_rows(session: Session, plan: Plan) -> dict[Annex, list[LedgerRow]]:
    """The plan's active tasks per annex, with their units as the ledger writes them."""
    tasks = session.scalars(
        select(Task).where(Task.plan_id == plan.id, Task.active.is_(True)).order_by(Task.annex, Task.number)
    ).all()
    names: dict[int, list[tuple[Role, str]]] = defaultdict(list)
    phrases_written: dict[int, set[str]] = defaultdict(set)
    members = _group_members(session, plan)
    via: dict[int, dict[str, list[tuple[Role, str]]]] = defaultdict(dict)
    assignments = session.execute(
        select(Assignment.task_id, Assignment.role, Assignment.via_group, Unit.name, Assignment.note)
        .join(Unit, Unit.id == Assignment.unit_id)
        .join(Task, Task.id == Assignment.task_id)
        .where(Task.plan_id == plan.id, Assignment.active.is_(True))
        .order_by(Assignment.id)
    )
    for task_id, role, via_group, unit, note in assignments:
        if via_group is None:
            # A scope note goes back in brackets after its unit, as notices write it: 区经发局(负责…).
            names[task_id].append((Role(role), f"{unit}({note})" if note else unit))
            continue
        if via_group not in via[task_id]:
            names[task_id].append((Role(role), via_group))  # a placeholder, resolved below
        via[task_id].setdefault(via_group, []).append((Role(role), unit))
    for task_id, by_phrase in via.items():
        written: list[tuple[Role, str]] = []
        for role, name in names[task_id]:
            if name not in by_phrase:
                written.append((role, name))
                continue
            mine = {u for _, u in by_phrase[name]}
            # Units the task names otherwise (its lead, say) are not assigned again through the phrase.
            elsewhere = {u for _, u in names[task_id] if u not in by_phrase} | {
                u for phrase, units in by_phrase.items() if phrase != name for _, u in units
            }
            if mine == members.get(name, set()) - elsewhere:
                # The phrase, once, in the role the document gave it: a later definition still applies.
                phrases_written[task_id].add(name)
                written.append((_phrase_role(session, task_id, name, role), name))
            else:
                # The phrase meant other units in this task than the group holds (a task-specific meaning
                # from the notice's own tables): those units, by name, so the task keeps exactly them.
                phrases_written[task_id].add(name)
                written.extend(by_phrase[name])
        names[task_id] = written
    groups = session.execute(
        select(TaskGroup.task_id, TaskGroup.phrase, TaskGroup.role)
        .join(Task, Task.id == TaskGroup.task_id)
        .where(Task.plan_id == plan.id, TaskGroup.active.is_(True))
        .order_by(TaskGroup.id)
    )
    for task_id, phrase, role in groups:
        if phrase not in phrases_written[task_id]:  # a phrase not yet defined: no assignment carries it
            phrases_written[task_id].add(phrase)
            names[task_id].append((Role(role), phrase))
    result: dict[Annex, list[LedgerRow]] = {annex: [] for annex in Annex}
    for task in tasks:
        row = LedgerRow(number=task.number, text=task.text, deadline=task.deadline_text)
        row.group = "\n".join(part for part in (task.section, task.subsection) if part)
        for role, name in names[task.id]:
            (row.lead if role is Role.LEAD else row.responsible).append(name)
        result[Annex(task.annex)].append(row)
    return result


def _group_members(session: Session, plan: Plan) -> dict[str, set[str]]:
    """Each group phrase's members as the plan's jurisdiction holds them."""
    members: dict[str, set[str]] = defaultdict(set)
    rows = session.execute(
        select(UnitGroupMember.phrase, Unit.name)
        .join(Unit, Unit.id == UnitGroupMember.unit_id)
        .where(UnitGroupMember.jurisdiction_id == plan.jurisdiction_id)
    )
    for phrase, name in rows:
        members[phrase].add(name)
    return members


def _phrase_role(session: Session, task_id: int, phrase: str, fallback: Role) -> Role:
    """The role a group phrase was written in: from the task's kept phrases, else its members' role."""
    role = session.scalar(select(TaskGroup.role).where(TaskGroup.task_id == task_id, TaskGroup.phrase == phrase))
    return Role(role) if role is not None else fallback


def ledger_file_name(plan: Plan) -> str:
    """The ledger's default file name: 任务台账-<jurisdiction>-<year>.xlsx."""
    return f"任务台账-{plan.jurisdiction.name}-{plan.year}.xlsx"


def ledger_workbook(session: Session, plan: Plan) -> bytes:
    """The plan as a task-ledger .xlsx file's bytes."""
    # Imported here: openpyxl is heavy and only this export needs it, not every CLI start.
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    book = Workbook()
    notes = book.active
    notes.title = "说明"
    notes.append([plan.title or plan.name])
    notes.append([f"年度:{plan.year}年"])
    if plan.issued_on:
        notes.append([f"发文日期: {plan.issued_on}"])
    notes.append([_HOW_TO])
    notes.column_dimensions["A"].width = 100
    for row in notes.iter_rows():
        for cell in row:
            cell.alignment = Alignment(wrap_text=True, vertical="top")
    bold = Font(bold=True)
    for annex, rows in ledger_rows(session, plan).items():
        if not rows and annex is not Annex.COUNTY:
            continue
        sheet_name, label = ANNEX_SHEETS[annex]
        sheet = book.create_sheet(sheet_name)
        sheet.append([sheet_name])
        sheet.append([label])
        sheet.append(list(LEDGER_HEADER))
        for cell in sheet[3]:
            cell.font = bold
        for row in rows:
            sheet.append(row.cells())
        for index, width in enumerate(_WIDTHS):
            sheet.column_dimensions[chr(ord("A") + index)].width = width
        for row_cells in sheet.iter_rows(min_row=4):
            for cell in row_cells:
                cell.alignment = Alignment(wrap_text=True, vertical="top")
        sheet.freeze_panes = "A4"
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
