"""The quarterly notification (通报): its figures, and the same figures in HTML, Markdown and XLSX.

The scenario narrows the calendar to seven small tasks of the bundled plan
(15 obligations of 10 units) and answers them through ``record_report`` and
``review`` at chosen times; every expected number below is counted by hand
from the table in :data:`ANSWERS`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from zipfile import ZipFile

import pytest
from openpyxl import load_workbook
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.checkpoints import add_adhoc_checkpoint
from core.clock import ManualClock
from core.config import CheckpointSettings, Settings
from core.documents import FileFormat, FileWriter, default_name, export, render_html, render_markdown, write_xlsx
from core.notification import Notification, YearView, build_notification, build_year
from core.reporting import StatusCode, latest_reviewable, record_report, review
from core.runtime import Runtime, current_plan
from core.tasks import parse_task_ref
from messages import Messages
from storage.models import Checkpoint, Plan, Task, Unit
from storage.queries import find_task, find_unit
from tests.conftest import local

GOLDEN = Path(__file__).parent / "golden" / "notification-2024-q1.md"
TASKS = ["county-19", "county-42", "county-48", "county-49", "county-56", "county-60", "city-7"]
DUE = local(2024, 3, 25, 18)
NOW = local(2024, 4, 1, 9)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The project's settings with the calendar narrowed to Q1 and Q2 over seven small tasks."""
    checkpoints = [
        CheckpointSettings(id="2024-q1", title="第一季度进展督办", due=datetime(2024, 3, 25, 18), tasks=TASKS),
        CheckpointSettings(id="2024-q2", title="第二季度进展督办", due=datetime(2024, 6, 25, 18), tasks=TASKS),
    ]
    return settings.model_copy(update={"checkpoints": checkpoints})


@dataclass(frozen=True)
class Answer:
    task: str
    unit: str
    at: datetime
    status: StatusCode = StatusCode.ON_TRACK
    note: str = ""


# Q1 (due 3-25 18:00).  Never answered: 县42 高铁岭镇人民政府 (责任), 县60 县教育局 (牵头).
ANSWERS = [
    Answer("县48", "县科经局", local(2024, 3, 18, 9), note="新对接光谷科创项目3个"),
    Answer("县48", "嘉鱼开发区管委会", local(2024, 3, 19, 10)),
    Answer("县19", "县民政局", local(2024, 3, 20, 10), note="一期主体工程已封顶"),
    Answer("县49", "县科经局", local(2024, 3, 21, 15), note="已摸排重点企业研发投入"),
    Answer("县19", "县卫健局", local(2024, 3, 22, 9)),
    Answer(
        "市7", "县卫健局", local(2024, 3, 22, 11), StatusCode.NEEDS_COORDINATION, "康养项目用地需县自然资源规划局协调"
    ),
    Answer("县56", "县科经局", local(2024, 3, 24, 16), StatusCode.DONE, "稳健医疗出口订单已落地"),
    Answer("县56", "县招商投资中心", local(2024, 3, 24, 17)),
    Answer("县42", "县城投公司", local(2024, 3, 25, 17, 30)),
    Answer("县60", "县城发集团", local(2024, 3, 25, 18)),  # exactly at the deadline: on time
    Answer("县48", "县招商投资中心", local(2024, 3, 26, 9)),  # 15 hours late
    Answer("县42", "县自然资源规划局", local(2024, 3, 27, 10), StatusCode.BEHIND, "范家山矿区修复方案待省厅批复"),
    Answer("县49", "嘉鱼开发区管委会", local(2024, 3, 28, 18)),  # 3 days late
]
ACCEPTED = ("县19", "县民政局", local(2024, 3, 26, 10))
RETURNED = ("县49", "县科经局", local(2024, 3, 26, 11), "未附研发投入统计数据,请补充后重新报送")


def set_clock(runtime: Runtime, moment: datetime) -> None:
    assert isinstance(runtime.clock, ManualClock)
    runtime.clock.set(moment)


