"""Recognise a table of a plan by its header's words and read its rows.

Two kinds of table carry a plan:

- a **task table** (任务台账): one row per task, with columns such as 序号,
  重点任务, 工作要求, 牵头单位, 责任单位, 完成时限, 责任领导, 分组, 备注;
- a **unit-by-unit matrix** (明细表, like the bundled notice's Annex 3): one row
  per unit, with columns of task numbers it leads or shares.

The header is found by its words, not its position: a title row may sit above
it, and Word tables often have a two-row header (责任单位 spanning 牵头单位 and
配合单位).  Merged cells arrive filled in (see :mod:`core.plan_sources`), so a
section cell spanning rows gives every row its section.  Shared by Word, PDF and
Excel sources.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from core.plan_sources import TableBlock


class ColumnKind(StrEnum):
    """What a task-table column holds."""

    NUMBER = "number"
    TEXT = "text"
    MEASURES = "measures"
    LEAD = "lead"
    RESPONSIBLE = "responsible"
    DEADLINE = "deadline"
    LEADER = "leader"
    GROUP = "group"
    NOTE = "note"
    MATRIX = "matrix"  # a matrix column: the task numbers a unit leads or shares


# Header words per kind, checked in this order (责任领导 before 责任单位, 牵头事项 before 任务).
HEADER_WORDS: tuple[tuple[ColumnKind, tuple[str, ...]], ...] = (
    (ColumnKind.NOTE, ("备注", "说明")),
    (ColumnKind.LEADER, ("责任领导", "分管领导", "牵头领导", "联系领导", "包保领导", "县领导", "区领导", "市领导")),
    (ColumnKind.DEADLINE, ("完成时限", "时间节点", "完成时间", "完成期限", "截止时间", "办结时限", "时限")),
    (ColumnKind.LEAD, ("牵头单位", "牵头部门", "主办单位", "牵头责任单位")),
    (
        ColumnKind.RESPONSIBLE,
        (
            "责任单位",
            "配合单位",
            "参与单位",
            "协办单位",
            "协同单位",
            "责任部门",
            "配合部门",
            "协办部门",
            "承办单位",
            "责任主体",
            "单位名称",
        ),
    ),
    (ColumnKind.MEASURES, ("工作要求", "具体措施", "工作措施", "主要措施", "推进措施", "目标要求", "工作目标")),
    (ColumnKind.GROUP, ("分组", "类别", "领域", "板块", "分类", "所属")),
    (
        ColumnKind.TEXT,
        (
            "重点任务",
            "工作任务",
            "任务内容",
            "主要任务",
            "具体任务",
            "目标任务",
            "任务名称",
            "工作内容",
            "重点工作",
            "工作事项",
            "任务",
            "事项",
        ),
    ),
)
_NUMBER_WORDS = ("序号", "编号", "序")
_MATRIX_ROLE = re.compile(r"(牵头|责任|配合|参与|协办|承担)")
_MATRIX_ITEM = re.compile(r"(事项|序号|编号|任务号)")
_SPACES = re.compile(r"\s+")
# A header cell is short; a longer cell is content even if it mentions 牵头单位.
_HEADER_MAX = 20


def header_kind(cell: str) -> ColumnKind | None:
    """The kind of column a header cell names, or None."""
    word = _SPACES.sub("", cell).strip(":：")
    if not word or len(word) > _HEADER_MAX:
        return None
    if word in _NUMBER_WORDS or word.startswith("序号"):
        return ColumnKind.NUMBER
    if _MATRIX_ROLE.search(word) and _MATRIX_ITEM.search(word):
        return ColumnKind.MATRIX
    for kind, words in HEADER_WORDS:
        if any(w in word for w in words):
            return kind
    return None


@dataclass(frozen=True)
class TaskRow:
    """One task as a table row: each field the raw text of its column(s)."""

    number: str  # 序号 as written ("1", "（一）", "" when none)
    text: str  # 任务/工作任务/重点任务/任务内容
    measures: str  # 工作要求/具体措施 ("" when no such column)
    lead: str  # 牵头单位 cell, raw
    responsible: str  # 责任单位/配合单位/参与单位/协办单位 cell(s), raw (several columns joined with 、)
    deadline: str  # 完成时限/时间节点/完成时间, raw
    leader: str  # 责任领导/分管领导, raw
    group: str  # 分组 / section column, raw ("" when none)
    note: str  # 备注
    line: int  # document line number of the row
    where: str  # "表1 第5行" / "Sheet1!A5"


@dataclass(frozen=True)
class TableLine:
    """A row that is not a task: a title above the header, or a section row spanning the table."""

    text: str
    line: int
    where: str


@dataclass(frozen=True)
class MatrixTableRow:
    """A unit-by-unit matrix row read as a real table: exact columns, no guessing."""

    unit: str  # raw unit name
    columns: dict[str, list[int]]  # header text -> task numbers in that column (every column, empty ones too)
    line: int
    where: str


@dataclass
class TaskHeader:
    """Which columns of a task table hold what."""

    kinds: dict[int, ColumnKind]
    labels: list[str]
    rows: int  # how many header rows
    width: int
    last_row: list[str] = field(default_factory=list)  # the header's bottom row, to skip it when a page repeats it


@dataclass
class TaskTable:
    """A task table: title rows, section rows and task rows in table order."""

    header: TaskHeader
    rows: list[TaskRow | TableLine] = field(default_factory=list)

    @property
    def tasks(self) -> list[TaskRow]:
        return [r for r in self.rows if isinstance(r, TaskRow)]


@dataclass
class MatrixTable:
    """A unit-by-unit matrix: its column labels and one row per unit."""

    labels: list[str]
    rows: list[MatrixTableRow] = field(default_factory=list)
    titles: list[TableLine] = field(default_factory=list)


def _clean(cell: str) -> str:
    return cell.strip()


def _row_kinds(row: list[str]) -> dict[int, ColumnKind]:
    kinds: dict[int, ColumnKind] = {}
    for index, cell in enumerate(row):
        kind = header_kind(cell)
        if kind is not None:
            kinds[index] = kind
    return kinds


def _is_header(kinds: dict[int, ColumnKind]) -> bool:
    found = set(kinds.values())
    units = {ColumnKind.LEAD, ColumnKind.RESPONSIBLE}
    if ColumnKind.TEXT in found and (found & units or len(found) >= 3):
        return True
    # A matrix: a unit column and at least one column of task numbers.
    return ColumnKind.MATRIX in found and bool(found & units)


def _continues_header(row: list[str], above: list[str]) -> bool:
    """A second header row: every cell repeats the one above (a vertical merge) or is a header word."""
    differs = False
    for index, cell in enumerate(row):
        cell = _clean(cell)
        if not cell:
            continue
        if index < len(above) and cell == _clean(above[index]):
            continue
        if header_kind(cell) is None:
            return False
        differs = True
    return differs


def find_header(rows: list[list[str]], search: int = 8) -> tuple[int, int] | None:
    """(first header row, header row count) or None: the header is found by its words in the first rows."""
    for start in range(min(search, len(rows))):
        if not _is_header(_row_kinds(rows[start])):
            continue
        end = start + 1
        while end < len(rows) and _continues_header(rows[end], rows[end - 1]):
            end += 1
        return start, end - start
    return None


def _labels(header_rows: list[list[str]], width: int) -> list[str]:
    """Each column's label: its header texts top to bottom, repeats dropped, joined by '/'; made unique."""
    labels: list[str] = []
    for column in range(width):
        parts: list[str] = []
        for row in header_rows:
            text = _SPACES.sub("", row[column]) if column < len(row) else ""
            if text and text not in parts:
                parts.append(text)
        labels.append("/".join(parts))
    seen: dict[str, int] = {}
    unique: list[str] = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        unique.append(label if seen[label] == 1 else f"{label}#{seen[label]}")
    return unique


