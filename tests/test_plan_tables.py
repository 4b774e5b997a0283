"""Tables of a plan recognised by their header words, wherever the header sits."""

from __future__ import annotations

import pytest

from core.plan_sources import TableBlock
from core.plan_tables import (
    ColumnKind,
    MatrixTable,
    TableLine,
    TaskRow,
    TaskTable,
    header_kind,
    read_table,
)


def block(rows: list[list[str]], first_line: int = 10) -> TableBlock:
    return TableBlock(rows, first_line, "表1")


def tasks(table: TaskTable | MatrixTable | None) -> list[TaskRow]:
    assert isinstance(table, TaskTable)
    return table.tasks


@pytest.mark.parametrize(
    ("word", "kind"),
    [
        ("序号", ColumnKind.NUMBER),
        ("任务", ColumnKind.TEXT),
        ("工作任务", ColumnKind.TEXT),
        ("重点任务", ColumnKind.TEXT),
        ("任务内容", ColumnKind.TEXT),
        ("工作要求", ColumnKind.MEASURES),
        ("具体措施", ColumnKind.MEASURES),
        ("牵头单位", ColumnKind.LEAD),
        ("责任单位", ColumnKind.RESPONSIBLE),
        ("配合单位", ColumnKind.RESPONSIBLE),
        ("参与单位", ColumnKind.RESPONSIBLE),
        ("协办单位", ColumnKind.RESPONSIBLE),
        ("完成时限", ColumnKind.DEADLINE),
        ("时间节点", ColumnKind.DEADLINE),
        ("完成时间", ColumnKind.DEADLINE),
        ("责任领导", ColumnKind.LEADER),
        ("分管领导", ColumnKind.LEADER),
        ("分组", ColumnKind.GROUP),
        ("备注", ColumnKind.NOTE),
        ("牵 头 单 位", ColumnKind.LEAD),
        ("牵头事项", ColumnKind.MATRIX),
    ],
)
def test_header_words_name_their_columns(word: str, kind: ColumnKind) -> None:
    assert header_kind(word) is kind


def test_a_long_cell_mentioning_a_label_is_content_not_a_header() -> None:
    assert header_kind("完善工业园区水电气路等基础设施建设(牵头单位:县发改局)") is None


def test_header_below_title_rows_is_found_and_titles_kept_as_lines() -> None:
    table = read_table(
        block(
            [
                ["2025年重点任务台账", "2025年重点任务台账", "2025年重点任务台账"],
                ["重点任务", "牵头单位", "责任单位"],
                ["城镇新增就业3000人。", "区人社局", "区财政局"],
            ]
        )
    )
    assert isinstance(table, TaskTable)
    title, task = table.rows
    assert title == TableLine("2025年重点任务台账", 10, "表1 第1行")
    assert isinstance(task, TaskRow)
    assert (task.text, task.lead, task.responsible, task.line, task.where) == (
        "城镇新增就业3000人。",
        "区人社局",
        "区财政局",
        12,
        "表1 第3行",
    )


def test_two_row_header_takes_the_bottom_words() -> None:
    rows = tasks(
        read_table(
            block(
                [
                    ["序号", "重点任务", "责任单位", "责任单位", "完成时限"],
                    ["序号", "重点任务", "牵头单位", "配合单位", "完成时限"],
                    ["1", "任务甲", "区经发局", "区统计局 区财政局", "2025年底前"],
                ]
            )
        )
    )
    assert [(r.number, r.lead, r.responsible, r.deadline) for r in rows] == [
        ("1", "区经发局", "区统计局 区财政局", "2025年底前")
    ]


def test_section_rows_spanning_the_table_are_lines() -> None:
    table = read_table(
        block([["序号", "任务", "牵头单位"], ["一、经济发展"] * 3, ["1", "甲", "区经发局"], ["(一)工业"] * 3])
    )
    assert isinstance(table, TaskTable)
    assert [r.text if isinstance(r, TableLine) else r.number for r in table.rows] == ["一、经济发展", "1", "(一)工业"]


def test_section_column_spanning_rows_gives_each_task_its_group() -> None:
    rows = tasks(
        read_table(
            block(
                [
                    ["分组", "序号", "任务", "牵头单位"],
                    ["经济发展", "1", "甲", "区经发局"],
                    ["经济发展", "2", "乙", "区商务局"],
                    ["民生", "3", "丙", "区民政局"],
                ]
            )
        )
    )
    assert [(r.group, r.number) for r in rows] == [("经济发展", "1"), ("经济发展", "2"), ("民生", "3")]


def test_a_task_merged_down_several_rows_is_one_task_with_all_its_units() -> None:
    rows = tasks(
        read_table(
            block(
                [
                    ["序号", "任务", "具体措施", "牵头单位", "责任单位"],
                    ["1", "优化营商环境", "推行一网通办", "区政务数据局", "区发改局"],
                    ["1", "优化营商环境", "压减审批时限", "区政务数据局", "区市场监管局"],
                ]
            )
        )
    )
    assert [(r.measures, r.lead, r.responsible) for r in rows] == [
        ("推行一网通办\n压减审批时限", "区政务数据局", "区发改局、区市场监管局")
    ]


def test_lines_in_a_unit_cell_are_separate_units_and_wrapped_text_is_joined() -> None:
    (row,) = tasks(read_table(block([["任务", "责任单位"], ["新建改建\n养老中心5个。", "区卫健局\n区住建局"]])))
    assert (row.text, row.responsible) == ("新建改建养老中心5个。", "区卫健局、区住建局")


def test_a_table_continued_on_the_next_page_keeps_the_header() -> None:
    first = read_table(block([["序号", "任务", "牵头单位"], ["1", "甲", "区经发局"]]))
    assert isinstance(first, TaskTable)
    rest = read_table(block([["2", "乙", "区商务局"]], first_line=20), continues=first.header)
    assert [(r.number, r.lead) for r in tasks(rest)] == [("2", "区商务局")]
    repeated = read_table(block([["序号", "任务", "牵头单位"], ["3", "丙", "区民政局"]]), continues=first.header)
    assert [r.number for r in tasks(repeated)] == ["3"]


def test_a_matrix_keeps_every_column_by_its_header() -> None:
    table = read_table(
        block(
            [
                ["承办单位", "县《政府工作报告》责任分解序号", "县《政府工作报告》责任分解序号"],
                ["承办单位", "牵头事项", "责任事项"],
                ["县委组织部", "", "22、26"],
            ]
        )
    )
    assert isinstance(table, MatrixTable)
    (row,) = table.rows
    assert row.columns == {
        "县《政府工作报告》责任分解序号/牵头事项": [],
        "县《政府工作报告》责任分解序号/责任事项": [22, 26],
    }


def test_a_table_with_no_plan_header_is_not_read() -> None:
    assert read_table(block([["姓名", "电话"], ["张三", "123"]])) is None
