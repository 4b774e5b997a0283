"""The notification (通报) and the year view as files: HTML, Markdown and XLSX.

HTML and Markdown come from the templates in ``messages/reports/``
(``notification.html``, ``notification.md.j2``, ``year.html``, ``year.md.j2``);
the spreadsheet is written with XlsxWriter, the rows of its tables rendered
as sheet XML here (:mod:`core.xlsx_rows`), its sheet names, headers, light
names and fills read from ``messages/reports/_report_labels.j2``, so that all
wording lives with the templates.  Every function takes either a
:class:`~core.notification.Notification` or a :class:`~core.notification.YearView`.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import tempfile
import unicodedata
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, tzinfo
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

import xlsxwriter
from sqlalchemy.orm import Session
from xlsxwriter.format import Format
from xlsxwriter.workbook import Workbook

from core.config import Settings
from core.notification import (
    FileRef,
    Notification,
    Tally,
    YearView,
    build_notification,
    build_year,
    round_stamp,
)
from core.xlsx_rows import (
    LONGEST_PLAIN_STRING,
    ColumnCells,
    RowsSheet,
    blank_cell,
    excel_serial,
    number_cell,
    string_cell,
)
from messages import Messages
from storage.models import Plan

FileFormat = Literal["html", "xlsx", "md"]
Files = Sequence[tuple[FileFormat, Path]]  # the files to write a view to: each format and its path
FILE_FORMATS: tuple[FileFormat, ...] = ("xlsx", "html", "md")
View = Notification | YearView
CellKind = Literal["text", "wrap", "int", "number", "pct", "days", "datetime", "light", "center"]
# Printed at the foot of every page of every sheet.
_FOOTER = "&C第 &P 页,共 &N 页"

LABELS_TEMPLATE = "_report_labels.j2"
_WRAP_MAX_WIDTH = 48
_DEFAULT_MAX_WIDTH = 36
_MEASURE = max(_WRAP_MAX_WIDTH, _DEFAULT_MAX_WIDTH)


def _labels(messages: Messages) -> Any:
    """The report labels module (dicts and text macros of ``_report_labels.j2``)."""
    return messages.env.get_template(LABELS_TEMPLATE).module


def _context(view: View, messages: Messages) -> dict[str, Any]:
    key = "n" if isinstance(view, Notification) else "y"
    return {key: view, "status": messages.labels("status")}


def render_html(view: View, messages: Messages) -> str:
    """One self-contained HTML document (inline CSS and SVG, print-ready on A4)."""
    name = "notification.html" if isinstance(view, Notification) else "year.html"
    return messages.render(name, **_context(view, messages)) + "\n"


def render_markdown(view: View, messages: Messages) -> str:
    """Markdown for pasting into a chat or a document."""
    name = "notification.md.j2" if isinstance(view, Notification) else "year.md.j2"
    return messages.render(name, **_context(view, messages)) + "\n"


# --- XLSX ----------------------------------------------------------------------------------


@lru_cache(maxsize=8192)
def display_width(text: str) -> int:
    """Columns a text takes in a spreadsheet: CJK and other wide characters count double.

    Cached: a notification repeats the same unit names, labels and dates
    thousands of times.
    """
    if text.isascii():
        return len(text)
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


@dataclass
class Cell:
    """A value and how to show it; a percentage with a ``light`` is filled with the light's colour."""

    value: Any
    kind: CellKind = "text"
    light: str | None = None
    url: str | None = None  # a link to follow (an attachment on the dashboard)


