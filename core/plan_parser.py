"""Parse a responsibility-plan notice (责任分解方案) into tasks and unit assignments.

The genre: a notice with annexes; a task annex has section headings (一、 /
(一)), numbered tasks, and after each task a bracket naming its lead unit
(牵头单位) and responsible units (责任单位, in other offices' notices 配合单位);
a matrix annex lists the same assignments unit by unit in ``|``-separated rows.

Real documents are untidy, so the parser repairs what it safely can (a missing
closing bracket, a doubled label, commas for semicolons, a unit listed twice,
full-width punctuation) and reports each repair as a warning with its line
number.  What it cannot read is an error with its line number; the caller
imports nothing when there is any error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from core.plan_tables import MatrixTableRow, TaskRow
from core.units import ResolvedName, UnitDirectory, clean_name


class Annex(StrEnum):
    """Which report a task comes from: the county's own or the city's."""

    COUNTY = "county"
    CITY = "city"


class Role(StrEnum):
    """A unit's part in a task."""

    LEAD = "lead"
    RESPONSIBLE = "responsible"


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    """Something the parser could not read (error) or had to repair (warning)."""

    line: int
    severity: Severity
    reason: str
    excerpt: str = ""

    def __str__(self) -> str:
        tail = f": {self.excerpt}" if self.excerpt else ""
        return f"第{self.line}行 [{self.severity.value}] {self.reason}{tail}"


@dataclass
class ParsedTask:
    """One numbered task with its units, canonicalised through the directory."""

    annex: Annex
    number: int
    text: str
    line: int
    section: str = ""
    subsection: str = ""
    lead: list[str] = field(default_factory=list)
    responsible: list[str] = field(default_factory=list)
    # canonical unit -> group phrase it came from (absent for units named directly)
    via_group: dict[str, str] = field(default_factory=dict)
    # canonical unit -> alias written in brackets after it
    aliases: dict[str, str] = field(default_factory=dict)
    unresolved_groups: list[tuple[Role, str]] = field(default_factory=list)
    # every raw name as written, with its role, for reconciliation
    raw_names: list[tuple[Role, ResolvedName]] = field(default_factory=list)
    has_units: bool = False

    @property
    def key(self) -> tuple[Annex, int]:
        return (self.annex, self.number)

    def units(self) -> list[tuple[str, Role]]:
        """Every assigned unit with its role, leads first."""
        return [(u, Role.LEAD) for u in self.lead] + [(u, Role.RESPONSIBLE) for u in self.responsible]


@dataclass
class MatrixRow:
    """One row of the unit-by-unit matrix: the unit and its non-empty cells in order.

    The matrix's text collapses empty cells, so which column a cell belongs to
    is decided later, by reconciliation against the task annexes.
    """

    line: int
    raw_name: str
    unit: str
    cells: list[list[int]]
    # A matrix read as a real table: each cell's column header, so no column is guessed.
    labels: list[str] | None = None


@dataclass
class ParsedPlan:
    """Everything read from one notice."""

    title: str = ""
    issued_on: str | None = None
    year: int | None = None
    annex_titles: dict[Annex, str] = field(default_factory=dict)
    tasks: list[ParsedTask] = field(default_factory=list)
    matrix: list[MatrixRow] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity is Severity.WARNING]

    def tasks_in(self, annex: Annex) -> list[ParsedTask]:
        return [t for t in self.tasks if t.annex is annex]

    def task(self, annex: Annex, number: int) -> ParsedTask | None:
        for task in self.tasks:
            if task.annex is annex and task.number == number:
                return task
        return None


# --- patterns ----------------------------------------------------------------

_CN_NUM = "一二三四五六七八九十"
_ANNEX_HEADING = re.compile(r"^附件\s*(\d{1,2})\s*(?:[:：.．、]\s*(.*))?$")
_SECTION = re.compile(rf"^([{_CN_NUM}]+)、\s*(.*)$")
_SUBSECTION = re.compile(rf"^\(([{_CN_NUM}]+)\)\s*(.*)$")
_TASK = re.compile(r"^(\d{1,4})\s*[.、]\s*(.*)$")
_LABEL_NAMES = "牵头单位|责任单位|配合单位|协办单位|协同单位"
_LABEL = re.compile(rf"({_LABEL_NAMES})\s*:?")
_UNITS_OPEN = re.compile(rf"\(\s*(?=(?:{_LABEL_NAMES}))")
_UNITS_LINE = re.compile(rf"^\(?\s*(?:{_LABEL_NAMES})")
_ISSUED = re.compile(r"发文日期\s*:\s*(\d{4})-(\d{1,2})-(\d{1,2})")
_YEAR = re.compile(r"((?:19|20)\d{2})年")
_LIST_SEPARATORS = "、,;/"
_FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}