def _task_and_unit(session: Session, plan: Plan, ref: str, unit_name: str) -> tuple[Task, Unit]:
    parsed = parse_task_ref(ref)
    assert parsed is not None, ref
    task = find_task(session, plan.id, parsed[0].value, parsed[1])
    unit = find_unit(session, plan.jurisdiction_id, unit_name)
    assert task is not None and unit is not None, (ref, unit_name)
    return task, unit


def answer(runtime: Runtime, item: Answer, checkpoint_key: str | None = None) -> None:
    """Record a unit's answer at ``item.at`` the way the conversation does."""
    set_clock(runtime, item.at)
    settings = runtime.settings
    with runtime.transaction() as session:
        plan = current_plan(session, settings)
        assert plan is not None
        task, unit = _task_and_unit(session, plan, item.task, item.unit)
        checkpoint_id = None
        if checkpoint_key is not None:
            checkpoint_id = session.scalar(
                select(Checkpoint.id).where(Checkpoint.plan_id == plan.id, Checkpoint.key == checkpoint_key)
            )
            assert checkpoint_id is not None, checkpoint_key
        recorded = record_report(
            session,
            task=task,
            unit=unit,
            person_id=None,
            status=item.status,
            note=item.note,
            files=[],
            platform="sandbox",
            platform_message_id=None,
            via="test",
            now=item.at,
            uploads_dir=settings.path(settings.uploads.dir),
            checkpoint_id=checkpoint_id,
        )
        assert recorded.obligation is not None


def decide(runtime: Runtime, ref: str, unit_name: str, at: datetime, decision: str, reason: str = "") -> None:
    set_clock(runtime, at)
    with runtime.transaction() as session:
        plan = current_plan(session, runtime.settings)
        assert plan is not None
        task, unit = _task_and_unit(session, plan, ref, unit_name)
        obligation = latest_reviewable(session, task.id, unit.id, decision)
        assert obligation is not None
        review(session, obligation, decision=decision, reason=reason, person_id=None, now=at, actor="督查室")


def play_q1(runtime: Runtime) -> None:
    for item in ANSWERS:
        answer(runtime, item)
    decide(runtime, *ACCEPTED, "accepted")
    ref, unit, at, reason = RETURNED
    decide(runtime, ref, unit, at, "returned", reason)
    set_clock(runtime, NOW)


@pytest.fixture
def played(runtime: Runtime) -> Runtime:
    play_q1(runtime)
    return runtime


@pytest.fixture
def messages(settings: Settings) -> Messages:
    return Messages("zh", settings.tz)


@pytest.fixture
def session(played: Runtime) -> Iterator[Session]:
    with played.transaction() as session:
        yield session


@pytest.fixture
def plan(session: Session, settings: Settings) -> Plan:
    found = current_plan(session, settings)
    assert found is not None
    return found


@pytest.fixture
def notification(session: Session, settings: Settings, plan: Plan) -> Notification:
    return build_notification(session, settings, plan, "2024-q1", NOW)


# --- the figures ---------------------------------------------------------------------------


def test_summary_counts_every_obligation_once_by_outcome(notification: Notification) -> None:
    s = notification.summary
    assert (s.tasks, s.units, s.owed) == (7, 10, 15)
    assert (s.on_time, s.late, s.missing, s.returned, s.pending) == (9, 3, 2, 1, 0)
    assert s.on_time + s.late + s.missing + s.returned + s.pending == s.owed
    assert s.accepted == 1
    assert s.due == 15
    assert s.rate == pytest.approx(9 / 15)


def test_an_answer_exactly_at_the_deadline_is_on_time(notification: Notification) -> None:
    item = next(i for i in notification.items if i.task_label == "县60" and i.unit == "县城发集团")
    assert item.outcome == "on_time"
    assert item.on_time is True


def test_a_returned_answer_is_neither_on_time_nor_missing(notification: Notification) -> None:
    item = next(i for i in notification.items if i.task_label == "县49" and i.unit == "县科经局")
    assert item.outcome == "returned"
    assert item.return_reason == RETURNED[3]
    assert item.status == "on_track"  # the report that was sent back
    assert item.overdue_days == 7  # 3-25 18:00 → 4-1 09:00, counting a started day