class _Formats:
    """The workbook's cell formats, created once per workbook, and the time zone its times are shown in."""

    def __init__(self, book: Workbook, labels: Any, tz: tzinfo) -> None:
        self.tz = tz
        base = {"border": 1, "border_color": "#BFBFBF", "valign": "top", "font_size": 10}
        self.header = book.add_format(
            {**base, "bold": True, "bg_color": "#E7E6E6", "valign": "vcenter", "align": "center", "text_wrap": True}
        )
        self.title = book.add_format({"bold": True, "font_size": 14, "align": "center", "valign": "vcenter"})
        self.link = book.add_format({**base, "text_wrap": True, "font_color": "#1D5FBF", "underline": 1})
        self.kinds: dict[str, Format] = {
            "text": book.add_format(base),
            "wrap": book.add_format({**base, "text_wrap": True}),
            "int": book.add_format({**base, "num_format": "0"}),
            "pct": book.add_format({**base, "num_format": "0.0%"}),
            "days": book.add_format({**base, "num_format": "0.0"}),
            "number": book.add_format({**base, "num_format": "General"}),
            "datetime": book.add_format({**base, "num_format": "yyyy-mm-dd hh:mm"}),
            "center": book.add_format({**base, "align": "center"}),
        }
        self.lights: dict[str, Format] = {
            code: book.add_format({**base, "align": "center", "bg_color": colour})
            for code, colour in labels.light_fill.items()
        }
        self.pct_lights: dict[str, Format] = {
            code: book.add_format({**base, "num_format": "0.0%", "bg_color": colour})
            for code, colour in labels.light_fill.items()
        }


@lru_cache(maxsize=16384)
def _shown_width(shown: str) -> int:
    """The width a shown text needs: its longest line, measured up to the widest cap.

    A column is never wider than its cap, and n characters are at least n
    columns wide: measuring the first _MEASURE characters of a line is enough.
    """
    if "\n" in shown:
        return max((display_width(line[:_MEASURE]) for line in shown.splitlines()), default=0)
    return display_width(shown[:_MEASURE])


_NUMBER_KINDS = frozenset(("int", "pct", "days", "number"))
_TEXT_KINDS = frozenset(("text", "wrap", "center"))


