"""The quarterly notification (通报): who answered a checkpoint on time, late or not at all.

Plain data, no rendering: :func:`build_notification` reads one checkpoint's
obligations at a moment ``now`` and returns a :class:`Notification`;
:func:`build_year` sets every unit's record across all live checkpoints side by
side (:class:`YearView`).  ``core.documents`` turns both into HTML, Markdown
and XLSX through the templates in ``messages/reports/``.

What counts: active obligations of active tasks on a checkpoint that is not
cancelled.  Every obligation has exactly one *outcome* at ``now``
(``due`` is the checkpoint's deadline):

- **on time** (``on_time``): answered or accepted, with ``answered_at <= due``
  (``answered_at`` is the *first* submission: an answer the office returned and
  the unit sent again keeps the timeliness of the first one, and the return is
  shown beside it);
- **late** (``late``): answered or accepted, with ``answered_at > due``;
- **returned** (``returned``): sent back by the office and not answered again;
- **missing** (``missing``): still owed and ``now >= due`` (a 通报 cut at the
  deadline itself counts what is still owed as missing);
- **pending** (``pending``): still owed and ``now < due`` (not yet due).

**Accepted** (state ``accepted``) is counted on top: an accepted answer is
also on time or late.  An obligation is *due* when ``now >= due``; the on-time
rate is ``on_time / due`` (``None`` while nothing is due).  The average delay
is the mean of ``answered_at - due`` in days over late answers.

Lights.  A unit: green when its rate is at least ``[report] green_at``,
yellow when at least ``yellow_at``, red below, ``none`` while nothing is due.
A task, from its lead unit(s): green when the lead answered on time or its
answer was accepted, yellow when the lead answered late or is not due yet,
red when the lead's answer is missing or was returned (the worst lead counts;
``none`` when the task has no lead in scope).

Ranking: by rate (highest first), then missing (fewest first), then name;
units equal in rate and missing share a rank (1, 2, 2, 4 …); units with
nothing due come last, unranked.  A unit is *named* in the notification when
its rate is below ``name_below``, or (with ``name_if_missing``) it has any
missing answer; the reasons are given as codes ``rate_below`` / ``missing``.

Status mix per task area (the subsection, else the section): the lead
obligations' standing status — the status of the latest report of an answered
or accepted obligation — with ``unreported`` for leads whose answer is
missing, pending or returned.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timedelta, tzinfo
from functools import cached_property
from typing import Any, Literal, Protocol, cast

from sqlalchemy import Table, bindparam, case, func, select
from sqlalchemy.orm import Session, selectinload

from core.answer_flags import COPY_THRESHOLD, is_copy, is_vague
from core.checkpoints import live_checkpoints
from core.config import ReportSettings, Settings
from core.notices import days_late
from core.plan_import import short_title
from core.progress import TargetProgress, below_half, pace_lights, round_progress
from core.reporting import StatusCode
from core.tasks import task_label
from storage.models import (
    Assignment,
    Attachment,
    Checkpoint,
    Jurisdiction,
    Milestone,
    Obligation,
    Plan,
    Review,
    StatusReport,
    Target,
    TargetValue,
    Task,
    Unit,
)

Light = Literal["green", "yellow", "red", "none"]
Outcome = Literal["on_time", "late", "missing", "pending", "returned"]

#: Order of the status-mix buckets (legend and stacking order).
STATUS_ORDER: tuple[str, ...] = (*(code.value for code in StatusCode), "unreported")
_LIGHT_RANK: dict[str, int] = {"none": 0, "green": 1, "yellow": 2, "red": 3}
_ANNEX_ORDER = {"county": 0, "city": 1}


# --- dataclasses ---------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON-ready: datetimes as ISO strings, tuples as lists, recursively."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class _AsDict:
    def as_dict(self) -> dict[str, Any]:
        """The dataclass as plain JSON-serialisable data."""
        return _plain(asdict(self))  # type: ignore[call-overload]


@dataclass(frozen=True)
class Tally(_AsDict):
    """Counts of outcomes over a set of obligations, with the on-time rate."""

    owed: int = 0
    on_time: int = 0
    late: int = 0
    missing: int = 0
    pending: int = 0
    returned: int = 0
    accepted: int = 0
    due: int = 0
    rate: float | None = None
    avg_delay_days: float | None = None
    light: Light = "none"


@dataclass(frozen=True)
class Summary(_AsDict):
    """The checkpoint as a whole."""

    tasks: int
    units: int
    owed: int
    on_time: int
    late: int
    missing: int
    pending: int
    returned: int
    accepted: int
    due: int
    rate: float | None


@dataclass(frozen=True)
class FileRef(_AsDict):
    """A file a unit sent with a report on an obligation (the refined plan is one)."""

    id: int
    name: str
    size: int
    report_id: int


@dataclass(frozen=True)
class ReturnHistory(_AsDict):
    """How often the office returned an obligation's answer, and its latest reason."""

    count: int = 0
    reason: str = ""
    at: datetime | None = None