def _column_kinds(header_rows: list[list[str]], width: int) -> dict[int, ColumnKind]:
    """The bottom-most recognised header word of each column decides its kind (牵头单位 under 责任单位)."""
    kinds: dict[int, ColumnKind] = {}
    for column in range(width):
        for row in reversed(header_rows):
            kind = header_kind(row[column]) if column < len(row) else None
            if kind is not None:
                kinds[column] = kind
                break
    return kinds


def _title_lines(table: TableBlock, count: int) -> list[TableLine]:
    lines: list[TableLine] = []
    for index in range(count):
        text = _row_text(table.rows[index])
        if text:
            lines.append(TableLine(text, table.first_line + index, table.where(index)))
    return lines


def _row_text(row: list[str]) -> str:
    """A non-task row as one line: its distinct cells (a spanning cell repeats) joined by spaces."""
    return " ".join(dict.fromkeys(c.replace("\n", " ").strip() for c in row if c.strip()))


def _join(values: list[str], separator: str) -> str:
    return separator.join(dict.fromkeys(v for v in values if v))


def read_table(table: TableBlock, continues: TaskHeader | None = None) -> TaskTable | MatrixTable | None:
    """Read a table as a task table or a matrix; None when it is neither.

    ``continues`` is the header of the task table just before, for a table
    with no header of its own of the same width (a table broken across PDF pages).
    """
    found = find_header(table.rows)
    if found is None:
        if continues is not None and table.rows and len(table.rows[0]) == continues.width:
            return _read_tasks(table, continues, 0)
        return None
    start, count = found
    header_rows = table.rows[start : start + count]
    width = max(len(r) for r in table.rows)
    kinds = _column_kinds(header_rows, width)
    labels = _labels(header_rows, width)
    if ColumnKind.MATRIX in kinds.values() and ColumnKind.TEXT not in kinds.values():
        return _read_matrix(table, start + count, kinds, labels, _title_lines(table, start))
    header = TaskHeader(
        kinds=kinds, labels=labels, rows=count, width=width, last_row=[_clean(c) for c in header_rows[-1]]
    )
    result = _read_tasks(table, header, start + count)
    result.rows[:0] = _title_lines(table, start)
    return result