class _Table:
    """A sheet written as a table: header row(s), rows of typed cells, widths that fit CJK text."""

    def __init__(
        self,
        book: Workbook,
        formats: _Formats,
        labels: Any,
        name: str,
        header: Sequence[str],
        *,
        title: str,
        header_rows: int = 1,
        kinds: Sequence[CellKind] = (),
    ) -> None:
        """A title row over every column, then ``header`` (with ``header_rows=1`` written as one row).

        ``kinds`` are the columns' kinds for :meth:`rows` (plain values, one kind per column).
        """
        self.sheet: RowsSheet = book.add_worksheet(name, worksheet_class=RowsSheet)
        self._cells: dict[tuple[int, int], ColumnCells] = {}
        self.formats = formats
        self.labels = labels
        self.header_rows = header_rows
        self.columns = len(header)
        self.kinds: list[CellKind] = list(kinds) or ["text"] * self.columns
        self.widths = [display_width(h) for h in header]
        self.caps = [_DEFAULT_MAX_WIDTH] * len(header)
        self.top = 1  # the title row
        self.sheet.set_row(0, 24)
        if self.columns > 1:
            self.sheet.merge_range(0, 0, 0, self.columns - 1, title, formats.title)
        else:
            self.sheet.write_string(0, 0, title, formats.title)
        if header_rows == 1:
            for column, text in enumerate(header):
                self.sheet.write_string(self.top, column, text, formats.header)
        self.row = self.top + header_rows

    def add(self, cells: Sequence[Cell]) -> None:
        """One row of cells, each shown as its own kind."""
        self.rows((cells,))

    def rows(self, rows: Iterable[Sequence[Any]]) -> None:
        """Write rows of plain values, each shown as its column's kind; a :class:`Cell` value is shown as its own.

        Each row's cells are rendered here as sheet XML (:mod:`core.xlsx_rows`),
        the column's reference and style written once per sheet: a province
        county's detail sheet has ~20,000 cells, and XlsxWriter's work per cell
        was most of the time of the file.  A link goes through XlsxWriter.
        """
        sheet, formats, kinds = self.sheet, self.formats, self.kinds
        shared = sheet.str_table._get_shared_string_index
        fmts, plain, lights, light_cells = self._column_parts
        widths, tz = self.widths, formats.tz
        # Widths of numbers as shown, which are ASCII.
        pct_width = len("100.0%")
        stamp_width = len("yyyy-mm-dd hh:mm")
        row = self.row
        for values in rows:
            r = str(row + 1)
            xml: list[str | None] = []
            for column, value in enumerate(values):
                if type(value) is Cell:
                    xml.append(self._cell(row, r, column, value))
                    continue
                kind = kinds[column]
                if kind == "light":
                    text, width = lights[value]
                    xml.append(string_cell(light_cells[column][value], r, shared(text)))
                elif value is None or value == "":
                    xml.append(blank_cell(plain[column], r))
                    continue
                elif kind in _TEXT_KINDS:
                    shown = value if type(value) is str else str(value)
                    if len(shown) > LONGEST_PLAIN_STRING:
                        sheet.write_string(row, column, shown, fmts[column])  # truncated to Excel's limit
                        xml.append(None)
                    else:
                        xml.append(string_cell(plain[column], r, shared(shown)))
                    width = _shown_width(shown)
                elif kind == "datetime":
                    # Excel has no time zones: write the local wall-clock time.
                    local = value.astimezone(tz).replace(tzinfo=None) if value.tzinfo else value
                    xml.append(number_cell(plain[column], r, excel_serial(local)))
                    width = stamp_width
                elif kind == "pct":
                    xml.append(number_cell(plain[column], r, value))
                    width = pct_width
                elif kind == "int":
                    xml.append(number_cell(plain[column], r, value))
                    width = len(str(value))
                elif kind == "days":
                    xml.append(number_cell(plain[column], r, value))
                    width = len(f"{value:.1f}")
                else:  # number
                    xml.append(number_cell(plain[column], r, value))
                    width = len(f"{value:g}")
                if width > widths[column]:
                    widths[column] = width
            sheet.put_row(row, xml)
            row += 1
        if row > self.row:
            for column, kind in enumerate(kinds):
                if kind == "wrap":
                    self.caps[column] = _WRAP_MAX_WIDTH
        self.row = row

    @cached_property
    def _column_parts(
        self,
    ) -> tuple[list[Format], list[ColumnCells], dict[str, tuple[str, int]], list[dict[str, ColumnCells]]]:
        """Per column, once per table (:meth:`add` writes a row at a time): its kind's format and cells,
        and the light columns' cells per light; each light's text and width."""
        formats = self.formats
        fmts = [formats.kinds.get(kind, formats.kinds["text"]) for kind in self.kinds]
        plain = [self._column_cells(column, fmt) for column, fmt in enumerate(fmts)]
        lights = {code: (str(text), _shown_width(str(text))) for code, text in self.labels.light.items()}
        light_cells = [
            {code: self._column_cells(column, formats.lights[code]) for code in lights} if kind == "light" else {}
            for column, kind in enumerate(self.kinds)
        ]
        return fmts, plain, lights, light_cells

    def _column_cells(self, column: int, fmt: Format) -> ColumnCells:
        """The fixed parts of a column's cells in one format (its style index taken once)."""
        key = (column, id(fmt))
        cells = self._cells.get(key)
        if cells is None:
            cells = self._cells[key] = ColumnCells(column, fmt._get_xf_index())
        return cells

    def _cell(self, row: int, r: str, column: int, cell: Cell) -> str | None:
        """A cell shown as its own kind, as XML (None: a link, written through XlsxWriter)."""
        value, kind, formats = cell.value, cell.kind, self.formats
        fmt = formats.kinds.get(kind, formats.kinds["text"])
        shared = self.sheet.str_table._get_shared_string_index
        xml: str | None
        if cell.url and value:
            shown = str(value)
            self.sheet.write_url(row, column, cell.url, formats.link, string=shown)
            self.caps[column] = _WRAP_MAX_WIDTH
            xml = None
        elif kind == "light":
            shown = str(self.labels.light[value])
            xml = string_cell(self._column_cells(column, formats.lights[value]), r, shared(shown))
        elif value is None or value == "":
            shown = ""
            xml = blank_cell(self._column_cells(column, fmt), r)
        elif kind == "datetime":
            # Excel has no time zones: write the local wall-clock time.
            local = value.astimezone(formats.tz).replace(tzinfo=None) if value.tzinfo else value
            xml = number_cell(self._column_cells(column, fmt), r, excel_serial(local))
            shown = "yyyy-mm-dd hh:mm"
        elif kind == "pct" and cell.light is not None:
            xml = number_cell(self._column_cells(column, formats.pct_lights[cell.light]), r, value)
            shown = "100.0%"
        elif kind in _NUMBER_KINDS:
            xml = number_cell(self._column_cells(column, fmt), r, value)
            shown = {"int": str(value), "pct": "100.0%", "days": f"{value:.1f}", "number": f"{value:g}"}[kind]
        else:
            shown = str(value)
            if len(shown) > LONGEST_PLAIN_STRING:
                self.sheet.write_string(row, column, shown, fmt)  # truncated to Excel's limit
                xml = None
            else:
                xml = string_cell(self._column_cells(column, fmt), r, shared(shown))
        if kind == "wrap":
            self.caps[column] = _WRAP_MAX_WIDTH
        longest = _shown_width(shown)
        if longest > self.widths[column]:
            self.widths[column] = longest
        return xml

    def finish(self, *, freeze_columns: int = 0) -> None:
        sheet = self.sheet
        for column, width in enumerate(self.widths):
            sheet.set_column(column, column, min(width, self.caps[column]) + 2)
        header_end = self.top + self.header_rows - 1
        sheet.freeze_panes(header_end + 1, freeze_columns)
        last_row = max(self.row - 1, header_end)
        sheet.autofilter(header_end, 0, last_row, self.columns - 1)
        sheet.set_paper(9)  # A4
        sheet.set_landscape()
        sheet.fit_to_pages(1, 0)
        sheet.repeat_rows(0, header_end)  # the title and the column names on every printed page
        sheet.set_footer(_FOOTER)