@dataclass(frozen=True)
class Item(_AsDict):
    """One obligation (a unit's part in a task) and where it stands."""

    task_key: str
    task_label: str
    title: str
    area: str
    unit: str
    role: str
    state: str
    outcome: Outcome
    accepted: bool
    answered_at: datetime | None
    on_time: bool | None
    delay_days: float | None
    overdue_days: int | None
    status: str | None
    note: str
    reported_at: datetime | None
    return_reason: str
    # 空泛 (says nothing concrete) / 雷同 (repeats the unit's last-round note): shown, not punished.
    flags: tuple[str, ...] = ()
    report_id: int | None = None
    files: list[FileRef] = field(default_factory=list)
    returns: int = 0


@dataclass(frozen=True)
class Lead(_AsDict):
    """A task's lead unit and its answer."""

    unit: str
    state: str
    outcome: Outcome
    accepted: bool
    light: Light
    status: str | None
    note: str
    reported_at: datetime | None
    on_time: bool | None
    delay_days: float | None
    overdue_days: int | None
    return_reason: str
    flags: tuple[str, ...] = ()
    report_id: int | None = None
    files: list[FileRef] = field(default_factory=list)
    returns: int = 0


@dataclass(frozen=True)
class TaskRow(_AsDict):
    """One task of the checkpoint: its lead's answer and the responsible units' progress."""

    key: str
    annex: str
    number: int
    label: str
    title: str
    text: str
    section: str
    subsection: str
    area: str
    leads: list[Lead]
    light: Light
    responsible_answered: int
    responsible_total: int
    pace_light: Light = "none"

    @property
    def lead_units(self) -> str:
        return "、".join(lead.unit for lead in self.leads)

    @property
    def responsible_progress(self) -> str:
        return f"{self.responsible_answered}/{self.responsible_total}"


@dataclass(frozen=True)
class UnitRow(_AsDict):
    """A unit's scorecard for the checkpoint."""

    unit: str
    owed: int
    on_time: int
    late: int
    missing: int
    returned: int
    pending: int
    accepted: int
    due: int
    rate: float | None
    avg_delay_days: float | None
    rank: int | None
    light: Light
    missing_tasks: list[str] = field(default_factory=list)
    late_tasks: list[str] = field(default_factory=list)
    returned_tasks: list[str] = field(default_factory=list)
    pace_light: Light = "none"


@dataclass(frozen=True)
class NamedUnit(_AsDict):
    """A unit named in the notification, and why (``rate_below``, ``missing``)."""

    unit: str
    rank: int | None
    rate: float | None
    due: int
    on_time: int
    late: int
    missing: int
    returned: int
    reasons: list[str]
    missing_tasks: list[str]
    late_tasks: list[str]
    returned_tasks: list[str]


@dataclass(frozen=True)
class AreaMix(_AsDict):
    """The lead units' standing status over one task area, for the stacked bar chart."""

    area: str
    short: str
    annex: str
    tasks: int
    counts: dict[str, int]


@dataclass(frozen=True)
class TargetLine(_AsDict):
    """One target at the round (目标完成情况): the lead unit's figure against the time gone."""

    task_label: str
    title: str
    metric: str
    lead: str
    target: float
    unit_of_measure: str
    kind: str
    reported: float | None
    previous: float | None
    change: float | None
    done: float | None
    expected: float
    pace: str | None
    light: Light


@dataclass(frozen=True)
class Thresholds(_AsDict):
    green_at: float
    yellow_at: float
    name_below: float
    name_if_missing: bool
    pace_ahead: float = 1.1
    pace_behind: float = 0.9
    pace_far_behind: float = 0.6
    copy_at: float = COPY_THRESHOLD


@dataclass(frozen=True)
class Notification(_AsDict):
    """Everything a 通报 shows about one checkpoint at one moment (times in local time)."""

    jurisdiction: str
    plan_name: str
    year: int
    office: str
    checkpoint_key: str
    checkpoint_title: str
    owed_by: str
    due_at: datetime
    generated_at: datetime
    thresholds: Thresholds
    summary: Summary
    tasks: list[TaskRow]
    units: list[UnitRow]
    named: list[NamedUnit]
    areas: list[AreaMix]
    items: list[Item]
    status_order: list[str] = field(default_factory=lambda: list(STATUS_ORDER))
    targets: list[TargetLine] = field(default_factory=list)
    # The mid-year round carries the 时间过半、任务过半 check: the targets less than half done.
    mid_year: bool = False
    below_half: list[TargetLine] = field(default_factory=list)
    # where the office's dashboard is, for links to the files units sent ("" when unknown)
    dashboard_url: str = ""

    @cached_property
    def _items_by_unit(self) -> dict[str, list[Item]]:
        grouped: dict[str, list[Item]] = defaultdict(list)
        for item in self.items:
            grouped[item.unit].append(item)
        return dict(grouped)

    def items_of(self, unit: str) -> list[Item]:
        """The unit's obligations, in the order of ``items``.

        Indexed once: templates look up every listed unit, and filtering
        ``items`` per unit is quadratic at province scale.
        """
        return self._items_by_unit.get(unit, [])