def test_an_accepted_answer_also_counts_as_on_time(notification: Notification) -> None:
    item = next(i for i in notification.items if i.task_label == "县19" and i.unit == "县民政局")
    assert item.accepted and item.outcome == "on_time"


def test_unit_scorecard_rates_rank_and_lights(notification: Notification) -> None:
    rows = {u.unit: u for u in notification.units}
    kejing = rows["县科经局"]
    assert (kejing.owed, kejing.on_time, kejing.returned, kejing.due) == (3, 2, 1, 3)
    assert kejing.rate == pytest.approx(2 / 3)
    assert kejing.light == "yellow"
    assert rows["县卫健局"].rate == 1 and rows["县卫健局"].light == "green"
    assert rows["嘉鱼开发区管委会"].avg_delay_days == pytest.approx(3.0)
    assert rows["县招商投资中心"].avg_delay_days == pytest.approx(15 / 24)
    assert rows["县自然资源规划局"].avg_delay_days == pytest.approx(1 + 16 / 24)
    assert rows["县教育局"].light == "red" and rows["县教育局"].missing == 1
    ordered = [(u.rank, u.unit) for u in notification.units]
    assert ordered == [
        (1, "县卫健局"),
        (1, "县城发集团"),
        (1, "县城投公司"),
        (1, "县民政局"),
        (5, "县科经局"),
        (6, "县招商投资中心"),
        (6, "嘉鱼开发区管委会"),
        (8, "县自然资源规划局"),
        (9, "县教育局"),
        (9, "高铁岭镇人民政府"),
    ]


def test_units_below_the_rate_or_with_missing_answers_are_named(notification: Notification) -> None:
    named = {u.unit: u.reasons for u in notification.named}
    assert named == {
        "嘉鱼开发区管委会": ["rate_below"],
        "县招商投资中心": ["rate_below"],
        "县自然资源规划局": ["rate_below"],
        "县教育局": ["rate_below", "missing"],
        "高铁岭镇人民政府": ["rate_below", "missing"],
    }
    assert next(u for u in notification.named if u.unit == "县教育局").missing_tasks == ["县60"]


def test_a_unit_with_missing_answers_is_named_even_above_the_rate(
    session: Session, settings: Settings, plan: Plan
) -> None:
    lenient = settings.model_copy(update={"report": settings.report.model_copy(update={"name_below": 0.0})})
    named = build_notification(session, lenient, plan, "2024-q1", NOW).named
    assert [(u.unit, u.reasons) for u in named] == [("县教育局", ["missing"]), ("高铁岭镇人民政府", ["missing"])]


def test_task_rows_carry_the_leads_answer_light_and_responsible_progress(notification: Notification) -> None:
    rows = {t.label: t for t in notification.tasks}
    assert [t.label for t in notification.tasks] == ["县19", "县42", "县48", "县49", "县56", "县60", "市7"]
    assert {label: t.light for label, t in rows.items()} == {
        "县19": "green",  # accepted
        "县42": "yellow",  # lead late
        "县48": "green",
        "县49": "red",  # lead returned
        "县56": "green",
        "县60": "red",  # lead missing
        "市7": "green",
    }
    r42 = rows["县42"]
    assert r42.lead_units == "县自然资源规划局"
    lead = r42.leads[0]
    assert (lead.status, lead.note, lead.on_time) == ("behind", "范家山矿区修复方案待省厅批复", False)
    assert lead.reported_at == local(2024, 3, 27, 10)
    assert r42.responsible_progress == "1/2"
    assert rows["市7"].responsible_total == 0
    assert r42.area == "(四)全力守护绿水青山,擦亮更加靓丽的生态底色。"


