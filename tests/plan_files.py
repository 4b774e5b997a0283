"""Plan files as offices send them, generated from text for the tests: Word documents and Excel ledgers.

A real Word copy of the bundled notice has Annex 3 as a table whose empty cells
are really empty.  The text copy lost them, so the generator puts each cell in
the column reconciliation placed it in; reading the Word table back must then
need no guessing at all.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable

import docx
from docx.table import Table
from openpyxl import Workbook

from core.plan_parser import Annex, ParsedPlan, Role
from core.reconcile import COLUMNS, Reconciliation

MATRIX_TOP = [
    "承办单位",
    "县《政府工作报告》责任分解序号",
    "县《政府工作报告》责任分解序号",
    "市《政府工作报告》责任分解序号",
    "市《政府工作报告》责任分解序号",
]
MATRIX_BOTTOM = ["承办单位", "牵头事项", "责任事项", "牵头事项", "责任事项"]
TASK_HEADER = ["序号", "重点任务", "牵头单位", "责任单位"]


def docx_bytes(document: docx.document.Document) -> bytes:
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def add_table(document: docx.document.Document, rows: list[list[str]]) -> Table:
    """A Word table with these rows; a run of equal cells in a row becomes one merged cell."""
    width = max(len(r) for r in rows)
    table = document.add_table(rows=len(rows), cols=width)
    for r, row in enumerate(rows):
        cells = table.rows[r].cells  # once per row: table.cell() rebuilds the whole grid each call
        c = 0
        while c < width:
            end = c
            while end + 1 < len(row) and row[end + 1] == row[c] and row[c]:
                end += 1
            cell = cells[c]
            if end > c:
                cell = cell.merge(cells[end])
            cell.text = row[c] if c < len(row) else ""
            c = end + 1
    return table


def merge_down(table: Table, column: int, first: int, last: int) -> None:
    """Merge a column's cells vertically (w:vMerge), keeping the first cell's text."""
    text = table.cell(first, column).text
    merged = table.cell(first, column).merge(table.cell(last, column))
    merged.text = text


def matrix_rows(parsed: ParsedPlan, rec: Reconciliation) -> list[list[str]]:
    """Annex 3's rows with every cell in its own column (empty cells empty)."""
    placed = {p.row.line: p.columns for p in rec.placed}
    rows = []
    for row in parsed.matrix:
        columns = placed.get(row.line, COLUMNS[: len(row.cells)])
        cells = ["", "", "", ""]
        for numbers, column in zip(row.cells, columns, strict=False):
            cells[COLUMNS.index(column)] = "、".join(str(n) for n in numbers)
        rows.append([row.raw_name, *cells])
    return rows


def bundled_docx(text: str, parsed: ParsedPlan, rec: Reconciliation, *, task_tables: bool = False) -> bytes:
    """The bundled notice as Word: Annex 3 a real table; with ``task_tables`` annexes 1–2 too."""
    document = docx.Document()
    lines = text.splitlines()
    annex3 = lines.index("附件3")
    annex1 = lines.index("附件1")
    body = lines[:annex1] if task_tables else lines[:annex3]
    for line in body:
        document.add_paragraph(line)
    if task_tables:
        for annex, start in ((Annex.COUNTY, annex1), (Annex.CITY, lines.index("附件2"))):
            document.add_paragraph(lines[start])
            document.add_paragraph(lines[start + 1])
            add_table(document, [TASK_HEADER, *task_table_rows(parsed, annex)])
    document.add_paragraph("附件3")
    document.add_paragraph(lines[annex3 + 1])
    table = add_table(document, [MATRIX_TOP, MATRIX_BOTTOM, *matrix_rows(parsed, rec)])
    merge_down(table, 0, 0, 1)
    return docx_bytes(document)


def raw_units(parsed_task, role: Role) -> str:  # type: ignore[no-untyped-def]
    return "、".join(dict.fromkeys(resolved.raw for r, resolved in parsed_task.raw_names if r is role))


def task_table_rows(parsed: ParsedPlan, annex: Annex) -> list[list[str]]:
    """One annex as task-table rows: section rows spanning the table, then task rows."""
    rows: list[list[str]] = []
    section = subsection = ""
    for task in parsed.tasks_in(annex):
        if task.section != section:
            section = task.section
            rows.append([section] * 4)
        if task.subsection != subsection:
            subsection = task.subsection
            if subsection:
                rows.append([subsection] * 4)
        rows.append([str(task.number), task.text, raw_units(task, Role.LEAD), raw_units(task, Role.RESPONSIBLE)])
    return rows