@dataclass(frozen=True)
class YearCheckpoint(_AsDict):
    """A column of the year view: one live checkpoint and its overall figures."""

    key: str
    title: str
    due_at: datetime
    is_due: bool
    tally: Tally


@dataclass(frozen=True)
class YearUnitRow(_AsDict):
    """A unit's record: one cell per checkpoint (None where it owed nothing), and the total."""

    unit: str
    cells: list[Tally | None]
    total: Tally
    rank: int | None


@dataclass(frozen=True)
class YearView(_AsDict):
    """Every unit across all live checkpoints of the plan (``duban report --year``)."""

    jurisdiction: str
    plan_name: str
    year: int
    office: str
    generated_at: datetime
    thresholds: Thresholds
    checkpoints: list[YearCheckpoint]
    units: list[YearUnitRow]
    total: Tally


# --- classification ------------------------------------------------------------------------


class Answerable(Protocol):
    """What classification reads of an obligation: an ORM :class:`Obligation` or a plain row."""

    @property
    def state(self) -> str: ...

    @property
    def answered_at(self) -> datetime | None: ...


def outcome_of(obligation: Answerable, due_at: datetime, now: datetime) -> Outcome:
    """The one outcome of an obligation at ``now`` (see the module docstring)."""
    if obligation.state == "returned":
        return "returned"
    if obligation.state in ("answered", "accepted"):
        answered = obligation.answered_at
        return "on_time" if answered is not None and answered <= due_at else "late"
    # The cut-off is part of the round: at the deadline itself nothing is "not yet due" any more.
    return "missing" if now >= due_at else "pending"


def light_for_rate(rate: float | None, report: ReportSettings) -> Light:
    if rate is None:
        return "none"
    if rate >= report.green_at:
        return "green"
    if rate >= report.yellow_at:
        return "yellow"
    return "red"


def light_for_lead(outcome: Outcome, accepted: bool) -> Light:
    if accepted or outcome == "on_time":
        return "green"
    if outcome in ("late", "pending"):
        return "yellow"
    return "red"


def _delay_days(obligation: Answerable, due_at: datetime) -> float | None:
    if obligation.answered_at is None or obligation.answered_at <= due_at:
        return None
    return (obligation.answered_at - due_at) / timedelta(days=1)


def tally(entries: Iterable[tuple[Answerable, datetime]], now: datetime, report: ReportSettings) -> Tally:
    """Count outcomes over (obligation, its deadline) pairs."""
    counts: dict[str, int] = defaultdict(int)
    delays: list[float] = []
    owed = due = accepted = 0
    for obligation, due_at in entries:
        owed += 1
        outcome = outcome_of(obligation, due_at, now)
        counts[outcome] += 1
        due += now >= due_at
        accepted += obligation.state == "accepted"
        if outcome == "late":
            delay = _delay_days(obligation, due_at)
            if delay is not None:
                delays.append(delay)
    rate = counts["on_time"] / due if due else None
    return Tally(
        owed=owed,
        on_time=counts["on_time"],
        late=counts["late"],
        missing=counts["missing"],
        pending=counts["pending"],
        returned=counts["returned"],
        accepted=accepted,
        due=due,
        rate=rate,
        avg_delay_days=sum(delays) / len(delays) if delays else None,
        light=light_for_rate(rate, report),
    )


def _rank(keys: Sequence[tuple[float | None, int]]) -> list[int | None]:
    """Competition ranks over (rate, missing) in already sorted order; None for rate None."""
    ranks: list[int | None] = []
    previous: tuple[float | None, int] | None = None
    current = 0
    for position, key in enumerate(keys, start=1):
        if key[0] is None:
            ranks.append(None)
            continue
        if key != previous:
            current = position
            previous = key
        ranks.append(current)
    return ranks


def _order_key(name: str, rate: float | None, missing: int) -> tuple[int, float, int, str]:
    return (rate is None, -(rate or 0.0), missing, name)


def area_of(task: Task) -> str:
    return task.subsection or task.section


def short_area(area: str, limit: int = 14) -> str:
    """A chart label for an area: "(一)推动产业优化升级,积蓄…" → "推动产业优化升级"."""
    text = re.sub(r"^\s*(?:[一二三四五六七八九十]+、|[(（][一二三四五六七八九十\d]+[)）])", "", area)
    text = re.sub(r"^\d{4}年", "", text)
    text = re.split(r"[,,;;。]", text, maxsplit=1)[0].strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _task_order(task: Task | _TaskInfo) -> tuple[int, int]:
    return (_ANNEX_ORDER.get(task.annex, 9), task.number)


# --- queries -------------------------------------------------------------------------------


def _live_obligations(session: Session, checkpoint_ids: Sequence[int]) -> list[Obligation]:
    if not checkpoint_ids:
        return []
    return list(
        session.scalars(
            select(Obligation)
            .join(Task, Task.id == Obligation.task_id)
            # selectin, not joined: each task and unit is loaded once, not once per obligation.
            .options(selectinload(Obligation.task), selectinload(Obligation.unit))
            .where(
                Obligation.checkpoint_id.in_(list(checkpoint_ids)),
                Obligation.active.is_(True),
                Task.active.is_(True),
            )
            .order_by(Obligation.id)
        )
    )