def test_status_mix_counts_each_areas_standing_lead_status(notification: Notification) -> None:
    mix = {(a.annex, a.short): {k: v for k, v in a.counts.items() if v} for a in notification.areas}
    assert mix == {
        ("county", "推动产业优化升级"): {"on_track": 1},  # 县19 accepted
        ("county", "全力守护绿水青山"): {"behind": 1},  # 县42 late but answered
        ("county", "加大改革创新力度"): {"on_track": 1, "done": 1, "unreported": 1},  # 48, 56, 49 returned
        ("county", "用心办好民生实事"): {"unreported": 1},  # 县60 missing
        ("city", ""): {"needs_coordination": 1},
    }


def test_before_the_deadline_unanswered_items_are_pending_and_no_rate_is_given(
    session: Session, settings: Settings, plan: Plan
) -> None:
    early = build_notification(session, settings, plan, "2024-q2", NOW)
    assert (early.summary.owed, early.summary.pending, early.summary.missing) == (15, 15, 0)
    assert early.summary.rate is None
    assert all(u.rate is None and u.rank is None and u.light == "none" for u in early.units)
    assert early.named == []
    assert {t.light for t in early.tasks} == {"yellow"}


def test_unknown_checkpoint_key_is_refused_with_the_known_ones(
    session: Session, settings: Settings, plan: Plan
) -> None:
    with pytest.raises(ValueError, match=r"unknown checkpoint 'q9'.*2024-q1, 2024-q2"):
        build_notification(session, settings, plan, "q9", NOW)


def test_as_dict_is_plain_json(notification: Notification) -> None:
    import json

    data = json.loads(json.dumps(notification.as_dict(), ensure_ascii=False))
    assert data["summary"]["missing"] == 2
    assert data["due_at"] == DUE.isoformat() == "2024-03-25T18:00:00+08:00"
    assert data["tasks"][0]["leads"][0]["unit"] == "县民政局"


def test_an_adhoc_round_over_one_task_is_reported_on_its_own(runtime: Runtime, settings: Settings) -> None:
    set_clock(runtime, local(2024, 4, 2, 9))
    with runtime.transaction() as session:
        plan = current_plan(session, settings)
        assert plan is not None
        add_adhoc_checkpoint(
            session,
            plan,
            key="special-1",
            title="专项督查",
            due_at=local(2024, 4, 5, 18),
            now=local(2024, 4, 2, 9),
            tasks=["county-60"],
            actor="督查室",
        )
    answer(runtime, Answer("县60", "县城发集团", local(2024, 4, 3, 9)), checkpoint_key="special-1")
    with runtime.transaction() as session:
        plan = current_plan(session, settings)
        assert plan is not None
        n = build_notification(session, settings, plan, "special-1", local(2024, 4, 8, 9))
    assert (n.summary.owed, n.summary.on_time, n.summary.missing) == (2, 1, 1)
    assert [u.unit for u in n.named] == ["县教育局"]


def test_a_notification_cut_at_the_deadline_counts_nothing_as_not_yet_due(
    session: Session, settings: Settings, plan: Plan
) -> None:
    at_deadline = build_notification(session, settings, plan, "2024-q1", DUE)
    assert at_deadline.generated_at == at_deadline.due_at
    assert at_deadline.summary.pending == 0
    assert at_deadline.summary.due == at_deadline.summary.owed
    assert at_deadline.summary.rate is not None


def _adhoc_round_due_in_2026(runtime: Runtime, settings: Settings) -> None:
    set_clock(runtime, local(2026, 11, 30, 9))
    with runtime.transaction() as session:
        plan = current_plan(session, settings)
        assert plan is not None
        add_adhoc_checkpoint(
            session,
            plan,
            key="special-2026",
            title="专项督查",
            due_at=local(2026, 12, 4, 18),
            now=local(2026, 11, 30, 9),
            tasks=["county-60"],
            actor="督查室",
        )


def test_an_adhoc_rounds_notification_is_titled_with_its_deadlines_year(
    played: Runtime, settings: Settings, messages: Messages
) -> None:
    _adhoc_round_due_in_2026(played, settings)
    with played.transaction() as session:
        plan = current_plan(session, settings)
        assert plan is not None
        n = build_notification(session, settings, plan, "special-2026", local(2026, 12, 1, 9))
    assert n.year == 2026
    assert render_markdown(n, messages).startswith("# 2026年专项督查情况通报")


