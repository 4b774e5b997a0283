"""Rows rendered as sheet XML (``core.xlsx_rows``) make the same file as XlsxWriter's own cell calls.

Each test writes one workbook cell by cell through XlsxWriter's public API
and another with :class:`~core.xlsx_rows.RowsSheet` rows, visiting cells in
the same order, formats indexed up front in one order, and compares the
parts of the two files byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zipfile import ZipFile

import xlsxwriter
from xlsxwriter.format import Format
from xlsxwriter.workbook import Workbook
from xlsxwriter.worksheet import Worksheet

from core.xlsx_rows import ColumnCells, RowsSheet, blank_cell, excel_serial, number_cell, string_cell

PARTS = ("xl/worksheets/sheet1.xml", "xl/sharedStrings.xml", "xl/styles.xml")
# One row of every kind of cell: (kind, value, format name).
ROW: list[tuple[str, Any, str]] = [
    ("string", "嘉鱼县农业农村局", "text"),
    ("string", "第一行\n第二行 & <标签> \"引号\"", "wrap"),
    ("number", 3, "int"),
    ("number", 0.1 + 0.2, "pct"),
    ("number", 12345678.123456789, "days"),
    ("number", 1e-7, "number"),
    ("datetime", datetime(2024, 3, 25, 18, 0, 30, 250000), "datetime"),
    ("datetime", datetime(1900, 2, 10, 6), "datetime"),
    ("blank", None, "text"),
    ("string", "  前后有空格 ", "text"),
]


def _formats(book: Workbook) -> dict[str, Format]:
    return {
        "text": book.add_format({"border": 1}),
        "wrap": book.add_format({"border": 1, "text_wrap": True}),
        "int": book.add_format({"num_format": "0"}),
        "pct": book.add_format({"num_format": "0.0%", "bg_color": "#C6EFCE"}),
        "days": book.add_format({"num_format": "0.0"}),
        "number": book.add_format({"num_format": "General", "bold": True}),
        "datetime": book.add_format({"num_format": "yyyy-mm-dd hh:mm"}),
        "link": book.add_format({"font_color": "#1D5FBF", "underline": 1}),
    }


def _write(path: Path, fill: Callable[[Workbook, Worksheet, dict[str, Format]], None], rows_sheet: bool) -> None:
    book = xlsxwriter.Workbook(str(path), {"strings_to_numbers": False, "strings_to_formulas": False})
    sheet = book.add_worksheet("明细", worksheet_class=RowsSheet if rows_sheet else None)
    formats = _formats(book)
    for fmt in formats.values():  # style indexes in one order in both files, whichever cell meets a format first
        fmt._get_xf_index()
    fill(book, sheet, formats)
    book.close()


def _parts(path: Path) -> dict[str, bytes]:
    with ZipFile(path) as archive:
        return {name: archive.read(name) for name in PARTS if name in archive.namelist()}


def _cell_by_cell(sheet: Worksheet, formats: dict[str, Format], row: int, skip: int | None = None) -> None:
    for column, (kind, value, name) in enumerate(ROW):
        if column == skip:
            continue
        if kind == "string":
            sheet.write_string(row, column, value, formats[name])
        elif kind == "number":
            sheet.write_number(row, column, value, formats[name])
        elif kind == "datetime":
            sheet.write_datetime(row, column, value, formats[name])
        else:
            sheet.write_blank(row, column, None, formats[name])


def _rendered(sheet: Worksheet, formats: dict[str, Format], row: int, skip: int | None = None) -> list[str | None]:
    r = str(row + 1)
    cells: list[str | None] = []
    for column, (kind, value, name) in enumerate(ROW):
        if column == skip:
            cells.append(None)
            continue
        columns = ColumnCells(column, formats[name]._get_xf_index())
        if kind == "string":
            cells.append(string_cell(columns, r, sheet.str_table._get_shared_string_index(value)))
        elif kind == "number":
            cells.append(number_cell(columns, r, value))
        elif kind == "datetime":
            cells.append(number_cell(columns, r, excel_serial(value)))
        else:
            cells.append(blank_cell(columns, r))
    return cells


def _compare(tmp_path: Path, ordinary: Callable[..., None], rendered: Callable[..., None]) -> None:
    _write(tmp_path / "ordinary.xlsx", ordinary, rows_sheet=False)
    _write(tmp_path / "rendered.xlsx", rendered, rows_sheet=True)
    expected, got = _parts(tmp_path / "ordinary.xlsx"), _parts(tmp_path / "rendered.xlsx")
    assert set(got) == set(expected)
    for name in expected:
        assert got[name] == expected[name], name


def test_rendered_rows_make_the_same_sheet_strings_and_styles_as_xlsxwriters_cells(tmp_path: Path) -> None:
    # 40 rows: the optional row "spans" are per block of 16 rows, a header above the rows.
    def ordinary(book: Workbook, sheet: Worksheet, formats: dict[str, Format]) -> None:
        sheet.write_string(0, 0, "标题", formats["text"])
        for row in range(1, 41):
            _cell_by_cell(sheet, formats, row)

    def rendered(book: Workbook, sheet: RowsSheet, formats: dict[str, Format]) -> None:
        sheet.write_string(0, 0, "标题", formats["text"])
        for row in range(1, 41):
            sheet.put_row(row, _rendered(sheet, formats, row))

    _compare(tmp_path, ordinary, rendered)


def test_a_cell_written_through_xlsxwriter_takes_its_place_in_a_rendered_row(tmp_path: Path) -> None:
    def ordinary(book: Workbook, sheet: Worksheet, formats: dict[str, Format]) -> None:
        for row in range(3):
            _cell_by_cell(sheet, formats, row, skip=1)
            sheet.write_url(row, 1, f"https://duban.example/office/file/{row}", formats["link"], string="附件.pdf")

    def rendered(book: Workbook, sheet: RowsSheet, formats: dict[str, Format]) -> None:
        for row in range(3):
            cells = _rendered(sheet, formats, row, skip=1)
            sheet.write_url(row, 1, f"https://duban.example/office/file/{row}", formats["link"], string="附件.pdf")
            sheet.put_row(row, cells)

    _compare(tmp_path, ordinary, rendered)


def test_row_heights_set_on_a_rendered_row_are_kept(tmp_path: Path) -> None:
    def ordinary(book: Workbook, sheet: Worksheet, formats: dict[str, Format]) -> None:
        sheet.set_row(2, 30)
        sheet.set_row(5, 18)  # a row with a height and no cells
        for row in range(4):
            _cell_by_cell(sheet, formats, row)

    def rendered(book: Workbook, sheet: RowsSheet, formats: dict[str, Format]) -> None:
        sheet.set_row(2, 30)
        sheet.set_row(5, 18)
        for row in range(4):
            sheet.put_row(row, _rendered(sheet, formats, row))

    _compare(tmp_path, ordinary, rendered)


def test_a_sheet_without_rendered_rows_is_xlsxwriters_own(tmp_path: Path) -> None:
    def ordinary(book: Workbook, sheet: Worksheet, formats: dict[str, Format]) -> None:
        sheet.merge_range(0, 0, 0, 3, "标题", formats["text"])
        _cell_by_cell(sheet, formats, 1)

    _compare(tmp_path, ordinary, ordinary)


def test_a_changed_default_row_height_is_kept_on_rendered_rows(tmp_path: Path) -> None:
    def ordinary(book: Workbook, sheet: Worksheet, formats: dict[str, Format]) -> None:
        sheet.set_default_row(20)
        for row in range(3):
            _cell_by_cell(sheet, formats, row)

    def rendered(book: Workbook, sheet: RowsSheet, formats: dict[str, Format]) -> None:
        sheet.set_default_row(20)
        for row in range(3):
            sheet.put_row(row, _rendered(sheet, formats, row))

    _compare(tmp_path, ordinary, rendered)
