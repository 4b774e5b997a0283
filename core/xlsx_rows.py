"""A worksheet whose bulk rows arrive as ready sheet XML instead of one XlsxWriter call per cell.

XlsxWriter keeps every written cell as a tuple and renders it when the
workbook closes, through several calls a cell (the cell reference, a list of
attributes each escaped, a dispatch on the cell's class): ~5 µs a cell, and a
province county's 通报 has ~23,000 cells, 100 counties at a quarter's end.
:class:`RowsSheet` lets the caller hand over a whole row's ``<c>`` elements,
rendered once with the column's reference and style prefix built per sheet
(:func:`string_cell`, :func:`number_cell`, :func:`blank_cell`), and writes them
in place of XlsxWriter's per-cell rendering.  Everything else stays
XlsxWriter's: the shared string table (the caller takes indexes from
:attr:`~xlsxwriter.worksheet.Worksheet.str_table`), styles, merged cells,
links, widths, page setup, and any cell written the ordinary way, also in a
rendered row (the row's cells are then merged in column order).

The element forms are those of XlsxWriter 3.x's ``_write_cell`` (ECMA-376
Part 1, §18.3.1.4 ``c``): ``<c r="B7" s="3" t="s"><v>12</v></c>`` for a shared
string, ``<c r="B7" s="3"><v>1.5</v></c>`` for a number or a date, and
``<c r="B7" s="3"/>`` for a blank; ``tests/test_notification.py`` compares a
workbook written both ways cell by cell.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from xlsxwriter.utility import xl_col_to_name
from xlsxwriter.worksheet import Worksheet

# Excel's day 0 (1900 date system); serials after 28 February 1900 are one more,
# Excel treating 1900 as a leap year (as XlsxWriter's _datetime_to_excel_datetime does).
_EPOCH = datetime(1899, 12, 31)
# Longer strings go through XlsxWriter's write_string, which truncates them to
# Excel's 32,767 UTF-16 units; shorter ones cannot exceed it.
LONGEST_PLAIN_STRING = 32767 // 2


def excel_serial(local: datetime) -> float:
    """A naive local date-time as an Excel serial number (1900 date system)."""
    delta = local - _EPOCH
    serial = delta.days + (delta.seconds + delta.microseconds / 1e6) / 86400
    return serial + 1 if serial > 59 else serial


class ColumnCells:
    """The fixed parts of one column's ``<c>`` elements for one cell format (its xf index)."""

    __slots__ = ("blank_open", "number", "string")

    def __init__(self, column: int, xf_index: int) -> None:
        letter = xl_col_to_name(column)
        style = f' s="{xf_index}"' if xf_index else ""
        self.string = (f'<c r="{letter}', f'"{style} t="s"><v>')
        self.number = (f'<c r="{letter}', f'"{style}><v>')
        self.blank_open = (f'<c r="{letter}', f'"{style}/>')


def string_cell(cells: ColumnCells, row: str, index: int) -> str:
    """A shared-string cell: ``row`` is the 1-based row number as text, ``index`` the string's in the table."""
    head, tail = cells.string
    return f"{head}{row}{tail}{index}</v></c>"


def number_cell(cells: ColumnCells, row: str, number: Any) -> str:
    """A number cell, written with 16 significant digits as XlsxWriter writes it."""
    head, tail = cells.number
    return f"{head}{row}{tail}{number:.16G}</v></c>"


def blank_cell(cells: ColumnCells, row: str) -> str:
    """A cell with a format and no value (borders on an empty cell)."""
    head, tail = cells.blank_open
    return f"{head}{row}{tail}"


class RowsSheet(Worksheet):
    """A worksheet that also takes rows as rendered XML (see the module's docstring)."""

    def __init__(self) -> None:
        super().__init__()
        # Row number (0-based) -> its cells' XML from column 0, None where a cell was written the ordinary way.
        self.rendered: dict[int, list[str | None]] = {}

    def put_row(self, row: int, cells: list[str | None]) -> None:
        """Write a row's rendered cells, column 0 onwards; a None is a column written through XlsxWriter."""
        self.rendered[row] = cells
        self._check_dimensions(row, 0)
        self._check_dimensions(row, len(cells) - 1)

    def _calculate_spans(self) -> None:
        # As Worksheet._calculate_spans (the optional "spans" of each block of 16
        # rows), counting the rendered rows' columns as well.
        if not self.rendered:
            super()._calculate_spans()
            return
        spans: dict[int, str] = {}
        low: int | None = None
        high: int | None = None
        for row_num in range(self.dim_rowmin, self.dim_rowmax + 1):
            columns = list(self.table[row_num]) if row_num in self.table else []
            if row_num in self.comments:
                columns.extend(self.comments[row_num])
            if row_num in self.rendered:
                columns.extend((0, len(self.rendered[row_num]) - 1))
            if columns:
                low = min(columns) if low is None else min(low, *columns)
                high = max(columns) if high is None else max(high, *columns)
            if (row_num + 1) % 16 == 0 or row_num == self.dim_rowmax:
                if low is not None and high is not None:
                    spans[row_num // 16] = f"{low + 1}:{high + 1}"
                low = high = None
        self.row_spans = spans

    def _write_rows(self) -> None:
        if not self.rendered:
            super()._write_rows()
            return
        self._calculate_spans()
        write = self.fh.write
        # A row with no attributes of its own is just its number and span when rows keep
        # the default height and the file is not in Excel 2010 form (Worksheet._write_row).
        bare_rows = self.default_row_height == self.original_row_height and self.excel_version != 2010
        for row_num in range(self.dim_rowmin, self.dim_rowmax + 1):
            rendered = self.rendered.get(row_num)
            cells = self.table[row_num]
            if rendered is None and not cells and row_num not in self.row_info and row_num not in self.comments:
                continue
            span = self.row_spans.get(row_num // 16)
            info = self.row_info.get(row_num)
            if rendered is None and not cells:
                self._write_empty_row(row_num, span, info)
                continue
            if info is None and bare_rows:
                write(f'<row r="{row_num + 1}" spans="{span}">' if span else f'<row r="{row_num + 1}">')
            else:
                self._write_row(row_num, span, info)
            if rendered is None:
                for col_num in sorted(cells):
                    self._write_cell(row_num, col_num, cells[col_num])
            elif not cells:
                write("".join(filter(None, rendered)))
            else:
                for col_num in sorted({*range(len(rendered)), *cells}):
                    if col_num in cells:  # written the ordinary way: that cell wins
                        self._write_cell(row_num, col_num, cells[col_num])
                    elif col_num < len(rendered) and rendered[col_num] is not None:
                        write(rendered[col_num])
            self._xml_end_tag("row")