def _returns(session: Session, checkpoint_id: int) -> dict[int, ReturnHistory]:
    """Every obligation of the round the office ever returned: how often, and the latest reason.

    The latest reason is kept after a resubmission.
    """
    history: dict[int, ReturnHistory] = {}
    rows = session.execute(
        select(Review.obligation_id, Review.reason, Review.at)
        .join(Obligation, Obligation.id == Review.obligation_id)
        .where(Obligation.checkpoint_id == checkpoint_id, Review.decision == "returned")
        .order_by(Review.at, Review.id)
    )
    for obligation_id, reason, at in rows:
        before = history.get(obligation_id, ReturnHistory())
        history[obligation_id] = ReturnHistory(before.count + 1, reason, at)
    return history


def _round_files(session: Session, checkpoint_id: int) -> dict[int, list[FileRef]]:
    """The files sent with any report on the round's obligations, oldest first, per obligation."""
    files: dict[int, list[FileRef]] = defaultdict(list)
    rows = session.execute(
        select(StatusReport.obligation_id, Attachment.id, Attachment.file_name, Attachment.size, Attachment.report_id)
        .join(Attachment, Attachment.report_id == StatusReport.id)
        .join(Obligation, Obligation.id == StatusReport.obligation_id)
        .where(Obligation.checkpoint_id == checkpoint_id)
        .order_by(Attachment.id)
    )
    for obligation_id, attachment_id, file_name, size, report_id in rows:
        if obligation_id is None:
            continue
        files[obligation_id].append(FileRef(attachment_id, file_name, size, report_id or 0))
    return files


def _checkpoint(session: Session, plan: Plan, key: str) -> Checkpoint:
    checkpoint = session.scalar(
        select(Checkpoint).where(
            Checkpoint.plan_id == plan.id, Checkpoint.key == key, Checkpoint.cancelled_at.is_(None)
        )
    )
    if checkpoint is None:
        known = ", ".join(c.key for c in live_checkpoints(session, plan.id)) or "none"
        raise ValueError(
            f"unknown checkpoint {key!r} (not in plan {plan.year}, or cancelled); live checkpoints: {known}"
        )
    return checkpoint


def _jurisdiction(session: Session, plan: Plan) -> str:
    row = session.get(Jurisdiction, plan.jurisdiction_id)
    return row.name if row else ""


def _thresholds(report: ReportSettings) -> Thresholds:
    return Thresholds(
        report.green_at,
        report.yellow_at,
        report.name_below,
        report.name_if_missing,
        report.pace.ahead,
        report.pace.behind,
        report.pace.far_behind,
    )


# --- the notification ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _TaskInfo:
    """The columns of a task the notification shows (read as a plain row, not an ORM object)."""

    id: int
    annex: str
    number: int
    text: str
    section: str
    subsection: str

    @property
    def key(self) -> str:
        return f"{self.annex}-{self.number}"


@dataclass(slots=True)
class _Owed:
    """One live obligation of the round and its latest report, as one plain row."""

    id: int
    task_id: int
    unit_id: int
    role: str
    state: str
    answered_at: datetime | None
    report_id: int | None
    status: str | None
    note: str
    reported_at: datetime | None


# Built once, from the tables' columns: a Core statement's rows skip the ORM's loading layer, which
# took a quarter of the time over a province's thousands of obligations a round.
_OBLIGATIONS_TABLE = cast(Table, Obligation.__table__)
_REPORTS_TABLE = cast(Table, StatusReport.__table__)
_TASKS_TABLE = cast(Table, Task.__table__)
_ROUND_ROWS = (
    select(
        _OBLIGATIONS_TABLE.c.id,
        _OBLIGATIONS_TABLE.c.task_id,
        _OBLIGATIONS_TABLE.c.unit_id,
        _OBLIGATIONS_TABLE.c.role,
        _OBLIGATIONS_TABLE.c.state,
        _OBLIGATIONS_TABLE.c.answered_at,
        _REPORTS_TABLE.c.id,
        _REPORTS_TABLE.c.status,
        _REPORTS_TABLE.c.note,
        _REPORTS_TABLE.c.reported_at,
    )
    .join(_TASKS_TABLE, _TASKS_TABLE.c.id == _OBLIGATIONS_TABLE.c.task_id)
    .outerjoin(_REPORTS_TABLE, _REPORTS_TABLE.c.id == _OBLIGATIONS_TABLE.c.last_report_id)
    .where(
        _OBLIGATIONS_TABLE.c.checkpoint_id == bindparam("checkpoint_id"),
        _OBLIGATIONS_TABLE.c.active.is_(True),
        _TASKS_TABLE.c.active.is_(True),
    )
    .order_by(_OBLIGATIONS_TABLE.c.id)
)


def _round_rows(session: Session, checkpoint_id: int) -> list[_Owed]:
    """The round's live obligations with their latest report (``last_report_id``), in one query."""
    rows = session.execute(_ROUND_ROWS, {"checkpoint_id": checkpoint_id})
    # No report: no status, an empty note, no time (as an obligation without ``last_report_id`` shows).
    return [_Owed(*row[:8], row[8] if row[6] is not None else "", row[9]) for row in rows]