def write_table_xlsx(
    path: Path, messages: Messages, sheet: str, title: str, header: Sequence[str], rows: Sequence[Sequence[Cell]]
) -> Path:
    """One sheet as a printable table (title row, A4 landscape, header repeated, filters): a list sent as a file."""
    labels = _labels(messages)
    book = xlsxwriter.Workbook(str(path), {"strings_to_numbers": False, "strings_to_formulas": False})
    try:
        table = _Table(book, _Formats(book, labels, messages.tz), labels, sheet, header, title=title)
        for cells in rows:
            table.add(cells)
        table.finish(freeze_columns=1)
    finally:
        book.close()
    return path


def _number(value: int | float | None) -> Cell:
    return Cell(value, "int")


def write_xlsx(view: View, path: Path, messages: Messages) -> None:
    """Write the workbook: 概况/任务/单位/通报单位/明细 for a notification, 概况/单位年度 for a year."""
    labels = _labels(messages)
    # Not constant_memory: with a shared string table each distinct text (unit names,
    # labels, titles, repeated on thousands of rows) is escaped and written once, not
    # inline in every cell -- about a fifth less time per province county's workbook,
    # for a few MB held until the file is closed (a county's ~23,000 cells).
    options = {"strings_to_numbers": False, "strings_to_formulas": False}
    book = xlsxwriter.Workbook(str(path), options)
    try:
        formats = _Formats(book, labels, messages.tz)
        if isinstance(view, Notification):
            _notification_sheets(book, formats, labels, view, messages)
        else:
            _year_sheets(book, formats, labels, view)
    finally:
        book.close()