def workbook_bytes(sheets: Iterable[tuple[str, list[list[object]]]]) -> bytes:
    workbook = Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets:
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(list(row))
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def numbers_in(cell: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", cell)]


# A district's notice of another layout: a preamble with no 附件 number, the task
# list as a table with 序号/重点任务/牵头单位/配合单位/完成时限 columns, section rows
# spanning the table, units separated by spaces or 、 in a cell.
DISTRICT_PREAMBLE = [
    "江城区人民政府办公室关于印发2025年区政府重点工作任务分解方案的通知",
    "各街道办事处,区直各有关单位:",
    "现将《2025年区政府重点工作任务分解方案》印发给你们,请认真抓好落实。",
    "江城区人民政府办公室",
    "2025年3月5日",
    "附件1",
    "2025年区政府重点工作任务分解方案",
]
DISTRICT_TABLE = [
    ["序号", "重点任务", "责任单位", "责任单位", "完成时限"],
    ["序号", "重点任务", "牵头单位", "配合单位", "完成时限"],
    ["一、推动经济高质量发展"] * 5,
    ["1", "规模以上工业增加值增长8%。", "区经发局", "区统计局 区财政局", "2025年12月底前"],
    [
        "2",
        "社会消费品零售总额增长7%,新增限额以上商贸企业30家。",
        "区商务局",
        "区市场监管局、各街道办事处",
        "2025年12月底前",
    ],
    ["二、保障和改善民生"] * 5,
    ["3", "新建改建社区养老服务中心5个。", "区民政局", "区卫健局\n区住建局", "2025年9月底前"],
    ["4", "城镇新增就业3000人。", "区人社局", "各街道办事处", "2025年12月底前"],
]


def district_docx() -> bytes:
    """The district notice as Word: paragraphs, then the task table (two header rows, merged cells)."""
    document = docx.Document()
    for line in DISTRICT_PREAMBLE:
        document.add_paragraph(line)
    table = add_table(document, DISTRICT_TABLE)
    table.style = "Table Grid"
    for column in (0, 1, 4):
        merge_down(table, column, 0, 1)
    return docx_bytes(document)


W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def add_list(document: docx.document.Document, num_id: int, levels: list[tuple[str, str]]) -> None:
    """Define an automatic list (w:num ``num_id``) whose levels are (numFmt, lvlText), e.g. ("chineseCounting", "%1、")."""
    from docx.oxml import parse_xml

    numbering = document.part.numbering_part.element
    lvls = "".join(
        f'<w:lvl w:ilvl="{i}"><w:start w:val="1"/><w:numFmt w:val="{fmt}"/><w:lvlText w:val="{text}"/></w:lvl>'
        for i, (fmt, text) in enumerate(levels)
    )
    abstract = parse_xml(f'<w:abstractNum xmlns:w="{W_NS}" w:abstractNumId="{100 + num_id}">{lvls}</w:abstractNum>')
    numbering.insert(0, abstract)  # abstractNum elements come before num elements
    numbering.append(
        parse_xml(f'<w:num xmlns:w="{W_NS}" w:numId="{num_id}"><w:abstractNumId w:val="{100 + num_id}"/></w:num>')
    )


def number_paragraph(paragraph: docx.text.paragraph.Paragraph, num_id: int, level: int = 0) -> None:
    """Make a paragraph an item of list ``num_id`` at ``level`` (Word shows the number; the text has none)."""
    from docx.oxml import parse_xml

    paragraph._p.get_or_add_pPr().append(
        parse_xml(f'<w:numPr xmlns:w="{W_NS}"><w:ilvl w:val="{level}"/><w:numId w:val="{num_id}"/></w:numPr>')
    )


def long_notice_docx(tasks: int = 40) -> bytes:
    """A notice whose task list runs over several pages, with "— N —" page numbers in the footer (as offices print)."""
    from docx.oxml import parse_xml

    document = docx.Document()
    footer = document.sections[0].footer.paragraphs[0]
    footer.add_run("— ")
    footer._p.append(parse_xml(f'<w:fldSimple xmlns:w="{W_NS}" w:instr="PAGE"><w:r><w:t>1</w:t></w:r></w:fldSimple>'))
    footer.add_run(" —")
    document.add_paragraph("江城区2025年重点工作任务分解方案")
    document.add_paragraph("各街道办事处,区直各有关单位:")  # one line more: a task then straddles a page break
    document.add_paragraph("附件1")
    document.add_paragraph("重点工作任务")
    for number in range(1, tasks + 1):
        paragraph = document.add_paragraph(
            f"{number}.推进第{number}项重点工作,完善工作机制,细化工作措施,明确时间节点,确保按期完成年度目标任务。"
            f"(牵头单位:区经发局;责任单位:区财政局、区统计局)"
        )
        paragraph.paragraph_format.widow_control = False  # so a page break may fall inside a task
    return docx_bytes(document)