def _round_tasks(session: Session, task_ids: set[int]) -> dict[int, _TaskInfo]:
    if not task_ids:
        return {}
    rows = session.execute(
        select(Task.id, Task.annex, Task.number, Task.text, Task.section, Task.subsection).where(
            Task.id.in_(sorted(task_ids))
        )
    )
    return {row[0]: _TaskInfo(*row) for row in rows}


def _unit_names(session: Session, unit_ids: set[int]) -> dict[int, str]:
    if not unit_ids:
        return {}
    rows = session.execute(select(Unit.id, Unit.name).where(Unit.id.in_(sorted(unit_ids))))
    return {unit_id: name for unit_id, name in rows}


class _LocalTimes:
    """UTC → the office's zone, converted once per distinct moment (answers share their timestamps)."""

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz
        self.seen: dict[datetime, datetime] = {}

    def __call__(self, moment: datetime | None) -> datetime | None:
        if moment is None:
            return None
        local = self.seen.get(moment)
        if local is None:
            local = self.seen[moment] = moment.astimezone(self.tz)
        return local


def build_notification(
    session: Session, settings: Settings, plan: Plan, checkpoint_key: str, now: datetime
) -> Notification:
    """The notification of one checkpoint as it stands at ``now``.

    Raises :class:`ValueError` when the plan has no live checkpoint ``checkpoint_key``.

    Read as plain rows (one query for the obligations and their latest
    reports, one each for tasks, units, returns, files and earlier notes): a
    province county has thousands of obligations, and ORM objects cost more to
    build than the whole XLSX to write.
    """
    tz = settings.tz
    report = settings.report
    checkpoint = _checkpoint(session, plan, checkpoint_key)
    due_at = checkpoint.due_at
    obligations = _round_rows(session, checkpoint.id)
    task_info = _round_tasks(session, {o.task_id for o in obligations})
    unit_names = _unit_names(session, {o.unit_id for o in obligations})
    previous_notes = _previous_notes(session, checkpoint, bool(obligations))
    returns = _returns(session, checkpoint.id)
    files = _round_files(session, checkpoint.id)
    local = _LocalTimes(tz)
    # Constant over the round: how many days a missing answer is overdue at ``now``.
    overdue_now = days_late(due_at, now) or None

    items: list[Item] = []
    leads: dict[int, list[Lead]] = defaultdict(list)
    responsible: dict[int, list[_Owed]] = defaultdict(list)
    by_unit: dict[int, list[_Owed]] = defaultdict(list)
    unit_items: dict[int, list[Item]] = defaultdict(list)
    tasks: dict[int, _TaskInfo] = {}
    # Per task, not per obligation: a province county has ~50 obligations a task.
    derived: dict[int, tuple[str, str, str, tuple[int, int]]] = {
        task.id: (
            task_label(task.annex, task.number),
            short_title(task.text),
            task.subsection or task.section,
            _task_order(task),
        )
        for task in task_info.values()
    }
    ordered = sorted(obligations, key=lambda o: (derived[o.task_id][3], o.role != "lead", unit_names[o.unit_id]))
    for obligation in ordered:
        task = task_info[obligation.task_id]
        tasks[task.id] = task
        label, title, area, _ = derived[task.id]
        outcome = outcome_of(obligation, due_at, now)
        has_report = obligation.report_id is not None
        accepted = obligation.state == "accepted"
        on_time = None if outcome in ("missing", "pending", "returned") else outcome == "on_time"
        delay = _delay_days(obligation, due_at) if outcome == "late" else None
        overdue = overdue_now if outcome in ("missing", "returned") else None
        returned = returns.get(obligation.id)
        item = Item(
            task_key=task.key,
            task_label=label,
            title=title,
            area=area,
            unit=unit_names[obligation.unit_id],
            role=obligation.role,
            state=obligation.state,
            outcome=outcome,
            accepted=accepted,
            answered_at=local(obligation.answered_at),
            on_time=on_time,
            delay_days=delay,
            overdue_days=overdue,
            status=obligation.status,
            note=obligation.note,
            reported_at=local(obligation.reported_at),
            return_reason=returned.reason if returned else "",
            report_id=obligation.report_id,
            files=files.get(obligation.id, []),
            returns=returned.count if returned else 0,
            flags=_flags(obligation.note, previous_notes.get((obligation.unit_id, task.id))) if has_report else (),
        )
        items.append(item)
        by_unit[obligation.unit_id].append(obligation)
        unit_items[obligation.unit_id].append(item)
        if obligation.role == "lead":
            leads[task.id].append(
                Lead(
                    unit=item.unit,
                    state=item.state,
                    outcome=outcome,
                    accepted=accepted,
                    light=light_for_lead(outcome, accepted),
                    status=item.status,
                    note=item.note,
                    reported_at=item.reported_at,
                    on_time=on_time,
                    delay_days=delay,
                    overdue_days=overdue,
                    return_reason=item.return_reason,
                    flags=item.flags,
                    report_id=item.report_id,
                    files=item.files,
                    returns=item.returns,
                )
            )
        else:
            responsible[task.id].append(obligation)

    progress = round_progress(
        session,
        checkpoint,
        list(tasks),
        year=plan.year,
        thresholds=report.pace.thresholds(),
        tz=tz,
        cutoff=min(now, due_at),
    )
    task_pace, unit_pace = pace_lights(progress)
    task_rows = [
        replace(
            _task_row(task, leads.get(task.id, []), responsible.get(task.id, [])),
            pace_light=task_pace.get(task.id, "none"),
        )
        for task in sorted(tasks.values(), key=_task_order)
    ]
    unit_rows = [
        replace(row, pace_light=unit_pace.get(row.unit, "none"))
        for row in _unit_rows(by_unit, unit_names, unit_items, due_at, now, report)
    ]
    titles = {task.id: derived[task.id][1] for task in tasks.values()}
    halfway_short = set(below_half(progress))
    target_lines = [_target_line(p, titles[p.task_id]) for p in progress]
    whole = tally(((o, due_at) for o in obligations), now, report)
    summary = Summary(
        tasks=len(tasks),
        units=len(by_unit),
        owed=whole.owed,
        on_time=whole.on_time,
        late=whole.late,
        missing=whole.missing,
        pending=whole.pending,
        returned=whole.returned,
        accepted=whole.accepted,
        due=whole.due,
        rate=whole.rate,
    )
    return Notification(
        jurisdiction=_jurisdiction(session, plan),
        plan_name=plan.name,
        year=round_year(due_at, tz),
        office=settings.office.unit,
        checkpoint_key=checkpoint.key,
        checkpoint_title=checkpoint.title,
        owed_by=checkpoint.owed_by,
        due_at=due_at.astimezone(tz),
        generated_at=now.astimezone(tz),
        thresholds=_thresholds(report),
        summary=summary,
        tasks=task_rows,
        units=unit_rows,
        named=_named(unit_rows, report),
        areas=_areas(task_rows),
        items=items,
        targets=target_lines,
        mid_year=_is_mid_year(due_at.astimezone(tz).date()),
        below_half=[line for line, p in zip(target_lines, progress, strict=True) if p in halfway_short],
        dashboard_url=dashboard_url(settings),
    )