def _notification_sheets(book: Workbook, formats: _Formats, labels: Any, n: Notification, messages: Messages) -> None:
    status = messages.labels("status")
    title = str(labels.title(n))
    s = n.summary
    rows = labels.summary_rows
    summary = _Table(book, formats, labels, labels.sheet["summary"], labels.summary_head, title=title)
    for key, cell in [
        ("title", Cell(str(labels.title(n)))),
        ("jurisdiction", Cell(n.jurisdiction)),
        ("plan", Cell(n.plan_name, "wrap")),
        ("checkpoint", Cell(f"{n.checkpoint_title}({n.checkpoint_key})")),
        ("due_at", Cell(n.due_at, "datetime")),
        ("generated_at", Cell(n.generated_at, "datetime")),
        ("tasks", _number(s.tasks)),
        ("units", _number(s.units)),
        ("owed", _number(s.owed)),
        ("on_time", _number(s.on_time)),
        ("late", _number(s.late)),
        ("missing", _number(s.missing)),
        ("returned", _number(s.returned)),
        ("pending", _number(s.pending)),
        ("accepted", _number(s.accepted)),
        ("rate", Cell(s.rate, "pct")),
    ]:
        summary.add([Cell(rows[key]), cell])
    summary.finish()

    # The big sheets are written as rows of plain values, each column of one kind (_Table.rows).
    task_kinds: list[CellKind] = [
        "text", "wrap", "wrap", "text", "text", "light", "light", "text", "wrap", "datetime", "center", "days", "wrap", "center",
    ]  # fmt: skip
    tasks = _Table(book, formats, labels, labels.sheet["tasks"], labels.task_head, title=title, kinds=task_kinds)
    outcome, yes_no, area_name = labels.outcome, labels.yes_no, labels.area_name
    areas: dict[tuple[str, str], str] = {}  # the area's name is the same for every task of the area

    def area(t: Any) -> str:
        key = (t.annex, t.area)
        if key not in areas:
            areas[key] = str(area_name(t))
        return areas[key]

    tasks.rows(
        (
            t.label,
            t.title,
            area(t),
            "、".join(lead.unit for lead in leads),
            "\n".join(_lead_outcome(labels, lead.outcome, lead.accepted) for lead in leads),
            t.light,
            t.pace_light,
            "\n".join(status.get(lead.status, lead.status) for lead in leads if lead.status),
            "\n".join(lead.note for lead in leads if lead.note),
            leads[0].reported_at if len(leads) == 1 else None,
            yes_no[leads[0].on_time] if len(leads) == 1 else "",
            _days_late(leads[0].delay_days, leads[0].overdue_days) if len(leads) == 1 else None,
            "\n".join(lead.return_reason for lead in leads if lead.return_reason),
            t.responsible_progress if t.responsible_total else "—",
        )
        for t in n.tasks
        for leads in (t.leads,)
    )
    tasks.finish(freeze_columns=1)

    unit_kinds: list[CellKind] = [
        "int", "text", "int", "int", "int", "int", "int", "int", "int", "pct", "days", "light", "light",
    ]  # fmt: skip
    units = _Table(book, formats, labels, labels.sheet["units"], labels.unit_head, title=title, kinds=unit_kinds)
    units.rows(
        (
            u.rank,
            u.unit,
            u.owed,
            u.on_time,
            u.late,
            u.missing,
            u.returned,
            u.pending,
            u.accepted,
            Cell(u.rate, "pct", u.light),
            u.avg_delay_days,
            u.light,
            u.pace_light,
        )
        for u in n.units
    )
    units.finish(freeze_columns=2)

    named_kinds: list[CellKind] = ["text", "int", "pct", "int", "int", "int", "wrap", "text", "text", "text"]
    named = _Table(book, formats, labels, labels.sheet["named"], labels.named_head, title=title, kinds=named_kinds)
    reason_text = {
        r: f"{labels.reason[r]}{labels.pct(n.thresholds.name_below)}" if r == "rate_below" else str(labels.reason[r])
        for r in ("rate_below", "missing")
    }
    named.rows(
        (
            m.unit,
            m.rank,
            m.rate,
            m.missing,
            m.late,
            m.returned,
            ";".join(reason_text.get(r) or str(labels.reason[r]) for r in m.reasons),
            "、".join(m.missing_tasks),
            "、".join(m.late_tasks),
            "、".join(m.returned_tasks),
        )
        for m in n.named
    )
    named.finish(freeze_columns=1)

    item_kinds: list[CellKind] = [
        "text", "wrap", "text", "center", "text", "center", "datetime", "days", "text", "wrap", "wrap", "text", "int", "text",
    ]  # fmt: skip
    items = _Table(book, formats, labels, labels.sheet["items"], labels.item_head, title=title, kinds=item_kinds)
    role, flag = labels.role, labels.flag
    role_text = {key: str(role[key]) for key in ("lead", "responsible")}
    outcome_text = {key: str(outcome[key]) for key in ("on_time", "late", "missing", "pending", "returned")}
    items.rows(
        (
            i.task_label,
            i.title,
            i.unit,
            role_text.get(i.role) or str(role[i.role]),
            outcome_text.get(i.outcome) or str(outcome[i.outcome]),
            yes_no[i.accepted],
            i.answered_at,
            _days_late(i.delay_days, i.overdue_days),
            status.get(i.status, i.status) if i.status else "",
            i.note,
            i.return_reason,
            "、".join(flag[f] for f in i.flags),
            i.returns or None,
            _files_cell(i.files, i.report_id, n.dashboard_url) if i.files else "",
        )
        for i in n.items
    )
    items.finish(freeze_columns=1)

    target_kinds: list[CellKind] = [
        "text", "wrap", "wrap", "center", "text", "number", "center", "number", "pct", "pct", "center", "number", "center",
    ]  # fmt: skip
    targets = _Table(
        book, formats, labels, labels.sheet["targets"], labels.target_head, title=title, kinds=target_kinds
    )
    below = {(b.task_label, b.metric) for b in n.below_half} if n.mid_year else set()
    targets.rows(
        (
            line.task_label,
            line.title,
            line.metric,
            labels.target_kind[line.kind],
            line.lead,
            line.target,
            line.unit_of_measure,
            line.reported,
            Cell(line.done, "pct", line.light),
            line.expected,
            labels.pace[line.pace],
            line.change,
            "是" if (line.task_label, line.metric) in below else "",
        )
        for line in n.targets
    )
    targets.finish(freeze_columns=1)