def normalise_text(text: str) -> str:
    """Fold full-width ASCII forms (：；，（）．１２) to half-width; leave CJK text alone.

    Only the full-width block U+FF01..U+FF5E and the ideographic space are
    folded (not NFKC, which would also rewrite Ⅳ to IV in task texts); the
    ideographic comma 、 and full stop 。 stay as they are.
    """
    return text.translate(_FULL_WIDTH).replace("\ufeff", "")


def split_unit_list(value: str) -> list[str]:
    """Split a unit list on 、 , ; / outside brackets."""
    items: list[str] = []
    depth = 0
    current: list[str] = []
    for char in value:
        if char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        if depth == 0 and char in _LIST_SEPARATORS:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return [clean for clean in (clean_name(i) for i in items) if clean]


def _classify_annex(title: str, order: int) -> Annex | None:
    """County or city, from the annex title; falls back to document order."""
    if re.search(r"[市省]\s*《", title) or "涉及" in title:
        return Annex.CITY
    if re.search(r"[县区]\s*《", title):
        return Annex.COUNTY
    return (Annex.COUNTY, Annex.CITY)[order] if order < 2 else None


class PlanReader:
    """Reads one notice fed piece by piece, in document order: text lines and table rows.

    ``feed_lines`` takes raw text lines (full-width punctuation is folded here);
    ``feed_task_row`` and ``feed_matrix_row`` take rows of tables read by
    :mod:`core.plan_tables`; ``finish`` returns the plan.
    """

    def __init__(self, directory: UnitDirectory) -> None:
        self.directory = directory
        self.plan = ParsedPlan()
        self.annex: Annex | None = None
        self.in_matrix = False
        self.task_annexes_seen = 0
        self.section = ""
        self.subsection = ""
        self.current: ParsedTask | None = None
        self.pending_annex_number: int | None = None
        self.seen_annex_heading = False
        self.header_lines: list[str] = []

    def problem(self, line: int, severity: Severity, reason: str, excerpt: str = "") -> None:
        self.plan.problems.append(Problem(line, severity, reason, excerpt[:60]))

    def begin_task_list(self) -> None:
        """Start reading tasks at once: for a notice with no annex headings, whose body is the task list."""
        self._enter_task_annex(0, "", 0)

    def feed_lines(self, lines: list[str], first_line: int = 1) -> None:
        """Read raw text lines; ``first_line`` is the document line number of ``lines[0]``."""
        for index, raw in enumerate(lines, start=first_line):
            line = normalise_text(raw).strip()
            if line:
                self._line(index, line)

    def feed_task_row(self, row: TaskRow) -> None:
        """Read one row of a task table as a task, with the same unit rules as text."""
        if self.annex is None and not self.in_matrix:
            self._enter_task_annex(row.line, "", self.task_annexes_seen)
        self._close_task()
        number = re.sub(r"\D", "", normalise_text(row.number))
        task_number = int(number) if number else len(self.plan.tasks_in(self.annex or Annex.COUNTY)) + 1
        self._start_task(row.line, task_number, normalise_text(row.text).strip())
        assert self.current is not None
        units = []
        if row.lead.strip():
            units.append("牵头单位:" + " ".join(row.lead.split()).replace(" ", "、"))
        if row.responsible.strip():
            units.append("责任单位:" + " ".join(row.responsible.split()).replace(" ", "、"))
        if units:
            self._read_units(self.current, normalise_text("(" + ";".join(units) + ")"), row.line)
        self._close_task()

    def feed_matrix_row(self, row: MatrixTableRow) -> None:
        """Read one row of a unit-by-unit matrix table; its columns are exact."""
        name = clean_name(normalise_text(row.unit))
        if not name:
            return
        self.plan.matrix.append(
            MatrixRow(
                line=row.line,
                raw_name=name,
                unit=self.directory.canonical(name),
                cells=[list(numbers) for numbers in row.columns.values()],
                labels=list(row.columns),
            )
        )

    def finish(self) -> ParsedPlan:
        """Close the last task and return everything read."""
        self._finish()
        return self.plan

    # --- per line ---------------------------------------------------------

    def _line(self, number: int, line: str) -> None:
        heading = _ANNEX_HEADING.match(line)
        if heading:
            self._close_task()
            self.seen_annex_heading = True
            title = (heading.group(2) or "").strip()
            if title:
                self._start_annex(number, int(heading.group(1)), title)
            else:
                self.pending_annex_number = int(heading.group(1))
            return
        if self.pending_annex_number is not None:
            self._start_annex(number, self.pending_annex_number, line)
            self.pending_annex_number = None
            return
        if self.in_matrix:
            self._matrix_line(number, line)
            return
        if self.annex is None:
            self.header_lines.append(line)
            return
        self._task_annex_line(number, line)

    def _start_annex(self, number: int, annex_number: int, title: str) -> None:
        if "|" in title or "明细表" in title or "对照表" in title or "清单表" in title:
            self.in_matrix = True
            self.annex = None
            return
        self.in_matrix = False
        self._enter_task_annex(number, title, self.task_annexes_seen)

    def _enter_task_annex(self, number: int, title: str, order: int) -> None:
        annex = _classify_annex(title, order)
        if annex is None or annex in self.plan.annex_titles:
            fallback = [a for a in Annex if a not in self.plan.annex_titles]
            if not fallback:
                self.problem(number, Severity.ERROR, "多于两个任务附件,无法区分县、市任务", title)
                self.annex = None
                return
            annex = fallback[0]
        self.task_annexes_seen += 1
        self.annex = annex
        self.plan.annex_titles[annex] = title
        self.section = ""
        self.subsection = ""

    def _task_annex_line(self, number: int, line: str) -> None:
        task = _TASK.match(line)
        if task:
            self._close_task()
            self._start_task(number, int(task.group(1)), task.group(2))
            return
        if _UNITS_LINE.match(line) and self.current is not None and not self.current.has_units:
            self._read_units(self.current, line if line.startswith("(") else f"({line})", number)
            return
        section = _SECTION.match(line)
        if section:
            self._close_task()
            self.section = line
            self.subsection = ""
            return
        subsection = _SUBSECTION.match(line)
        if subsection:
            self._close_task()
            self.subsection = line
            return
        if self.current is not None and not self.current.has_units:
            # A task's text continues on the next line; its units may follow.
            rest = self._split_units(self.current, line, number)
            self.current.text += rest
            return
        self.problem(number, Severity.ERROR, "无法识别的行(不是标题、任务或单位说明)", line)

    def _start_task(self, number: int, task_number: int, body: str) -> None:
        assert self.annex is not None
        task = ParsedTask(
            annex=self.annex,
            number=task_number,
            text="",
            line=number,
            section=self.section,
            subsection=self.subsection,
        )
        task.text = self._split_units(task, body, number)
        self.current = task

    def _split_units(self, task: ParsedTask, body: str, line: int) -> str:
        """Read the unit bracket off the end of a task line; return the task text."""
        opens = list(_UNITS_OPEN.finditer(body))
        if not opens:
            return body
        start = opens[-1].start()
        self._read_units(task, body[start:], line)
        return body[:start].rstrip(";,").strip()

    def _read_units(self, task: ParsedTask, bracket: str, line: int) -> None:
        inner = bracket[1:] if bracket.startswith("(") else bracket
        inner = inner.rstrip()
        if inner.endswith(")"):
            inner = inner[:-1]
        else:
            stripped = inner.rstrip("。.;,")
            if stripped.endswith(")"):
                inner = stripped[:-1]
            else:
                self.problem(line, Severity.WARNING, "单位说明缺少右括号,已按行尾结束处理", bracket)
        task.has_units = True
        labels = list(_LABEL.finditer(inner))
        values: dict[Role, list[str]] = {Role.LEAD: [], Role.RESPONSIBLE: []}
        previous_label: str | None = None
        for position, label in enumerate(labels):
            end = labels[position + 1].start() if position + 1 < len(labels) else len(inner)
            value = inner[label.end() : end].strip().strip(";,。").strip()
            role = Role.LEAD if label.group(1) == "牵头单位" else Role.RESPONSIBLE
            if not value:
                if previous_label == label.group(1) or (
                    position + 1 < len(labels) and labels[position + 1].group(1) == label.group(1)
                ):
                    self.problem(line, Severity.WARNING, f"标签“{label.group(1)}”重复,已合并", bracket)
                else:
                    self.problem(line, Severity.WARNING, f"“{label.group(1)}”后没有单位", bracket)
                previous_label = label.group(1)
                continue
            previous_label = label.group(1)
            values[role].extend(split_unit_list(value))
            separator = inner[label.end() : end].strip()
            if re.search(r",\s*$", separator) and position + 1 < len(labels):
                self.problem(line, Severity.WARNING, "标签之间用逗号而非分号分隔,已按分号处理", bracket)
        for role in (Role.LEAD, Role.RESPONSIBLE):
            for raw in values[role]:
                self._assign(task, role, raw, line)

    def _assign(self, task: ParsedTask, role: Role, raw: str, line: int) -> None:
        resolved = self.directory.resolve(raw, f"{task.annex.value}-{task.number}")
        task.raw_names.append((role, resolved))
        if resolved.unresolved_group:
            task.unresolved_groups.append((role, resolved.raw))
            self.problem(line, Severity.WARNING, f"群体称谓“{resolved.raw}”未在配置中展开,未分配到具体单位")
            return
        target = task.lead if role is Role.LEAD else task.responsible
        for unit in resolved.units:
            if unit in task.lead or unit in task.responsible:
                if resolved.group is None:
                    self.problem(line, Severity.WARNING, f"单位重复列出,已去重: {unit}")
                elif role is Role.LEAD and unit in task.responsible:
                    task.responsible.remove(unit)
                    target.append(unit)
                continue
            target.append(unit)
            if resolved.group is not None:
                task.via_group[unit] = resolved.group
        if resolved.alias and resolved.units:
            task.aliases[resolved.units[0]] = resolved.alias

    def _close_task(self) -> None:
        task = self.current
        if task is None:
            return
        self.current = None
        if not task.has_units:
            self.problem(task.line, Severity.ERROR, "任务没有牵头单位说明", f"{task.number}.{task.text}")
            return
        if not task.lead:
            self.problem(task.line, Severity.ERROR, "任务没有牵头单位", f"{task.number}.{task.text}")
            return
        # A unit named as lead is not also responsible (a group phrase may repeat it).
        task.responsible = [u for u in task.responsible if u not in task.lead]
        if not task.text:
            self.problem(task.line, Severity.ERROR, "任务没有内容", str(task.number))
            return
        if self.plan.task(task.annex, task.number) is not None:
            self.problem(task.line, Severity.ERROR, f"任务序号重复: {task.number}", task.text)
            return
        previous = self.plan.tasks_in(task.annex)
        if previous and task.number != previous[-1].number + 1:
            self.problem(
                task.line,
                Severity.WARNING,
                f"任务序号不连续: {previous[-1].number} 之后是 {task.number}",
            )
        self.plan.tasks.append(task)

    def _matrix_line(self, number: int, line: str) -> None:
        if "|" not in line:
            self.problem(number, Severity.WARNING, "明细表中无法识别的行,已跳过", line)
            return
        cells = [c.strip() for c in line.split("|")]
        if "承办单位" in cells[0] or any("牵头事项" in c or "责任事项" in c for c in cells):
            return
        name = clean_name(cells[0])
        if not name:
            self.problem(number, Severity.WARNING, "明细表行没有单位名称,已跳过", line)
            return
        numbers: list[list[int]] = []
        for cell in cells[1:]:
            if not cell:
                continue
            if re.search(r"[^\d、,;\s]", cell):
                self.problem(number, Severity.WARNING, "明细表单元格含有非序号内容,已忽略其中文字", cell)
            found = [int(n) for n in re.findall(r"\d+", cell)]
            if found:
                numbers.append(found)
        self.plan.matrix.append(
            MatrixRow(line=number, raw_name=name, unit=self.directory.canonical(name), cells=numbers)
        )

    def _finish(self) -> None:
        self._close_task()
        if self.pending_annex_number is not None:
            self.problem(0, Severity.ERROR, f"附件{self.pending_annex_number}没有内容")
        header = self.header_lines
        self.plan.title = header[0] if header else ""
        joined = "\n".join(header)
        issued = _ISSUED.search(joined)
        if issued:
            y, m, d = (int(g) for g in issued.groups())
            self.plan.issued_on = f"{y:04d}-{m:02d}-{d:02d}"
        year = _YEAR.search(self.plan.title) or _YEAR.search(joined)
        if year:
            self.plan.year = int(year.group(1))
        elif self.plan.issued_on:
            self.plan.year = int(self.plan.issued_on[:4])
        if not self.plan.tasks and not self.plan.errors:
            self.problem(0, Severity.ERROR, "文档中没有找到编号任务")


def parse_plan(text: str, directory: UnitDirectory) -> ParsedPlan:
    """Parse a notice's text; problems are collected on the result, never raised."""
    reader = PlanReader(directory)
    lines = text.splitlines()
    if not any(_ANNEX_HEADING.match(normalise_text(line).strip()) for line in lines):
        # A notice without annexes: the body itself is the task list.
        reader.begin_task_list()
    reader.feed_lines(lines)
    return reader.finish()