def _is_mid_year(due: date) -> bool:
    """The round that closes the first half (due in June or July) carries the 时间过半 check."""
    return due.month in (6, 7)


def _target_line(progress: TargetProgress, title: str) -> TargetLine:
    return TargetLine(
        task_label=progress.task,
        title=title,
        metric=progress.metric,
        lead=progress.lead,
        target=progress.target,
        unit_of_measure=progress.unit_of_measure,
        kind=progress.kind,
        reported=progress.reported,
        previous=progress.previous,
        change=progress.change,
        done=progress.done,
        expected=progress.expected,
        pace=progress.pace.name.lower() if progress.pace else None,
        light=progress.light,
    )


def _flags(note: str, previous_note: str | None) -> tuple[str, ...]:
    """The flags of a report's note: 空泛 (``vague``), 雷同 with the unit's earlier note (``copied``)."""
    flags = []
    if is_vague(note):
        flags.append("vague")
    if is_copy(note, previous_note):
        flags.append("copied")
    return tuple(flags)


def _previous_notes(session: Session, checkpoint: Checkpoint, any_owed: bool) -> dict[tuple[int, int], str]:
    """(unit, task) → the note of the unit's last report on the task in an earlier round."""
    earlier = session.scalar(
        select(Checkpoint.id)
        .where(
            Checkpoint.plan_id == checkpoint.plan_id,
            Checkpoint.cancelled_at.is_(None),
            Checkpoint.due_at < checkpoint.due_at,
            Checkpoint.satisfied_by == "status",
            Checkpoint.source != "milestone",
        )
        .order_by(Checkpoint.due_at.desc())
        .limit(1)
    )
    if earlier is None or not any_owed:
        return {}
    notes: dict[tuple[int, int], str] = {}
    rows = session.execute(
        select(StatusReport.unit_id, StatusReport.task_id, StatusReport.note)
        .where(StatusReport.checkpoint_id == earlier)
        .order_by(StatusReport.reported_at, StatusReport.id)
    )
    for unit_id, task_id, note in rows:
        notes[(unit_id, task_id)] = note
    return notes


def dashboard_url(settings: Settings) -> str:
    """The dashboard's address for links in documents: the configured public URL, else where it listens."""
    if settings.web.public_url:
        return settings.web.public_url.rstrip("/")
    host = settings.web.host if settings.web.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    return f"http://{host}:{settings.web.port}"


def _task_row(task: _TaskInfo, leads: list[Lead], responsible: list[_Owed]) -> TaskRow:
    light: Light = max((lead.light for lead in leads), key=_LIGHT_RANK.__getitem__, default="none")
    return TaskRow(
        key=task.key,
        annex=task.annex,
        number=task.number,
        label=task_label(task.annex, task.number),
        title=short_title(task.text),
        text=task.text,
        section=task.section,
        subsection=task.subsection,
        area=task.subsection or task.section,
        leads=leads,
        light=light,
        responsible_answered=sum(o.state in ("answered", "accepted") for o in responsible),
        responsible_total=len(responsible),
    )