_UNIT_KINDS = (ColumnKind.LEAD, ColumnKind.RESPONSIBLE, ColumnKind.LEADER)


def _cells(row: list[str], kinds: dict[int, ColumnKind], kind: ColumnKind) -> list[str]:
    """The column(s) of a kind in a row; a cell's lines are list items in unit columns, wrapped text elsewhere."""
    # A section column may hold a section and its subsection on two lines: kept apart.
    separator = "、" if kind in _UNIT_KINDS else "\n" if kind is ColumnKind.GROUP else ""
    return [
        separator.join(line.strip() for line in row[i].splitlines() if line.strip())
        for i, k in kinds.items()
        if k is kind and i < len(row)
    ]


def _read_tasks(table: TableBlock, header: TaskHeader, body: int) -> TaskTable:
    result = TaskTable(header=header)
    kinds = header.kinds
    has_number = ColumnKind.NUMBER in kinds.values()
    previous: TaskRow | None = None
    for index in range(body, len(table.rows)):
        row = table.rows[index]
        line = table.first_line + index
        where = table.where(index)
        values = [_clean(c) for c in row]
        if not any(values):
            continue
        if values == header.last_row or (index == body and body == 0 and find_header([row]) is not None):
            continue  # the header repeated on a new page
        filled = [v for v in values if v]
        if (len(set(filled)) == 1 and len(filled) > 1) or _is_section_row(values, kinds):
            result.rows.append(TableLine(_row_text(row), line, where))
            previous = None
            continue
        task = TaskRow(
            number=_join(_cells(row, kinds, ColumnKind.NUMBER), " "),
            text=_join(_cells(row, kinds, ColumnKind.TEXT), ""),
            measures=_join(_cells(row, kinds, ColumnKind.MEASURES), "\n"),
            lead=_join(_cells(row, kinds, ColumnKind.LEAD), "、"),
            responsible=_join(_cells(row, kinds, ColumnKind.RESPONSIBLE), "、"),
            deadline=_join(_cells(row, kinds, ColumnKind.DEADLINE), ";"),
            leader=_join(_cells(row, kinds, ColumnKind.LEADER), "、"),
            group=_join(_cells(row, kinds, ColumnKind.GROUP), " "),
            note=_join(_cells(row, kinds, ColumnKind.NOTE), ";"),
            line=line,
            where=where,
        )
        if previous is not None and (
            # One task spanning several rows (its number and text merged down), or a row
            # broken across a page with no number of its own: one task.
            (task.number and task.number == previous.number and task.text == previous.text)
            or (has_number and not task.number and not (task.lead and previous.lead))
        ):
            merged = _merge(previous, task)
            result.rows[-1] = merged
            previous = merged
            continue
        result.rows.append(task)
        previous = task
    return result


def _is_section_row(values: list[str], kinds: dict[int, ColumnKind]) -> bool:
    """A section heading row: text in the text (or number) column only, no units, no deadline."""
    filled = {kinds.get(i) for i, v in enumerate(values) if v}
    if filled & {ColumnKind.LEAD, ColumnKind.RESPONSIBLE, ColumnKind.DEADLINE, ColumnKind.MEASURES}:
        return False
    # "一、经济发展" in the number or text column, nothing that makes a task.
    text = " ".join(v for v in values if v)
    return bool(re.match(r"^[(（]?[一二三四五六七八九十]+[)）、.．]", text))


def _merge(first: TaskRow, second: TaskRow) -> TaskRow:
    def both(a: str, b: str, separator: str) -> str:
        return _join([a, b], separator)

    return TaskRow(
        number=first.number or second.number,
        text=first.text if second.text == first.text else both(first.text, second.text, ""),
        measures=both(first.measures, second.measures, "\n"),
        lead=both(first.lead, second.lead, "、"),
        responsible=both(first.responsible, second.responsible, "、"),
        deadline=both(first.deadline, second.deadline, ";"),
        leader=both(first.leader, second.leader, "、"),
        group=first.group or second.group,
        note=both(first.note, second.note, ";"),
        line=first.line,
        where=first.where,
    )


def _read_matrix(
    table: TableBlock, body: int, kinds: dict[int, ColumnKind], labels: list[str], titles: list[TableLine]
) -> MatrixTable:
    unit_column = min(i for i, k in kinds.items() if k in (ColumnKind.LEAD, ColumnKind.RESPONSIBLE))
    columns = [i for i, k in kinds.items() if k is ColumnKind.MATRIX]
    result = MatrixTable(labels=[labels[i] for i in columns], titles=titles)
    for index in range(body, len(table.rows)):
        row = table.rows[index]
        unit = _clean(row[unit_column]) if unit_column < len(row) else ""
        if not unit:
            continue
        numbers = {
            labels[i]: [int(n) for n in re.findall(r"\d+", row[i].replace("\n", ""))] if i < len(row) else []
            for i in columns
        }
        result.rows.append(MatrixTableRow(unit, numbers, table.first_line + index, table.where(index, unit_column)))
    return result