def _files_cell(files: list[FileRef], report_id: int | None, dashboard_url: str) -> Cell:
    """The attachments' names, linked to the file on the dashboard (to the report when there are several)."""
    if not files:
        return Cell("")
    names = "\n".join(f.name for f in files)
    if not dashboard_url:
        return Cell(names, "wrap")
    target = f"/office/file/{files[0].id}" if len(files) == 1 else f"/office/report/{files[-1].report_id or report_id}"
    return Cell(names, "wrap", url=f"{dashboard_url}{target}")


def _days_late(delay_days: float | None, overdue_days: int | None) -> float | None:
    """How late, in days: the delay of a late answer, else how long a missing one is overdue."""
    return delay_days if delay_days is not None else overdue_days


def _lead_outcome(labels: Any, outcome: str, accepted: bool) -> str:
    text = str(labels.outcome[outcome])
    return f"{text}·已通过" if accepted else text


def _year_sheets(book: Workbook, formats: _Formats, labels: Any, y: YearView) -> None:
    title = str(labels.year_title(y))
    summary = _Table(book, formats, labels, labels.sheet["summary"], labels.year_summary_head, title=title)
    for checkpoint in y.checkpoints:
        _tally_row(summary, f"{checkpoint.title}({checkpoint.key})", checkpoint.due_at, checkpoint.tally)
    _tally_row(summary, str(labels.year_total), None, y.total)
    summary.finish(freeze_columns=1)

    head = list(labels.year_cell_head)
    fixed = list(labels.year_fixed_head)
    groups = [f"{c.title}({c.key})" for c in y.checkpoints] + [str(labels.year_total)]
    columns = [*fixed, *(h for _ in groups for h in head)]
    table = _Table(book, formats, labels, labels.sheet["year"], columns, title=title, header_rows=2)
    sheet = table.sheet
    # Two header rows under the title: each checkpoint over its columns, then the column names.
    top = table.top
    for column, text in enumerate(fixed):
        sheet.merge_range(top, column, top + 1, column, text, formats.header)
    for index, group in enumerate(groups):
        first = len(fixed) + index * len(head)
        sheet.merge_range(top, first, top, first + len(head) - 1, group, formats.header)
        for offset, text in enumerate(head):
            sheet.write_string(top + 1, first + offset, text, formats.header)
    for u in y.units:
        tallies = [*u.cells, u.total]
        table.add([_number(u.rank), Cell(u.unit), *(c for t in tallies for c in _tally_cells(t))])
    table.finish(freeze_columns=len(fixed))


def _tally_cells(tally: Tally | None) -> list[Cell]:
    if tally is None:
        return [Cell(None, "int") for _ in range(5)]
    return [
        _number(tally.owed),
        _number(tally.on_time),
        _number(tally.late),
        _number(tally.missing),
        Cell(tally.rate, "pct", tally.light),
    ]


def _tally_row(table: _Table, name: str, due_at: datetime | None, tally: Tally) -> None:
    table.add(
        [
            Cell(name),
            Cell(due_at, "datetime"),
            _number(tally.owed),
            _number(tally.on_time),
            _number(tally.late),
            _number(tally.missing),
            _number(tally.returned),
            _number(tally.pending),
            Cell(tally.rate, "pct", tally.light),
            Cell(tally.light, "light"),
        ]
    )


# --- export --------------------------------------------------------------------------------