def _unit_rows(
    by_unit: dict[int, list[_Owed]],
    names: dict[int, str],
    unit_items: dict[int, list[Item]],
    due_at: datetime,
    now: datetime,
    report: ReportSettings,
) -> list[UnitRow]:
    scored = []
    for unit_id, owned in by_unit.items():
        name = names[unit_id]
        scored.append((name, unit_id, tally(((o, due_at) for o in owned), now, report)))
    scored.sort(key=lambda s: _order_key(s[0], s[2].rate, s[2].missing))
    ranks = _rank([(s[2].rate, s[2].missing) for s in scored])
    rows = []
    for (name, unit_id, t), rank in zip(scored, ranks, strict=True):
        mine = unit_items[unit_id]
        rows.append(
            UnitRow(
                unit=name,
                owed=t.owed,
                on_time=t.on_time,
                late=t.late,
                missing=t.missing,
                returned=t.returned,
                pending=t.pending,
                accepted=t.accepted,
                due=t.due,
                rate=t.rate,
                avg_delay_days=t.avg_delay_days,
                rank=rank,
                light=t.light,
                missing_tasks=[i.task_label for i in mine if i.outcome == "missing"],
                late_tasks=[i.task_label for i in mine if i.outcome == "late"],
                returned_tasks=[i.task_label for i in mine if i.outcome == "returned"],
            )
        )
    return rows


def _named(rows: list[UnitRow], report: ReportSettings) -> list[NamedUnit]:
    """The units named, worst first: lowest rate, then most missing, then name."""
    named = []
    worst_first = sorted(rows, key=lambda r: (r.rate if r.rate is not None else 2.0, -r.missing, r.unit))
    for row in worst_first:
        reasons = []
        if row.rate is not None and row.rate < report.name_below:
            reasons.append("rate_below")
        if report.name_if_missing and row.missing > 0:
            reasons.append("missing")
        if reasons:
            named.append(
                NamedUnit(
                    unit=row.unit,
                    rank=row.rank,
                    rate=row.rate,
                    due=row.due,
                    on_time=row.on_time,
                    late=row.late,
                    missing=row.missing,
                    returned=row.returned,
                    reasons=reasons,
                    missing_tasks=list(row.missing_tasks),
                    late_tasks=list(row.late_tasks),
                    returned_tasks=list(row.returned_tasks),
                )
            )
    return named


def _areas(rows: list[TaskRow]) -> list[AreaMix]:
    order: dict[tuple[str, str], dict[str, int]] = {}
    counted: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        key = (row.annex, row.area)
        counts = order.setdefault(key, dict.fromkeys(STATUS_ORDER, 0))
        counted[key] += 1
        for lead in row.leads:
            standing = lead.state in ("answered", "accepted") and lead.status is not None
            counts[lead.status if standing and lead.status in counts else "unreported"] += 1
    return [
        AreaMix(area=area, short=short_area(area), annex=annex, tasks=counted[(annex, area)], counts=counts)
        for (annex, area), counts in order.items()
    ]


# --- the year --------------------------------------------------------------------------------


def round_year(due_at: datetime, tz: tzinfo) -> int:
    """The year a round belongs to: the year of its deadline, in the office's zone."""
    return due_at.astimezone(tz).year


def build_year(session: Session, settings: Settings, plan: Plan, now: datetime, year: int | None = None) -> YearView:
    """Each unit's record across the live checkpoints due in ``year`` (default: the plan's), side by side."""
    tz = settings.tz
    report = settings.report
    year = plan.year if year is None else year
    checkpoints = [c for c in live_checkpoints(session, plan.id) if round_year(c.due_at, tz) == year]
    index = {c.id: i for i, c in enumerate(checkpoints)}
    obligations = _live_obligations(session, list(index))
    per_unit: dict[int, list[list[Obligation]]] = {}
    names: dict[int, str] = {}
    per_checkpoint: list[list[Obligation]] = [[] for _ in checkpoints]
    for obligation in obligations:
        column = index[obligation.checkpoint_id]
        names[obligation.unit_id] = obligation.unit.name
        per_unit.setdefault(obligation.unit_id, [[] for _ in checkpoints])[column].append(obligation)
        per_checkpoint[column].append(obligation)

    columns = [
        YearCheckpoint(
            key=c.key,
            title=c.title,
            due_at=c.due_at.astimezone(tz),
            is_due=now >= c.due_at,
            tally=tally(((o, c.due_at) for o in per_checkpoint[i]), now, report),
        )
        for i, c in enumerate(checkpoints)
    ]
    scored = []
    for unit_id, cells in per_unit.items():
        row_cells: list[Tally | None] = [
            tally(((o, checkpoints[i].due_at) for o in owned), now, report) if owned else None
            for i, owned in enumerate(cells)
        ]
        total = tally(((o, checkpoints[i].due_at) for i, owned in enumerate(cells) for o in owned), now, report)
        scored.append((names[unit_id], row_cells, total))
    scored.sort(key=lambda s: _order_key(s[0], s[2].rate, s[2].missing))
    ranks = _rank([(s[2].rate, s[2].missing) for s in scored])
    units = [
        YearUnitRow(unit=name, cells=cells, total=total, rank=rank)
        for (name, cells, total), rank in zip(scored, ranks, strict=True)
    ]
    overall = tally(((o, checkpoints[index[o.checkpoint_id]].due_at) for o in obligations), now, report)
    return YearView(
        jurisdiction=_jurisdiction(session, plan),
        plan_name=plan.name,
        year=year,
        office=settings.office.unit,
        generated_at=now.astimezone(tz),
        thresholds=_thresholds(report),
        checkpoints=columns,
        units=units,
        total=overall,
    )


