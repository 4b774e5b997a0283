"""Rows read from a notice's tables: a task list (任务台账) or a unit-by-unit matrix.

The table readers (recognising a header by its words) build these; the plan
parser consumes them with the same unit rules as text.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskRow:
    """One row of a task table, every cell raw as written."""

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
class MatrixTableRow:
    """A unit-by-unit matrix (Annex 3 style) read as a real table: exact columns."""

    unit: str  # raw unit name
    columns: dict[str, list[int]]  # header text -> task numbers in that column
    line: int
    where: str