def test_the_year_view_holds_only_the_rounds_due_in_that_year(played: Runtime, settings: Settings) -> None:
    _adhoc_round_due_in_2026(played, settings)
    at = local(2026, 12, 5, 9)
    with played.transaction() as session:
        plan = current_plan(session, settings)
        assert plan is not None
        plans_year = build_year(session, settings, plan, at)
        later = build_year(session, settings, plan, at, year=2026)
    assert (plans_year.year, [c.key for c in plans_year.checkpoints]) == (2024, ["2024-q1", "2024-q2"])
    assert (later.year, [c.key for c in later.checkpoints]) == (2026, ["special-2026"])
    assert later.total.owed == 2


# --- the files -----------------------------------------------------------------------------


class _Page(HTMLParser):
    """Collects what the HTML checks look at: summary cells, tags, references, style text."""

    def __init__(self) -> None:
        super().__init__()
        self.summary: dict[str, str] = {}
        self.tags: list[str] = []
        self.references: list[str] = []
        self.style = ""
        self.text: list[str] = []
        self._key: str | None = None
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = dict(attrs)
        self.references += [v or "" for k, v in attrs if k in ("src", "href", "xlink:href")]
        self._key = values.get("data-key") if tag == "td" else None
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._key = None
        self._in_style = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_style:
            self.style += data
        if self._key:
            self.summary[self._key] = self.summary.get(self._key, "") + data.strip()


def test_html_summary_table_shows_the_numbers(notification: Notification, messages: Messages) -> None:
    page = _Page()
    page.feed(render_html(notification, messages))
    assert page.summary == {
        "owed": "15",
        "on_time": "9",
        "late": "3",
        "missing": "2",
        "returned": "1",
        "pending": "0",
        "accepted": "1",
        "rate": "60%",
    }


def test_html_draws_unit_rates_and_status_mix_as_inline_svg(notification: Notification, messages: Messages) -> None:
    page = _Page()
    page.feed(render_html(notification, messages))
    # unit on-time rates, status mix per area, and a bullet chart per target (目标完成情况)
    assert page.tags.count("svg") == 2 + len(notification.targets)
    assert page.tags.count("rect") >= len(notification.units)


def test_html_references_nothing_outside_the_file(notification: Notification, messages: Messages) -> None:
    html = render_html(notification, messages)
    page = _Page()
    page.feed(html)
    assert page.references == []
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html and "<script" not in html and "@import" not in html and "url(" not in html


def test_html_is_print_ready_on_a4_with_a_chinese_font_stack(notification: Notification, messages: Messages) -> None:
    page = _Page()
    page.feed(render_html(notification, messages))
    assert "@page" in page.style and "A4" in page.style
    assert '"Noto Sans CJK SC", "Source Han Sans SC", "Microsoft YaHei", "PingFang SC", sans-serif' in page.style
    assert "2024年第一季度进展督办情况通报" in "".join(page.text)


def test_html_escapes_what_units_wrote(runtime: Runtime, settings: Settings, messages: Messages) -> None:
    answer(runtime, Answer("市7", "县卫健局", local(2024, 3, 20, 9), note="<script>alert(1)</script> & 协调"))
    with runtime.transaction() as session:
        plan = current_plan(session, settings)
        assert plan is not None
        html = render_html(build_notification(session, settings, plan, "2024-q1", NOW), messages)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; 协调" in html


def test_markdown_matches_the_reviewed_golden_file(notification: Notification, messages: Messages) -> None:
    assert render_markdown(notification, messages) == GOLDEN.read_text(encoding="utf-8")


