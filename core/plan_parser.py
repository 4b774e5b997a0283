"""Parse a responsibility-plan notice (责任分解方案) into tasks and unit assignments.

The genre, as thousands of offices write it: a notice (title, addressees, body,
signature, date), then the task list — after ``附件1``, a bare ``附件`` or no
heading at all.  The list has headings and numbered items at any level
(``一、`` ``(一)`` ``1.`` ``1、`` ``(1)``); the *task level* is the level whose
items carry units, the levels above are headings, the levels below belong to
their task.  Units are written in a bracket with labels (``(牵头单位:…;责任单位:…)``),
on label lines under the task (``牵头单位:…`` then ``配合单位:…``), in State
Council phrasing (``(X牵头,Y、Z等按职责分工负责)``), or in table columns fed
as :class:`~core.plan_tables.TaskRow`.  A matrix annex lists the same
assignments unit by unit in ``|``-separated rows.

The reader buffers what it is fed and decides at :meth:`PlanReader.finish`,
because what a line is depends on the whole list (which level carries units,
whether numbering restarts per section, whether the notice says the first
listed unit leads).  Real documents are untidy, so repairs (a missing closing
bracket, a doubled label, commas for semicolons, a unit listed twice, a
shortened unit name) are located warnings; lines that are not tasks are listed
in ``unparsed`` for the preview, never errors.  An error means nothing usable
was found.
"""

from __future__ import annotations

import calendar
import itertools
import re
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from core.plan_tables import MatrixTableRow, TaskRow
from core.units import ResolvedName, UnitDirectory, clean_name, is_group_phrase


class Annex(StrEnum):
    """Which task list a task comes from: the office's own (first) or a second one (the city's)."""

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
    """Something the parser could not read (error), had to repair (warning) or left aside (unparsed)."""

    line: int
    severity: Severity
    reason: str
    excerpt: str = ""

    def __str__(self) -> str:
        tail = f": {self.excerpt}" if self.excerpt else ""
        return f"第{self.line}行 [{self.severity.value}] {self.reason}{tail}"


@dataclass
class ParsedTask:
    """One task with its units, canonicalised through the directory."""

    annex: Annex
    number: int  # the task's key within its annex: the number as written when unique, else its sequence
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
    label: str = ""  # the number as written: "12." "(三)" "（三）"
    span: tuple[int, int] = (0, 0)  # first and last document line
    source_text: str = ""  # the original lines, for the preview
    deadline: date | None = None
    deadline_text: str = ""  # the deadline's words as written ("2023年底前")
    # every group phrase with its role, whether or not the directory defines it
    groups: list[tuple[Role, str]] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # canonical unit -> scope note ("负责…")
    measures: str = ""
    leader: str = ""
    origin: str = ""  # "表1 第5行" for a table row

    @property
    def key(self) -> tuple[Annex, int]:
        return (self.annex, self.number)

    def units(self) -> list[tuple[str, Role]]:
        """Every assigned unit with its role, leads first."""
        return [(u, Role.LEAD) for u in self.lead] + [(u, Role.RESPONSIBLE) for u in self.responsible]