def default_name(plan: Plan, checkpoint_key: str | None, fmt: FileFormat, year: int | None = None) -> str:
    """``通报-嘉鱼县-2024-q1.xlsx`` for a checkpoint, ``通报-嘉鱼县-2024-全年.xlsx`` for the year.

    The county is in the name: one service writes every county's files into
    one exports folder, and a file must stay what its queued message says.
    """
    county = plan.jurisdiction.name
    stem = f"通报-{county}-{checkpoint_key}" if checkpoint_key else f"通报-{county}-{year or plan.year}-全年"
    return f"{stem}.{fmt}"


def file_format(text: str) -> FileFormat:
    """``text`` as a file format; :class:`ValueError` when it is none of ``FILE_FORMATS``."""
    for fmt in FILE_FORMATS:
        if text == fmt:
            return fmt
    raise ValueError(f"unknown format {text!r}: use html, xlsx or md")


@contextmanager
def _collection_paused() -> Iterator[None]:
    """The cyclic garbage collector held off while one view is built or written.

    A county's view and its files are tens of thousands of small objects
    (rows, cells), none of them cyclic garbage, and the collector's passes
    over them took ~15% of building every county's 通报 (100 counties: 9.6–10.2
    → 8.5 s of the building process's CPU).  Reference counting still frees
    them; the collector runs again when the view is done.  It is resumed only
    if it was on (another thread pausing it meanwhile leaves it to that one).
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def build_view(
    session: Session,
    settings: Settings,
    plan: Plan,
    checkpoint_key: str | None,
    now: datetime,
    year: int | None = None,
) -> View:
    """The notification of ``checkpoint_key`` at ``now``, or with ``checkpoint_key=None`` the view of ``year``."""
    with _collection_paused():
        if checkpoint_key is None:
            return build_year(session, settings, plan, now, year)
        return build_notification(session, settings, plan, checkpoint_key, now)


def write_view(view: View, fmt: FileFormat, messages: Messages, target: Path) -> Path:
    """Write ``view`` as ``fmt`` to the file ``target``, atomically (a temporary name, then moved)."""
    fmt = file_format(fmt)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=f".{fmt}", dir=target.parent)
    os.close(handle)
    staged = Path(temporary)
    try:
        with _collection_paused():
            if fmt == "xlsx":
                write_xlsx(view, staged, messages)
            else:
                text = render_html(view, messages) if fmt == "html" else render_markdown(view, messages)
                staged.write_text(text, encoding="utf-8")
        os.replace(staged, target)
    finally:
        staged.unlink(missing_ok=True)
    return target


def write_files(view: View, files: Files, language: str, tz: ZoneInfo) -> list[Path]:
    """Write ``view`` to each of ``files``: what a :class:`FileWriter`'s process is handed.

    Everything comes as arguments (the view is plain data, pickled to the
    process); the templates are loaded once per process.
    """
    messages = _process_messages(language, tz)
    return [write_view(view, fmt, messages, target) for fmt, target in files]


@lru_cache(maxsize=4)
def _process_messages(language: str, tz: ZoneInfo) -> Messages:
    return Messages(language, tz)


def _ready() -> int:
    return os.getpid()


class FileWriter:
    """Writes views to files: in ``workers`` processes of its own, or with ``workers`` 0 or 1 in the caller.

    Writing a county's 通报 is CPU work independent of every other county's
    (XlsxWriter's per-cell work is most of it), so with several CPUs the files
    of many counties are written side by side while the caller builds the next
    views from the database (:func:`write_pipelined`).  The processes start on
    the first file (or :meth:`start`) and stop at :meth:`close`.  They are
    started by a fork server, not forked from the caller: the service runs
    threads, and forking a process with threads is unsafe.
    """

    def __init__(self, messages: Messages, workers: int = 0) -> None:
        self.messages = messages
        self.workers = workers if workers > 1 else 0
        self._pool: ProcessPoolExecutor | None = None

    @property
    def depth(self) -> int:
        """How many views may be handed over and not yet written: two per process (one written, one waiting)."""
        return 2 * self.workers

    def start(self) -> list[int]:
        """Start the processes now rather than at the first file; their process ids."""
        pool = self._processes()
        if pool is None:
            return []
        return sorted({future.result() for future in [pool.submit(_ready) for _ in range(self.workers)]})

    def submit(self, view: View, files: Files, *, here: bool = False) -> Future[list[Path]]:
        """Write ``view`` to ``files``; the future's result is their paths (or the error that stopped it).

        ``here``: in the caller even when there are processes (a single file is not worth starting them).
        """
        pool = None if here else self._processes()
        if pool is not None:
            return pool.submit(write_files, view, list(files), self.messages.language, self.messages.tz)
        written: Future[list[Path]] = Future()
        try:
            written.set_result([write_view(view, fmt, self.messages, target) for fmt, target in files])
        except Exception as exc:  # the caller learns it from the future, as from a process
            written.set_exception(exc)
        return written

    def process_ids(self) -> list[int]:
        """The process ids of the processes running now (for measuring them)."""
        pool = self._pool
        return sorted(getattr(pool, "_processes", None) or ()) if pool is not None else []

    def close(self) -> None:
        """Wait for the files being written, then stop the processes."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _processes(self) -> ProcessPoolExecutor | None:
        if self.workers and self._pool is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["core.documents"])  # each process starts with the writing code loaded
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
        return self._pool