def test_xlsx_sheets_headers_frozen_panes_and_filters(
    notification: Notification, messages: Messages, tmp_path: Path
) -> None:
    path = tmp_path / "n.xlsx"
    write_xlsx(notification, path, messages)
    book = load_workbook(path)
    assert book.sheetnames == ["概况", "任务", "单位", "通报单位", "明细", "目标完成情况"]
    units = book["单位"]
    assert units["A1"].value == "2024年第一季度进展督办情况通报"  # a title row over the table
    header = [c.value for c in units[2]]
    assert header[:3] == ["排名", "单位", "应报送"] and "按时报送率" in header
    for sheet in book.worksheets:
        assert sheet.freeze_panes is not None and sheet.freeze_panes.endswith("3"), sheet.title
        assert sheet.auto_filter.ref and sheet.auto_filter.ref.startswith("A2:"), sheet.title
        assert "&P" in sheet.oddFooter.center.text and "&N" in sheet.oddFooter.center.text, sheet.title
        assert sheet.print_title_rows == "$1:$2", sheet.title
    assert units.auto_filter.ref == "A2:M12"


def test_xlsx_numbers_percentages_datetimes_and_light_fills(
    notification: Notification, messages: Messages, tmp_path: Path
) -> None:
    path = tmp_path / "n.xlsx"
    write_xlsx(notification, path, messages)
    book = load_workbook(path)
    summary = {row[0].value: row[1] for row in book["概况"].iter_rows(min_row=3)}
    assert summary["应报送(项)"].value == 15
    assert summary["逾期未报送(项)"].value == 2
    assert summary["按时报送率"].value == pytest.approx(0.6)
    assert summary["按时报送率"].number_format == "0.0%"
    assert summary["报送截止时间"].value == datetime(2024, 3, 25, 18, 0)  # local time, a real datetime

    units = book["单位"]
    header = [c.value for c in units[2]]
    rows = {row[1].value: row for row in units.iter_rows(min_row=3)}
    kejing = rows["县科经局"]
    rate = kejing[header.index("按时报送率")]
    assert rate.value == pytest.approx(2 / 3) and rate.number_format == "0.0%"
    light = kejing[header.index("报送灯")]
    assert light.value == "黄灯"
    assert light.fill.fgColor.rgb.endswith("FFEB9C")
    assert rows["县教育局"][header.index("报送灯")].fill.fgColor.rgb.endswith("FFC7CE")
    assert rows["县卫健局"][header.index("报送灯")].fill.fgColor.rgb.endswith("C6EFCE")
    assert rows["县教育局"][header.index("逾期未报送")].value == 1

    tasks = book["任务"]
    task_header = [c.value for c in tasks[2]]
    r42 = next(row for row in tasks.iter_rows(min_row=3) if row[0].value == "县42")
    assert r42[task_header.index("报送时间")].value == datetime(2024, 3, 27, 10, 0)
    assert r42[task_header.index("进展状态")].value == "进度滞后"
    assert r42[task_header.index("责任单位已报送")].value == "1/2"
    assert [row[0].value for row in book["通报单位"].iter_rows(min_row=3)] == [n.unit for n in notification.named]


def test_export_writes_each_format_under_its_default_name(
    session: Session, settings: Settings, plan: Plan, messages: Messages, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    written = [export(session, settings, messages, plan, "2024-q1", fmt, NOW, out) for fmt in ("html", "xlsx", "md")]
    assert [p.name for p in written] == [
        "通报-嘉鱼县-2024-q1.html",
        "通报-嘉鱼县-2024-q1.xlsx",
        "通报-嘉鱼县-2024-q1.md",
    ]
    assert all(p.stat().st_size > 0 for p in written)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written)  # no temporary left
    assert default_name(plan, None, "xlsx") == "通报-嘉鱼县-2024-全年.xlsx"


