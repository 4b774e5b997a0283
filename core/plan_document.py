"""Parse a plan file of any supported format: blocks in document order fed to the plan reader.

Text blocks go to :meth:`PlanReader.feed_lines`; a table recognised by its
header (:func:`core.plan_tables.read_table`) gives task rows or matrix rows with
exact columns; a table that is neither is read as lines of text, one per row.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from core.config import Settings
from core.plan_parser import ParsedPlan, PlanReader, normalise_text
from core.plan_sources import SourceDocument, SourceRefused, TableBlock, TextBlock, read_source, too_large
from core.plan_tables import MatrixTable, TableLine, TaskHeader, TaskTable, read_table
from core.units import UnitDirectory

_ANNEX_HEADING = re.compile(r"^附件\s*\d{1,2}\s*(?:[:：.．、]|$)")
_SHEET_ANNEX = re.compile(r"^附件\s*(\d{1,2})$")
_HEADING = re.compile(r"^[(（]?[一二三四五六七八九十]+[)）、.．]")
_SPREADSHEETS = ("xlsx", "xls", "et")


@dataclass(frozen=True)
class PlanFile:
    """A plan file read into blocks, ready to parse with whichever unit directory the import uses."""

    document: SourceDocument
    sha256: str  # of the file's bytes, as uploaded

    @property
    def name(self) -> str:
        return self.document.name

    @property
    def lines(self) -> list[str]:
        """The document as numbered lines (tables one row a line): what problems' line numbers point into."""
        return self.document.text().splitlines()

    def parse(self, directory: UnitDirectory) -> ParsedPlan:
        return parse_document(self.document, directory)


def _row_line(row: list[str]) -> str:
    """A row of a table that is not a plan table, as one line: distinct cells joined by spaces."""
    return " ".join(dict.fromkeys(c.replace("\n", " ").strip() for c in row if c.strip()))


def _has_annex_heading(doc: SourceDocument) -> bool:
    for block in doc.blocks:
        lines = block.lines if isinstance(block, TextBlock) else [_row_line(r) for r in block.rows]
        if any(_ANNEX_HEADING.match(normalise_text(line).strip()) for line in lines):
            return True
    # A workbook whose sheets are named 附件1, 附件2 marks its annexes that way.
    return any(_SHEET_ANNEX.match(t.sheet) for t in doc.tables())


def parse_document(doc: SourceDocument, directory: UnitDirectory) -> ParsedPlan:
    """Parse a read document; problems are collected on the result.

    Raises :class:`SourceRefused` for a spreadsheet none of whose sheets has a
    recognisable header (nothing in it can be read as tasks).
    """
    reader = PlanReader(directory)
    readings: list[TaskTable | MatrixTable | None] = []
    header: TaskHeader | None = None
    for block in doc.blocks:
        reading = None if isinstance(block, TextBlock) else read_table(block, continues=header)
        readings.append(reading)
        header = reading.header if isinstance(reading, TaskTable) else None
    if not _has_annex_heading(doc) and not any(isinstance(r, TaskTable) for r in readings):
        # A notice without annexes or a task table: the body itself is the task list.
        # (A task table starts the list at its first row; lines above it are the title.)
        reader.begin_task_list()
    annex_sheets = _annex_sheets(doc, readings)
    recognised = False
    for block, table in zip(doc.blocks, readings, strict=True):
        if isinstance(block, TextBlock):
            reader.feed_lines(block.lines, block.first_line)
            continue
        if id(block) in annex_sheets and table is not None:
            titles = (
                table.titles if isinstance(table, MatrixTable) else [r for r in table.rows if isinstance(r, TableLine)]
            )
            if not any(_ANNEX_HEADING.match(normalise_text(t.text)) for t in titles):
                reader.feed_lines(annex_sheets[id(block)], block.first_line)
        if table is None:
            reader.feed_lines([_row_line(r) for r in block.rows], block.first_line)
            continue
        recognised = True
        if isinstance(table, MatrixTable):
            _feed_lines(reader, table.titles)
            for matrix_row in table.rows:
                reader.feed_matrix_row(matrix_row)
            continue
        _feed_task_table(reader, table)
    if doc.format in _SPREADSHEETS and not recognised:
        raise _no_header(doc)
    return reader.finish()


def _annex_sheets(doc: SourceDocument, readings: list[TaskTable | MatrixTable | None]) -> dict[int, list[str]]:
    """The heading lines that start an annex at a worksheet, by the sheet block's id.

    A sheet named 附件N starts annex N.  A workbook of several task sheets with
    no annex marks at all (县级任务 / 市级任务) has one annex per sheet, titled by
    the sheet's name; otherwise their task numbers would collide in one list.
    """
    sheets = [(b, r) for b, r in zip(doc.blocks, readings, strict=True) if isinstance(b, TableBlock) and b.sheet]
    named = {id(b): [f"附件{m.group(1)}"] for b, _ in sheets if (m := _SHEET_ANNEX.match(b.sheet))}
    if named or _has_annex_heading(doc):
        return named
    task_sheets = [b for b, r in sheets if isinstance(r, TaskTable)]
    if len(task_sheets) < 2:
        return {}
    return {id(b): [f"附件{index}", b.sheet] for index, b in enumerate(task_sheets, start=1)}


def _no_header(doc: SourceDocument) -> SourceRefused:
    sheets = "、".join(t.sheet for t in doc.tables()) or "(无)"
    return SourceRefused(
        f"{doc.name}:工作表({sheets})中没有找到表头。请在任务清单上方加一行列名,"
        "至少包括“任务”(或 重点任务/工作任务/任务内容)和“牵头单位”或“责任单位”,"
        "可再加 序号、完成时限、分组、备注 等列。"
    )


def _feed_lines(reader: PlanReader, lines: list[TableLine]) -> None:
    for line in lines:
        reader.feed_lines([line.text], line.line)


def _feed_task_table(reader: PlanReader, table: TaskTable) -> None:
    for row in table.rows:
        if isinstance(row, TableLine):
            reader.feed_lines([row.text], row.line)
        else:
            reader.feed_task_row(row)  # a section column (row.group) is the reader's to apply


def read_plan_bytes(data: bytes, filename: str, settings: Settings) -> PlanFile:
    """Read an uploaded plan file of any supported format; raises :class:`SourceRefused` when it cannot be read."""
    document = read_source(data, filename, max_bytes=settings.uploads.max_bytes, soffice=settings.uploads.soffice)
    if document.format in _SPREADSHEETS and not any(read_table(t) is not None for t in document.tables()):
        raise _no_header(document)  # here, so nothing downstream meets a workbook with no task list
    return PlanFile(document, hashlib.sha256(data).hexdigest())


def read_plan_file(path: Path, settings: Settings) -> PlanFile:
    """Read a plan file from disk; a file over the size cap is refused before it is read."""
    try:
        size = path.stat().st_size
        if size > settings.uploads.max_bytes:
            raise too_large(path.name, size, settings.uploads.max_bytes)
        data = path.read_bytes()
    except OSError as exc:
        raise SourceRefused(f"{path.name}:无法读取文件({exc.strerror})。") from exc
    return read_plan_bytes(data, path.name, settings)