@dataclass
class MatrixRow:
    """One row of the unit-by-unit matrix: the unit and its cells in order.

    The matrix's text collapses empty cells, so which column a cell belongs to
    is decided later, by reconciliation against the task annexes; a matrix read
    as a real table keeps every column (empty ones as ``[]``).
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
    # lines that are not tasks, headings or units (prose, items without units): for the preview, not errors
    unparsed: list[Problem] = field(default_factory=list)
    first_listed_leads: bool = False  # the notice says the first listed unit leads

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

_CN_DIGITS = "零〇一二三四五六七八九十百两"
_ANNEX_HEADING = re.compile(rf"^附\s*件\s*(\d{{1,2}}|[{_CN_DIGITS}]{{1,3}})?\s*(?:[:.、]\s*(.*))?$")
_LEAD_LABELS = "牵头单位|牵头部门|主责单位|主办单位|牵头责任单位|牵头科室|牵头处室"
_RESPONSIBLE_LABELS = (
    "责任单位|责任部门|配合单位|配合部门|协办单位|协同单位|参与单位|参与部门|协助单位|协作单位|"
    "责任科室|配合科室|责任处室|配合处室"
)
_DEADLINE_LABELS = "完成时限|完成时间|完成期限|时间节点|时限要求|时间要求"
_LEADER_LABELS = "责任领导|分管领导|牵头领导|联系领导"
_UNIT_LABELS = f"{_LEAD_LABELS}|{_RESPONSIBLE_LABELS}"
_ANY_LABEL = f"{_UNIT_LABELS}|{_DEADLINE_LABELS}|{_LEADER_LABELS}"
_LABEL = re.compile(rf"({_ANY_LABEL})\s*:?")
_LABEL_LINE = re.compile(rf"^\(?\s*(?:{_ANY_LABEL})\s*(?::|\s|$)")
_LABEL_START = re.compile(rf"(?P<open>\(\s*)?(?P<label>{_ANY_LABEL})\s*(?P<colon>:)?")
_ISSUED = re.compile(r"发文日期\s*:\s*(\d{4})-(\d{1,2})-(\d{1,2})")
_SIGNED_DATE = re.compile(r"^(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日$")
_YEAR = re.compile(r"((?:19|20)\d{2})\s*年")
_FIRST_LEADS = re.compile(r"(第一|首位|首个|第1)[^。;\n]{0,12}(为|是|系)\s*牵头")
_LIST_SEPARATORS = "、,;/"
_FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_LEAD_PHRASE = re.compile(r"^(.*?)(?:共同牵头|牵头负责|牵头落实|牵头抓总|牵头)(?:负责|落实)?$")
_RESPONSIBLE_PHRASE = re.compile(
    r"^(.*?)(?:按职责分工负责|按职责分工落实|按职能职责负责|按照职责分工负责|按职责负责|按职责分工|分工负责|"
    r"共同负责|分别负责|负责落实|具体负责|配合|参与|协助|协同|负责)$"
)
_UNIT_SUFFIXES = (
    "局", "委", "办", "部", "厅", "中心", "院", "室", "社", "会", "所", "处", "队", "站", "联", "署",
    "公司", "集团", "银行", "行", "政府", "办事处", "街道", "镇", "乡", "区", "县", "市", "馆", "团", "校", "场", "段",
)  # fmt: skip
_PREFIXES = ("县", "区", "市", "省", "州", "旗")
_TITLE_ENDS = ("通知", "意见", "方案", "清单", "要点", "分工", "决定", "函", "办法")
_DEPARTMENT_TAILS = ("局", "委", "办", "中心", "院", "所", "站", "队", "会", "社", "部", "处", "室", "厅", "署")
_NOT_SHORTENED = ("县", "区", "市", "省", "州", "旗", "镇", "乡", "街道", "国", "中共", "团", "人民", "各")


def normalise_text(text: str) -> str:
    """Fold full-width ASCII forms (：；，（）．１２) to half-width; leave CJK text alone.

    Only the full-width block U+FF01..U+FF5E and the ideographic space are
    folded (not NFKC, which would also rewrite Ⅳ to IV in task texts); the
    ideographic comma 、 and full stop 。 stay as they are.  Each character maps
    to one character, so positions in the folded text are positions in the original.
    """
    return text.translate(_FULL_WIDTH).replace("\ufeff", "")


def cn_number(text: str) -> int | None:
    """一 → 1, 十七 → 17, 二十三 → 23, 一百零五 → 105; None when it is not a Chinese numeral."""
    values = {
        "零": 0,
        "〇": 0,
        "一": 1,
        "二": 2,
        "两": 2,
        "三": 3,
        "四": 4,
        "五": 5,
        "六": 6,
        "七": 7,
        "八": 8,
        "九": 9,
    }
    if not text or any(c not in values and c not in "十百" for c in text):
        return None
    total, digit = 0, 0
    for char in text:
        if char == "百":
            total += (digit or 1) * 100
            digit = 0
        elif char == "十":
            total += (digit or 1) * 10
            digit = 0
        else:
            digit = values[char]
    return total + digit


def split_unit_list(value: str, *, spaces: bool = True) -> list[str]:
    """Split a unit list on 、 , ; / outside brackets; in a table cell (``spaces``) whitespace separates too."""
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
    if spaces:
        items = [piece for item in items for piece in _join_broken_names(item.split())]
    return _name_the_generic([clean for clean in (clean_name(i) for i in items) if clean])


_GENERIC_MEMBERS = ("街道办事处", "街道", "乡人民政府", "镇人民政府", "乡镇人民政府", "管委会", "园区管委会")


def _name_the_generic(items: list[str]) -> list[str]:
    """``各镇人民政府、街道办事处``: a bare kind of body after a group phrase is that group too (各街道办事处)."""
    result: list[str] = []
    for item in items:
        if item in _GENERIC_MEMBERS and result and result[-1].startswith("各"):
            item = f"各{item}"
        result.append(item)
    return result


def _looks_complete(name: str) -> bool:
    bare = re.sub(r"\([^()]*\)$", "", name)
    return is_group_phrase(bare) or bare.endswith(_UNIT_SUFFIXES) or bare.endswith("等")


def _join_broken_names(pieces: list[str]) -> list[str]:
    """A line break inside a long name in a cell (县政务服务和大数据 / 管理局) does not separate units."""
    joined: list[str] = []
    for piece in pieces:
        if joined and not _looks_complete(joined[-1]) and not piece.startswith(_PREFIXES):
            joined[-1] += piece
        else:
            joined.append(piece)
    return joined


@dataclass(frozen=True)
class _Deadline:
    on: date | None
    words: str


def _month_end(year: int, month: int) -> date | None:
    if not 1 <= month <= 12:
        return None
    return date(year, month, calendar.monthrange(year, month)[1])


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


_QUARTER_END = {"一": 3, "1": 3, "二": 6, "2": 6, "三": 9, "3": 9, "四": 12, "4": 12}
_DEADLINE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("ymd", re.compile(r"(?:(\d{4})\s*年)?(\d{1,2})\s*月(\d{1,2})\s*日\s*(?:前|之前|以前)?")),
    ("ym", re.compile(r"(?:(\d{4})\s*年)?(\d{1,2})\s*月(?:份)?(?:底|末)?\s*(?:前|之前|以前)")),
    ("ym_end", re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月(?:份)?(?:底|末)")),
    ("year_end", re.compile(r"(\d{4})\s*年\s*(?:年)?(?:底|末)\s*(?:前|之前)?")),
    ("by_year", re.compile(r"(?:到|至|于)\s*(\d{4})\s*年(?!\s*\d{1,2}\s*月)")),
    ("year_before", re.compile(r"(\d{4})\s*年\s*(?:前|之前|以前)")),
    ("this_year_end", re.compile(r"(?<![\d年])(?:年底前|年底|年内)")),
    ("half", re.compile(r"(上半年|下半年)\s*(?:前|末|底)?")),
    ("quarter", re.compile(r"第?([一二三四1-4])\s*季度\s*(?:末|底)?\s*(?:前)?")),
)
_COLUMN_DATE = (
    re.compile(r"^(\d{4})\s*[.\-/]\s*(\d{1,2})(?:\s*[.\-/]\s*(\d{1,2}))?$"),
    re.compile(r"^(\d{4})\s*年\s*(\d{1,2})\s*月(?:份)?(?:(\d{1,2})\s*日)?"),
    re.compile(r"^(\d{4})\s*年$"),
)


def find_deadline(text: str, year: int | None, *, column: bool = False) -> _Deadline | None:
    """The task's deadline in ``text``: the latest dated phrase, with its words as written.

    ``year`` dates a phrase without one (``6月底前``).  A 完成时限 ``column``
    also accepts bare dates (``2024年6月``, ``2024.6.30``) and keeps undated
    words (``长期坚持``) with no date.
    """
    value = text.strip()
    if not value:
        return None
    if column:
        for pattern in _COLUMN_DATE:
            match = pattern.match(value)
            if match:
                groups = match.groups()
                y = int(groups[0])
                month = int(groups[1]) if len(groups) > 1 and groups[1] else 12
                day = groups[2] if len(groups) > 2 else None
                column_date = _safe_date(y, month, int(day)) if day else _month_end(y, month)
                return _Deadline(column_date, value)
    found: list[tuple[date | None, int, str]] = []
    for kind, pattern in _DEADLINE_PATTERNS:
        for match in pattern.finditer(value):
            words = match.group(0).strip()
            on: date | None = None
            if kind in ("ymd", "ym", "ym_end"):
                in_year = int(match.group(1)) if match.group(1) else year
                if in_year is not None:
                    month = int(match.group(2))
                    on = (
                        _safe_date(in_year, month, int(match.group(3))) if kind == "ymd" else _month_end(in_year, month)
                    )
            elif kind in ("year_end", "by_year", "year_before"):
                on = date(int(match.group(1)), 12, 31)
            elif kind == "this_year_end" and year is not None:
                on = date(year, 12, 31)
            elif kind == "half" and year is not None:
                on = date(year, 6, 30) if match.group(1) == "上半年" else date(year, 12, 31)
            elif kind == "quarter" and year is not None:
                on = _month_end(year, _QUARTER_END[match.group(1)])
            if on is not None and not 1990 <= on.year <= 2100:
                on = None
            if on is not None:
                found.append((on, match.start(), words))
    if not found:
        return _Deadline(None, value) if column else None
    # Overlapping matches (2023年6月底前 / 6月底前): the longest phrase at the latest date wins.
    on, _, words = max(found, key=lambda item: (item[0], len(item[2])))
    return _Deadline(on, value if column else words)


def _matching_close(text: str, start: int) -> int | None:
    """Index of the ``)`` closing the ``(`` at ``start``, or None."""
    depth = 0
    for index in range(start, len(text)):
        if text[index] == "(":
            depth += 1
        elif text[index] == ")":
            depth -= 1
            if depth == 0:
                return index
    return None


def _top_level_brackets(text: str) -> list[tuple[int, int]]:
    spans = []
    index = 0
    while index < len(text):
        if text[index] == "(":
            close = _matching_close(text, index)
            if close is None:
                break
            spans.append((index, close))
            index = close + 1
        else:
            index += 1
    return spans


# --- reading one item's units -------------------------------------------------


@dataclass
class _UnitSpec:
    """The units (and fields) one item names, before canonicalisation."""

    lead: list[str] = field(default_factory=list)
    responsible: list[str] = field(default_factory=list)
    deadline: str = ""
    leader: str = ""
    labelled: bool = False  # written with labels (牵头单位:) rather than phrases
    repairs: list[str] = field(default_factory=list)

    @property
    def any_units(self) -> bool:
        return bool(self.lead or self.responsible)


def _label_role(label: str) -> str:
    if re.fullmatch(_LEAD_LABELS, label):
        return "lead"
    if re.fullmatch(_RESPONSIBLE_LABELS, label):
        return "responsible"
    if re.fullmatch(_DEADLINE_LABELS, label):
        return "deadline"
    return "leader"


def _read_labelled(inner: str, spec: _UnitSpec) -> None:
    """Fields of ``牵头单位:A;责任单位:B、C;完成时限:…`` (the bracket already removed)."""
    labels = list(_LABEL.finditer(inner))
    previous: str | None = None
    for position, label in enumerate(labels):
        end = labels[position + 1].start() if position + 1 < len(labels) else len(inner)
        raw_value = inner[label.end() : end]
        value = raw_value.strip().strip(";,。").strip()
        name = label.group(1)
        if not value:
            following = labels[position + 1].group(1) if position + 1 < len(labels) else None
            if name in (previous, following):
                spec.repairs.append(f"标签“{name}”重复,已合并")
            elif _label_role(name) in ("lead", "responsible"):
                spec.repairs.append(f"“{name}”后没有单位")
            previous = name
            continue
        previous = name
        role = _label_role(name)
        if role == "deadline":
            spec.deadline = value
        elif role == "leader":
            spec.leader = value
        else:
            phrased = _read_phrases(value.replace("\n", "、")) if re.search(r"牵头|配合|参与|按职责", value) else None
            if phrased is not None:  # 责任单位:县发改局牵头,县财政局配合
                spec.lead.extend(phrased.lead)
                spec.responsible.extend(phrased.responsible)
            else:
                names = split_unit_list(value.replace("\n", "、"))
                (spec.lead if role == "lead" else spec.responsible).extend(names)
            if re.search(r",\s*$", raw_value.strip()) and position + 1 < len(labels):
                spec.repairs.append("标签之间用逗号而非分号分隔,已按分号处理")
    spec.labelled = True


def _read_phrases(inner: str) -> _UnitSpec | None:
    """State Council phrasing: ``X牵头,Y、Z等按职责分工负责`` / ``X牵头负责`` / ``Y、Z按职责分工负责``."""
    spec = _UnitSpec()
    for clause in re.split(r"[,;。]", inner):
        clause = clause.strip()
        if not clause:
            continue
        lead = _LEAD_PHRASE.match(clause)
        responsible = None if lead else _RESPONSIBLE_PHRASE.match(clause)
        match = lead or responsible
        if match is None:
            return None
        named = re.sub(r"^(由|请)", "", match.group(1))
        together = re.split(r"会同|联合", named, maxsplit=1)  # X会同Y负责: X leads, Y takes part
        names = split_unit_list(together[0])
        partners = split_unit_list(together[1]) if len(together) > 1 else []
        if not names or any(len(n) > 40 for n in [*names, *partners]):
            return None
        if partners:
            spec.lead.extend(names)
            spec.responsible.extend(partners)
        else:
            (spec.lead if lead else spec.responsible).extend(names)
    return spec if spec.any_units else None


def read_units(text: str) -> tuple[str, _UnitSpec | None]:
    """Split an item's text into its task text and the units it names (None when it names none).

    Label lines joined under the task start with a newline; the first label
    followed by ``:`` (or opening a bracket, or opening a line) starts the
    units; a bracket of State Council phrasing anywhere is read too.
    """
    for match in _LABEL_START.finditer(text):
        at_line_start = match.start() == 0 or text[match.start() - 1] == "\n"
        if not (match.group("open") or match.group("colon") or at_line_start):
            continue
        spec = _UnitSpec()
        start = match.start()
        if match.group("open"):
            close = _matching_close(text, start)
            if close is None:
                inner = text[start + 1 :].rstrip()
                stripped = inner.rstrip("。.;,")
                if stripped.endswith(")"):
                    inner = stripped[:-1]
                else:
                    spec.repairs.append("单位说明缺少右括号,已按行尾结束处理")
                after = ""
            else:
                inner = text[start + 1 : close]
                after = text[close + 1 :]
        else:
            inner, after = text[start:], ""
        _read_labelled(inner, spec)
        before = text[:start].strip().rstrip(";,").strip()
        after = after.strip()
        if re.sub(r"[\s。.;,]", "", after):
            before = f"{before}{after}"
        rest, more = _read_phrase_brackets(before)
        if more is not None:
            spec.lead[:0] = more.lead
            spec.responsible[:0] = more.responsible
        return rest.replace("\n", ""), spec
    rest, spec_or_none = _read_phrase_brackets(text)
    return rest.replace("\n", ""), spec_or_none


def _read_phrase_brackets(text: str) -> tuple[str, _UnitSpec | None]:
    found: _UnitSpec | None = None
    kept: list[str] = []
    position = 0
    for start, close in _top_level_brackets(text):
        spec = _read_phrases(text[start + 1 : close])
        if spec is None:
            continue
        kept.append(text[position:start])
        position = close + 1
        if found is None:
            found = spec
        else:
            found.lead.extend(spec.lead)
            found.responsible.extend(spec.responsible)
    if found is None:
        return text.strip(), None
    kept.append(text[position:])
    rest = "".join(kept).strip()
    return rest.rstrip(";,").strip(), found


def _classify_annex(title: str, order: int) -> Annex | None:
    """The office's own list first, a second (the city's report, ``涉及``) next."""
    if "涉及" in title or (re.search(r"[市省]\s*《", title) and order > 0):
        return Annex.CITY
    return (Annex.COUNTY, Annex.CITY)[order] if order < 2 else None


# --- the reader ---------------------------------------------------------------


@dataclass
class _Line:
    number: int
    text: str  # folded, stripped
    raw: str  # as written, stripped


# Numbering kinds, shallowest first.
_NUMBERING: tuple[tuple[int, re.Pattern[str]], ...] = (
    (0, re.compile(rf"^(第[{_CN_DIGITS}\d]+(?:部分|章|篇))\s*[、.:]?\s*(.*)$")),
    (1, re.compile(rf"^([{_CN_DIGITS}]{{1,3}})\s*[、.]\s*(.*)$")),
    (2, re.compile(rf"^\(\s*([{_CN_DIGITS}]{{1,3}})\s*\)\s*[、.]?\s*(.*)$")),
    (3, re.compile(r"^(\d{1,3})\s*(?:、|\.(?!\d)|\.(?=\d{4}\s*年))\s*(.*)$")),
    (4, re.compile(r"^\(\s*(\d{1,3})\s*\)\s*[、.]?\s*(.*)$")),
    (5, re.compile(r"^([①-⑳])\s*(.*)$")),
)


def _numbering(line: str) -> tuple[int, str, int | None, str] | None:
    """(kind, numeral as folded, value, rest) of a numbered line."""
    for kind, pattern in _NUMBERING:
        match = pattern.match(line)
        if match:
            numeral = match.group(1)
            if kind in (3, 4):
                value: int | None = int(numeral)
            elif kind == 5:
                value = ord(numeral) - ord("①") + 1
            elif kind == 0:
                inner = re.sub(r"^第|(部分|章|篇)$", "", numeral)
                value = int(inner) if inner.isdigit() else cn_number(inner)
            else:
                value = cn_number(numeral)
            if value is None:
                continue
            return kind, numeral, value, match.group(2)
    return None


@dataclass
class _Segment:
    """A numbered item with its continuation lines, a prose paragraph, or a table row."""

    kind: int | None  # numbering kind; None for prose and table rows
    value: int | None = None
    label: str = ""
    lines: list[_Line] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    row: TaskRow | None = None
    units: _UnitSpec | None = None
    body: str = ""

    def text(self) -> str:
        return "".join(self.parts)

    @property
    def first(self) -> int:
        return self.row.line if self.row else self.lines[0].number

    @property
    def last(self) -> int:
        return self.row.line if self.row else self.lines[-1].number


@dataclass
class _Region:
    """The part of the document under one annex heading (or before any)."""

    heading_line: int = 0
    title: str = ""
    annex_number: str | None = None
    lines: list[_Line] = field(default_factory=list)
    segments: list[_Segment] = field(default_factory=list)
    matrix: bool = False
    task_list: bool = False  # known to hold the task list (not the notice around it)


class PlanReader:
    """Reads one notice fed piece by piece, in document order: text lines and table rows.

    ``feed_lines`` takes raw text lines (full-width punctuation is folded here);
    ``feed_task_row`` and ``feed_matrix_row`` take rows of tables read by
    :mod:`core.plan_tables`; ``finish`` decides and returns the plan.
    """

    def __init__(self, directory: UnitDirectory) -> None:
        self.directory = directory
        self.plan = ParsedPlan()
        self.regions: list[_Region] = [_Region()]
        self.pending_title: _Region | None = None

    # --- feeding ------------------------------------------------------------

    def begin_task_list(self) -> None:
        """Say that what follows is the task list itself (a notice with no annex headings).

        The reader finds the list on its own; this only makes numbered items
        without units there listed as not understood rather than taken as the
        notice's body.
        """
        self.regions[-1].task_list = True

    def feed_lines(self, lines: list[str], first_line: int = 1) -> None:
        """Read raw text lines; ``first_line`` is the document line number of ``lines[0]``."""
        for number, raw in enumerate(lines, start=first_line):
            folded = normalise_text(raw).strip()
            if not folded:
                continue
            line = _Line(number, folded, raw.strip())
            heading = _ANNEX_HEADING.match(folded)
            if heading and not self._is_attachment_list(heading):
                region = _Region(heading_line=number, annex_number=heading.group(1) or "")
                region.title = (heading.group(2) or "").strip()
                self.regions.append(region)
                self.pending_title = None if region.title else region
                continue
            if self.pending_title is not None:
                self.pending_title.title = folded
                self.pending_title.heading_line = number
                self.pending_title = None
                continue
            region = self.regions[-1]
            region.lines.append(line)
            self._segment_line(region, line)

    def feed_task_row(self, row: TaskRow) -> None:
        """Read one row of a task table as a task, with the same unit rules as text."""
        self.pending_title = None
        self.regions[-1].segments.append(_Segment(kind=None, row=row))

    def feed_matrix_row(self, row: MatrixTableRow) -> None:
        """Read one row of a unit-by-unit matrix table; its columns are exact, empty ones kept."""
        name = clean_name(normalise_text(row.unit))
        if not name:
            return
        cells = [list(numbers) for numbers in row.columns.values()]
        self.plan.matrix.append(
            MatrixRow(
                line=row.line,
                raw_name=name,
                unit=self.directory.canonical(name),
                cells=cells,
                labels=list(row.columns),
            )
        )

    @staticmethod
    def _is_attachment_list(heading: re.Match[str]) -> bool:
        """``附件:1.xxx方案`` in the body lists the attachments; it does not start one."""
        title = (heading.group(2) or "").strip()
        return heading.group(1) is None and bool(re.match(r"^\d{1,2}\s*[.、]", title))

    # --- segmenting -----------------------------------------------------------

    def _segment_line(self, region: _Region, line: _Line) -> None:
        if "|" in line.text and (region.matrix or self._matrix_title(region.title) or _numbers_row(line.text)):
            region.matrix = region.matrix or self._matrix_title(region.title) or region.annex_number is not None
            if region.matrix:
                return
        current = region.segments[-1] if region.segments else None
        if _LABEL_LINE.match(line.text) and current is not None and current.row is None:
            current.lines.append(line)
            current.parts.append("\n" + line.text)
            return
        numbered = _numbering(line.text)
        if (
            numbered is not None
            and current is not None
            and current.kind is not None
            and not self._starts_item(current, numbered, region)
        ):
            numbered = None
        if numbered is not None:
            kind, _, value, rest = numbered
            label = line.raw[: len(line.text) - len(rest)].strip() if rest else line.raw
            region.segments.append(_Segment(kind=kind, value=value, label=label, lines=[line], parts=[rest]))
            return
        if current is None:
            region.segments.append(_Segment(kind=None, lines=[line], parts=[line.text]))
            return
        if current.row is None and (current.kind is None or not self._closed(current, line.text)):
            current.lines.append(line)
            current.parts.append(line.text)
            return
        region.segments.append(_Segment(kind=None, lines=[line], parts=[line.text]))

    @staticmethod
    def _matrix_title(title: str) -> bool:
        return "|" in title or any(word in title for word in ("明细表", "对照表", "清单表"))

    @staticmethod
    def _starts_item(current: _Segment, numbered: tuple[int, str, int | None, str], region: _Region) -> bool:
        """A numbered line after an unfinished line may be that line wrapped (…增长 / 3、4号线…)."""
        last = current.lines[-1].text if current.lines else ""
        if re.search(r"[。;!?):：:]$", last) or current.kind is None:
            return True
        kind, _, value, _ = numbered
        previous = next(
            (s.value for s in reversed(region.segments) if s.kind == kind and s.value is not None),
            None,
        )
        return value == 1 or previous is None or value == previous + 1

    @staticmethod
    def _closed(segment: _Segment, following: str) -> bool:
        """Whether an item's units are complete, so the unnumbered ``following`` line is prose, not its text."""
        text = segment.text()
        depth = 0
        for char in text:
            depth = depth + 1 if char == "(" else max(depth - 1, 0) if char == ")" else depth
        if depth and _LABEL_START.search(text):
            return False  # a unit bracket still open: the line wrapped inside it
        last = segment.lines[-1].text
        if _LABEL_LINE.match(last):
            value = _LABEL.sub("", last, count=1).strip()
            if not value or re.search(r"[、,;/]$", value):
                return False
            # A unit list wrapped by PDF/Word goes on with names, not with a sentence.
            return "。" in following or ("、" not in following and len(following) > 15)
        if not re.search(r"\)[。.;,]?$", last):
            return False
        _, spec = read_units(text)
        return spec is not None and spec.any_units

    # --- deciding -------------------------------------------------------------

    def finish(self) -> ParsedPlan:
        """Decide what every piece is and return the plan."""
        all_text = "\n".join(line.text for region in self.regions for line in region.lines)
        self.plan.first_listed_leads = bool(_FIRST_LEADS.search(all_text))
        self._read_header()
        if self.pending_title is not None:
            self.problem(self.pending_title.heading_line, Severity.WARNING, "附件标题之后没有内容")
        order = 0
        collected: dict[Annex, list[ParsedTask]] = {annex: [] for annex in Annex}
        for index, region in enumerate(self.regions):
            if region.matrix:
                self._read_matrix(region)
                continue
            header = index == 0 and len(self.regions) > 1 and not region.task_list
            tasks = self._read_region(region, header=header)
            if not tasks:
                if region.annex_number is not None and region.lines:
                    self.unparsed(region.heading_line, "附件中没有找到带单位说明的任务", region.title)
                continue
            annex = _classify_annex(region.title, order)
            if annex is None or collected[annex]:
                annex = next((a for a in Annex if not collected[a]), Annex.CITY)
                if collected[annex]:
                    self.problem(
                        region.heading_line, Severity.WARNING, "多于两个任务附件,已并入第二个附件", region.title
                    )
            order += 1
            self.plan.annex_titles.setdefault(annex, region.title)
            for task in tasks:
                task.annex = annex
            collected[annex].extend(tasks)
        for annex in Annex:
            self._number(collected[annex])
            self.plan.tasks.extend(collected[annex])
        if not self.plan.tasks:
            # Nothing usable: the numbered items that named no unit say why, each at its line.
            for item in self.plan.unparsed:
                if item.reason.startswith("编号条目"):
                    self.problem(item.line, Severity.ERROR, item.reason, item.excerpt)
            if not self.plan.errors:
                self.problem(0, Severity.ERROR, "文档中没有找到编号任务")
        return self.plan

    def problem(self, line: int, severity: Severity, reason: str, excerpt: str = "") -> None:
        self.plan.problems.append(Problem(line, severity, reason, excerpt[:60]))

    def unparsed(self, line: int, reason: str, excerpt: str = "") -> None:
        self.plan.unparsed.append(Problem(line, Severity.WARNING, reason, excerpt[:80]))

    def _read_header(self) -> None:
        header = self.regions[0].lines
        self.plan.title = header[0].text if header else (self.regions[1].title if len(self.regions) > 1 else "")
        if len(header) > 1 and not self.plan.title.endswith(_TITLE_ENDS) and header[1].text.endswith(_TITLE_ENDS):
            self.plan.title += header[1].text  # a title set on two lines (the issuer, then 关于…的通知)
        joined = "\n".join(line.text for line in header)
        issued = _ISSUED.search(joined)
        signed = next((m for m in (_SIGNED_DATE.match(line.text) for line in header) if m), None)
        for found in (issued, signed):
            if found is not None:
                y, m, d = (int(g) for g in found.groups())
                if _safe_date(y, m, d):
                    self.plan.issued_on = f"{y:04d}-{m:02d}-{d:02d}"
                    break
        year = _YEAR.search(self.plan.title) or next(
            (m for m in (_YEAR.search(r.title) for r in self.regions[1:]) if m), None
        )
        if year:
            self.plan.year = int(year.group(1))
        elif self.plan.issued_on:
            self.plan.year = int(self.plan.issued_on[:4])
        elif (found_year := _YEAR.search(joined)) is not None:
            self.plan.year = int(found_year.group(1))

    def _read_region(self, region: _Region, *, header: bool) -> list[ParsedTask]:
        """The tasks of one region: the level whose items carry units; headings above, details below."""
        for segment in region.segments:
            if segment.row is None:
                segment.body, segment.units = read_units(segment.text())
        carrying: dict[int, int] = {}
        for segment in region.segments:
            if segment.kind is not None and segment.units is not None and segment.units.any_units:
                carrying[segment.kind] = carrying.get(segment.kind, 0) + 1
        has_rows = any(s.row is not None for s in region.segments)
        if not carrying and not has_rows:
            kinds = [s.kind for s in region.segments if s.kind is not None]
            if kinds and not header:
                for segment in region.segments:
                    if segment.kind == max(kinds):
                        self.unparsed(
                            segment.first,
                            "编号条目没有牵头或责任单位,未作为任务导入",
                            f"{segment.label}{segment.text()}",
                        )
            return []
        task_kind = max(carrying, key=lambda k: (carrying[k], k)) if carrying else None
        # Levels above the task level are headings; with only table rows as tasks, every numbered line is.
        heading_kinds = sorted(
            {s.kind for s in region.segments if s.kind is not None and (task_kind is None or s.kind < task_kind)}
        )
        headings: dict[int, str] = {}
        tasks: list[ParsedTask] = []
        current: ParsedTask | None = None
        started = False
        for segment in region.segments:
            if segment.row is not None:
                current = self._row_task(segment.row, headings, heading_kinds)
                if current is not None:
                    tasks.append(current)
                started = True
                continue
            kind = segment.kind
            if kind is None:
                if started:
                    self.unparsed(segment.first, "正文段落,不是任务", segment.text())
                current = None
                continue
            started = True
            if task_kind is None or kind < task_kind:
                headings = {k: v for k, v in headings.items() if k < kind}
                headings[kind] = segment.lines[0].text
                current = None
            elif kind == task_kind:
                current = self._text_task(segment, headings, heading_kinds)
                if current is not None:
                    tasks.append(current)
            elif current is not None:
                self._append_detail(current, segment)
            else:
                self.unparsed(segment.first, "编号条目不属于任何任务", segment.text())
        for task in tasks:
            if not task.has_units:
                self.unparsed(task.line, "编号条目没有牵头或责任单位,未作为任务导入", task.source_text)
        return [task for task in tasks if task.has_units]

    def _sections(self, headings: dict[int, str], heading_kinds: list[int]) -> tuple[str, str]:
        levels = heading_kinds[-2:]
        if len(levels) == 2:
            return headings.get(levels[0], ""), headings.get(levels[1], "")
        if len(levels) == 1:
            return headings.get(levels[0], ""), ""
        return "", ""

    def _text_task(self, segment: _Segment, headings: dict[int, str], heading_kinds: list[int]) -> ParsedTask | None:
        spec = segment.units or _UnitSpec()
        source = "\n".join(line.raw for line in segment.lines)
        if not segment.body:
            self.unparsed(segment.first, "编号条目只有单位、没有任务内容,未作为任务导入", source)
            return None
        section, subsection = self._sections(headings, heading_kinds)
        task = ParsedTask(
            annex=Annex.COUNTY,
            number=segment.value or 0,
            text=segment.body,
            line=segment.first,
            section=section,
            subsection=subsection,
            label=segment.label,
            span=(segment.first, segment.last),
            source_text=source,
            leader=spec.leader,
        )
        for repair in spec.repairs:
            self.problem(segment.first, Severity.WARNING, repair, source)
        if spec.any_units:  # else its sub-items (1)(2)… may name them
            self._apply_units(task, spec, segment.first, spans=False)
        self._apply_deadline(task, spec.deadline, segment.body)
        return task

    def _append_detail(self, task: ParsedTask, segment: _Segment) -> None:
        """A sub-item (1)… of a task belongs to its text."""
        task.text += f"{normalise_text(segment.label)}{segment.body}"
        task.span = (task.span[0], segment.last)
        task.source_text += "\n" + "\n".join(line.raw for line in segment.lines)
        if segment.units is not None and segment.units.any_units:
            self._apply_units(task, segment.units, segment.first, spans=False)
        if not task.deadline_text:
            field_value = segment.units.deadline if segment.units is not None else ""
            self._apply_deadline(task, field_value, segment.body)

    def _row_task(self, row: TaskRow, headings: dict[int, str], heading_kinds: list[int]) -> ParsedTask | None:
        text = normalise_text(row.text).strip()
        lead_cell = normalise_text(row.lead).strip()
        responsible_cell = normalise_text(row.responsible).strip()
        body, spec = read_units(text)
        if lead_cell or responsible_cell:
            spec = _UnitSpec(
                lead=split_unit_list(lead_cell, spaces=True),
                responsible=split_unit_list(responsible_cell, spaces=True),
                labelled=True,
            )
            body = text
        excerpt = f"{row.where} {row.number} {row.text}".strip()
        if spec is None or not spec.any_units:
            if body:
                # A row with text and no units: a section row of the table.
                numbered = _numbering(body)
                if numbered is not None and (numbered[0] in heading_kinds or not heading_kinds):
                    headings.clear()
                    headings[numbered[0]] = body
                    heading_kinds[:] = [numbered[0]]
                self.unparsed(row.line, "表格行没有牵头或责任单位,未作为任务导入", excerpt)
            return None
        if not body:
            self.unparsed(row.line, "表格行没有任务内容,未作为任务导入", excerpt)
            return None
        section, subsection = self._sections(headings, heading_kinds)
        if row.group.strip():
            # A section column; the ledger writes a subsection on a second line.
            parts = [part.strip() for part in normalise_text(row.group).splitlines() if part.strip()]
            section, subsection = parts[0], " ".join(parts[1:])
        label = row.number.strip()
        folded_label = normalise_text(label)
        value: int | None = None
        if folded_label.isdigit():
            value = int(folded_label)
        elif (numbered := _numbering(folded_label + " x")) is not None:
            value = numbered[2]
        task = ParsedTask(
            annex=Annex.COUNTY,
            number=value or 0,
            text=body,
            line=row.line,
            section=section,
            subsection=subsection,
            label=label,
            span=(row.line, row.line),
            source_text=" | ".join(c for c in (row.number, row.text, row.lead, row.responsible, row.deadline) if c),
            measures=normalise_text(row.measures).strip(),
            leader=normalise_text(row.leader).strip() or spec.leader,
            origin=row.where,
        )
        self._apply_units(task, spec, row.line, spans=True)
        deadline_cell = normalise_text(row.deadline).strip()
        if deadline_cell:
            found = find_deadline(deadline_cell, self.plan.year, column=True)
            if found is not None:
                task.deadline, task.deadline_text = found.on, found.words
        else:
            self._apply_deadline(task, spec.deadline, body)
        return task

    def _apply_deadline(self, task: ParsedTask, field_value: str, text: str) -> None:
        found = (
            find_deadline(field_value, self.plan.year, column=True)
            if field_value
            else find_deadline(text, self.plan.year)
        )
        if found is not None:
            task.deadline, task.deadline_text = found.on, found.words

    # --- units ------------------------------------------------------------------

    def _apply_units(self, task: ParsedTask, spec: _UnitSpec, line: int, *, spans: bool) -> None:
        task.has_units = True
        leads = self._expand_prefixes(spec.lead, task, line)
        responsible = self._expand_prefixes(spec.responsible, task, line)
        if not leads and not task.lead and self.plan.first_listed_leads and responsible:
            leads, responsible = responsible[:1], responsible[1:]
        for raw in leads:
            self._assign(task, Role.LEAD, raw, line)
        for raw in responsible:
            self._assign(task, Role.RESPONSIBLE, raw, line)
        # A unit named as lead is not also responsible (a group phrase may repeat it).
        task.responsible = [u for u in task.responsible if u not in task.lead]

    def _expand_prefixes(self, names: list[str], task: ParsedTask, line: int) -> list[str]:
        """``区旅游文体局、经发局``: a name in a list without its jurisdiction's prefix takes its neighbour's."""
        result: list[str] = []
        prefix: str | None = None
        for raw in names:
            name = raw
            if name.endswith("等") and len(name) > 2:
                name = name[:-1]
            name = re.sub(r"等(单位|部门)$", "", name) or name
            bare = re.sub(r"\([^()]*\)$", "", name)
            starts = next((p for p in _PREFIXES if bare.startswith(p)), None)
            if starts is not None:
                prefix = starts
            elif (
                prefix is not None
                and bare.endswith(_DEPARTMENT_TAILS)
                and not any(word in bare for word in _NOT_SHORTENED)
                and not is_group_phrase(bare)
            ):
                name = prefix + name
                self.problem(line, Severity.WARNING, f"单位简称“{raw}”按同列单位补全为“{name}”", task.text[:30])
            result.append(name)
        return result

    def _assign(self, task: ParsedTask, role: Role, raw: str, line: int) -> None:
        note = ""
        bracket = re.match(r"^(?P<name>.+?)\((?P<inner>[^()]+)\)$", raw)
        if bracket and not is_group_phrase(bracket["name"]):
            inner = bracket["inner"].strip()
            if re.fullmatch(r"牵头(单位)?", inner):
                raw, role = bracket["name"], Role.LEAD
            elif not _is_unit_name(inner):
                raw, note = bracket["name"], inner
        resolved = self.directory.resolve(raw, f"{task.annex.value}-{task.number}")
        task.raw_names.append((role, resolved))
        if resolved.group is not None:
            task.groups.append((role, resolved.group))
        if resolved.unresolved_group:
            task.unresolved_groups.append((role, resolved.raw))
            return
        target = task.lead if role is Role.LEAD else task.responsible
        for unit in resolved.units:
            if unit in task.lead or unit in task.responsible:
                if resolved.group is None:
                    self.problem(line, Severity.WARNING, f"单位重复列出,已去重: {unit}")
                if role is Role.LEAD and unit in task.responsible:
                    task.responsible.remove(unit)
                    target.append(unit)
                continue
            target.append(unit)
            if resolved.group is not None:
                task.via_group[unit] = resolved.group
        if resolved.alias and resolved.units:
            task.aliases[resolved.units[0]] = resolved.alias
        if note and resolved.units:
            task.notes[resolved.units[0]] = note

    # --- numbering --------------------------------------------------------------

    def _number(self, tasks: list[ParsedTask]) -> None:
        """Keys: the numbers as written when they are unique, else the order of appearance."""
        numbers = [t.number for t in tasks]
        if tasks and (0 in numbers or len(set(numbers)) != len(numbers)):
            first_clash = next((t for i, t in enumerate(tasks) if t.number == 0 or t.number in numbers[:i]), tasks[0])
            self.problem(
                first_clash.line,
                Severity.WARNING,
                f"任务序号重复或按节重新开始,已按出现顺序编号为1–{len(tasks)}(原序号保留为标号)",
                first_clash.label,
            )
            for sequence, task in enumerate(tasks, start=1):
                task.number = sequence
            return
        for previous, task in itertools.pairwise(tasks):
            if task.number != previous.number + 1:
                self.problem(task.line, Severity.WARNING, f"任务序号不连续: {previous.number} 之后是 {task.number}")

    # --- matrix -----------------------------------------------------------------

    def _read_matrix(self, region: _Region) -> None:
        for line in region.lines:
            self._matrix_line(line.number, line.text)

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


def _numbers_row(line: str) -> bool:
    """A matrix row as text: a unit, then cells of task numbers (县发改局 | 1、3、7 | 12 |)."""
    cells = [c.strip() for c in line.split("|")[1:] if c.strip()]
    return bool(cells) and all(re.fullmatch(r"[\d、,;\s]+", c) for c in cells)


def _is_unit_name(text: str) -> bool:
    """A bracketed second name (县营商办) rather than a scope note (负责…)."""
    if re.search(r"负责|牵头|配合|含|包括|分管|职责|按|等|以及|方面|工作", text):
        return False
    return len(text) <= 20 and text.endswith(_UNIT_SUFFIXES)


def parse_plan(text: str, directory: UnitDirectory) -> ParsedPlan:
    """Parse a notice's text; problems are collected on the result, never raised."""
    reader = PlanReader(directory)
    reader.feed_lines(text.splitlines())
    return reader.finish()