Key = TypeVar("Key")


def write_pipelined(
    jobs: Iterable[tuple[Key, View, Files]], writer: FileWriter
) -> Iterator[tuple[Key, Future[list[Path]]]]:
    """Hand each job's view to ``writer``; yield each job's key with its written files, in order.

    ``jobs`` is consumed lazily: while the writer's processes write, the next
    views are built (by the caller's generator), up to ``writer.depth`` views
    in flight, which bounds the memory held.  In the caller (no processes) each
    job is written before the next view is built.
    """
    window: deque[tuple[Key, Future[list[Path]]]] = deque()
    for key, view, files in jobs:
        window.append((key, writer.submit(view, files)))
        while len(window) > writer.depth:
            yield window.popleft()
    while window:
        yield window.popleft()


def export(
    session: Session,
    settings: Settings,
    messages: Messages,
    plan: Plan,
    checkpoint_key: str | None,
    fmt: FileFormat,
    now: datetime,
    path: Path | str | None = None,
    year: int | None = None,
) -> Path:
    """Build the notification (or, with ``checkpoint_key=None``, the view of ``year``) and write it.

    ``path`` may be a file, an existing directory (the default name is used in
    it) or None (the default name in the current directory).  Returns the path.
    """
    fmt = file_format(fmt)
    view = build_view(session, settings, plan, checkpoint_key, now, year)
    name = default_name(plan, checkpoint_key, fmt, year)
    target = Path(path) if path is not None else Path.cwd() / name
    if target.is_dir():
        target = target / name
    return write_view(view, fmt, messages, target)


# --- the round's 通报 as the quarter-end job wrote it --------------------------------------


def _stamp_file(path: Path) -> Path:
    """Beside the file, hidden: ``.通报-嘉鱼县-2024-q1.xlsx.stamp.json``."""
    return path.with_name(f".{path.name}.stamp.json")


def keep_stamp(path: Path, stamp: str | None) -> None:
    """Record beside ``path`` what the notification in it was built from (``stamp``, see :func:`round_stamp`).

    The quarter-end job calls this for the file it sends, with the stamp read
    when it built the notification, so that :func:`stored_notification` can
    serve that file again while nothing has changed.
    """
    if stamp is None:
        return
    written = path.stat()
    record = {"stamp": stamp, "size": written.st_size, "mtime_ns": written.st_mtime_ns}
    _stamp_file(path).write_text(json.dumps(record), encoding="utf-8")


def stored_notification(
    session: Session, settings: Settings, plan: Plan, checkpoint_key: str | None, fmt: FileFormat, folder: Path
) -> Path | None:
    """The XLSX the quarter-end job wrote for the round in ``folder``, if it still shows the round as it stands.

    None when there is no such file, it was rewritten since (size or time
    differ from its stamp), or anything the notification reads changed since
    it was written (:func:`round_stamp`): then the caller writes a fresh one.
    """
    if checkpoint_key is None or fmt != "xlsx":
        return None
    path = folder / default_name(plan, checkpoint_key, fmt)
    try:
        record = json.loads(_stamp_file(path).read_text(encoding="utf-8"))
        written = path.stat()
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or (record.get("size"), record.get("mtime_ns")) != (
        written.st_size,
        written.st_mtime_ns,
    ):
        return None
    if record.get("stamp") != round_stamp(session, settings, plan, checkpoint_key):
        return None
    return path