def test_a_notification_written_by_the_writers_processes_is_the_one_written_in_process(
    notification: Notification, messages: Messages, tmp_path: Path
) -> None:
    def files(folder: str) -> list[tuple[FileFormat, Path]]:
        return [("html", tmp_path / folder / "n.html"), ("xlsx", tmp_path / folder / "n.xlsx")]

    here = FileWriter(messages).submit(notification, files("here")).result()
    writer = FileWriter(messages, workers=2)
    try:
        there = writer.submit(notification, files("there")).result(timeout=50)  # the view pickled to a process
    finally:
        writer.close()
    assert here[0].read_bytes() == there[0].read_bytes()
    with ZipFile(here[1]) as mine, ZipFile(there[1]) as theirs:
        # Every part but the workbook's creation time (docProps/core.xml).
        names = [name for name in mine.namelist() if name != "docProps/core.xml"]
        assert names == [name for name in theirs.namelist() if name != "docProps/core.xml"]
        assert all(mine.read(name) == theirs.read(name) for name in names)


# --- the year ------------------------------------------------------------------------------


YEAR_AT = local(2024, 7, 1, 9)


@pytest.fixture
def year_played(played: Runtime) -> Runtime:
    """Q1 as above; in Q2 only 县科经局 answers, its three tasks on time."""
    for ref in ("县48", "县49", "县56"):
        answer(played, Answer(ref, "县科经局", local(2024, 6, 20, 10)), checkpoint_key="2024-q2")
    set_clock(played, YEAR_AT)
    return played


@pytest.fixture
def year(year_played: Runtime, settings: Settings) -> YearView:
    with year_played.transaction() as session:
        plan = current_plan(session, settings)
        assert plan is not None
        return build_year(session, settings, plan, YEAR_AT)


def test_year_view_sets_each_units_checkpoints_side_by_side(year: YearView) -> None:
    assert [c.key for c in year.checkpoints] == ["2024-q1", "2024-q2"]
    assert [(c.tally.on_time, c.tally.missing) for c in year.checkpoints] == [(9, 2), (3, 12)]
    assert year.total.owed == 30
    kejing = next(u for u in year.units if u.unit == "县科经局")
    assert [(c.on_time, c.returned, c.rate) for c in kejing.cells if c] == [(2, 1, pytest.approx(2 / 3)), (3, 0, 1.0)]
    assert kejing.total.rate == pytest.approx(5 / 6)
    assert kejing.total.light == "yellow"
    assert kejing.rank == 1


def test_year_xlsx_groups_each_checkpoints_columns_under_its_title(
    year_played: Runtime, settings: Settings, messages: Messages, tmp_path: Path
) -> None:
    with year_played.transaction() as session:
        plan = current_plan(session, settings)
        assert plan is not None
        path = export(session, settings, messages, plan, None, "xlsx", YEAR_AT, tmp_path)
    assert path.name == "通报-嘉鱼县-2024-全年.xlsx"
    book = load_workbook(path)
    assert book.sheetnames == ["概况", "单位年度"]
    sheet = book["单位年度"]
    assert sheet["A1"].value == "2024年度督办情况汇总"
    assert sheet.freeze_panes == "C4"
    assert sheet.auto_filter.ref == "A3:Q13"  # 2 + 3 × 5 columns, 10 units under a title and two header rows
    assert (sheet["C2"].value, sheet["H2"].value, sheet["M2"].value) == (
        "第一季度进展督办(2024-q1)",
        "第二季度进展督办(2024-q2)",
        "全年合计",
    )
    row = next(r for r in sheet.iter_rows(min_row=4) if r[1].value == "县科经局")
    assert [c.value for c in row[2:7]] == [3, 2, 0, 0, pytest.approx(2 / 3)]
    assert row[6].fill.fgColor.rgb.endswith("FFEB9C")


def test_year_html_and_markdown_show_the_same_rates(year: YearView, messages: Messages) -> None:
    page = _Page()
    page.feed(render_html(year, messages))
    assert "svg" in page.tags and page.references == []
    assert "83.3%" in "".join(page.text)
    markdown = render_markdown(year, messages)
    assert markdown.startswith("# 2024年度督办情况汇总\n")
    assert "| 1 | 县科经局 | 66.7%(2/3) | 100%(3/3) | 83.3%(5/6) | 0 | 0 | 黄灯 |" in markdown