# --- what a round's 通报 is built from -------------------------------------------------------


def round_stamp(session: Session, settings: Settings, plan: Plan, checkpoint_key: str) -> str | None:
    """A digest of everything the round's 通报 reads but the moment it is cut; None for no such round.

    Two equal stamps mean the same answers, reviews, files, figures, tasks,
    units and settings, so a 通报 written at the first can stand for one asked
    for at the second (only ``generated_at`` and how long missing answers are
    overdue would differ).  A handful of aggregate queries over the round, far
    cheaper than building and writing the notification.
    """
    try:
        checkpoint = _checkpoint(session, plan, checkpoint_key)
    except ValueError:
        return None
    in_round = select(Obligation.id).where(Obligation.checkpoint_id == checkpoint.id).scalar_subquery()
    plan_tasks = select(Task.id).where(Task.plan_id == plan.id).scalar_subquery()
    plan_targets = select(Target.id).where(Target.task_id.in_(plan_tasks)).scalar_subquery()
    # Reports of this round and the earlier ones (a note is flagged 雷同 against the round before).
    so_far = (
        select(Obligation.id)
        .join(Checkpoint, Checkpoint.id == Obligation.checkpoint_id)
        .where(Checkpoint.plan_id == plan.id, Checkpoint.due_at <= checkpoint.due_at)
        .scalar_subquery()
    )

    def counted(model: Any, *where: Any, active: bool = False, updated: bool = False) -> tuple[Any, ...]:
        columns = [func.count(), func.max(model.id), func.sum(model.id)]
        if active:
            columns.append(func.sum(case((model.active.is_(True), model.id), else_=0)))
        if updated:
            columns.append(func.max(model.updated_at))
        return tuple(session.execute(select(*columns).where(*where)).one())

    parts: list[Any] = [
        (checkpoint.id, checkpoint.key, checkpoint.title, checkpoint.owed_by, checkpoint.due_at),
        (plan.id, plan.name, plan.year, _jurisdiction(session, plan)),
        (repr(settings.report), settings.office.unit, dashboard_url(settings), str(settings.tz)),
        sorted(
            tuple(row)
            for row in session.execute(
                select(
                    Obligation.state,
                    Obligation.active,
                    func.count(),
                    func.sum(Obligation.id),
                    func.sum(func.coalesce(Obligation.last_report_id, 0)),
                    func.count(Obligation.answered_at),
                    func.min(Obligation.answered_at),
                    func.max(Obligation.answered_at),
                    func.max(Obligation.updated_at),
                )
                .where(Obligation.checkpoint_id == checkpoint.id)
                .group_by(Obligation.state, Obligation.active)
            )
        ),
        counted(StatusReport, StatusReport.obligation_id.in_(so_far)),
        counted(Review, Review.obligation_id.in_(in_round)),
        tuple(
            session.execute(  # a join from the (few) attachments, not an IN over the round's reports
                select(func.count(), func.max(Attachment.id), func.sum(Attachment.id))
                .join(StatusReport, StatusReport.id == Attachment.report_id)
                .join(Obligation, Obligation.id == StatusReport.obligation_id)
                .where(Obligation.checkpoint_id == checkpoint.id)
            ).one()
        ),
        counted(Task, Task.plan_id == plan.id, active=True, updated=True),
        counted(Target, Target.task_id.in_(plan_tasks), active=True, updated=True),
        counted(TargetValue, TargetValue.target_id.in_(plan_targets)),
        counted(Milestone, Milestone.task_id.in_(plan_tasks), active=True),
        counted(Assignment, Assignment.task_id.in_(plan_tasks), active=True),
        list(
            session.execute(
                select(Unit.id, Unit.name)
                .where(Unit.id.in_(select(Obligation.unit_id).where(Obligation.checkpoint_id == checkpoint.id)))
                .order_by(Unit.id)
            )
        ),
        list(
            session.execute(
                select(Checkpoint.id, Checkpoint.due_at, Checkpoint.satisfied_by, Checkpoint.source)
                .where(Checkpoint.plan_id == plan.id, Checkpoint.cancelled_at.is_(None))
                .order_by(Checkpoint.id)
            )
        ),
    ]
    return hashlib.sha256(repr(parts).encode()).hexdigest()
