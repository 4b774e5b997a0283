"""What the office sees of submissions: returns after acceptance, first-submission timeliness, attachments in the 通报."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from core.clock import ManualClock
from core.config import PersonRole
from core.conversation import Conversation
from core.documents import render_html, write_xlsx
from core.notification import Notification, build_notification
from core.records import round_files, write_round_archive
from core.runtime import Runtime, current_plan
from messages import TEMPLATES, Messages
from storage.models import Obligation, Task, Unit
from tests.conftest import local
from tests.support import invite, last_text, make_conversation, outbox, say, staged_file

LIAISON = 1001  # 县发改局
OFFICE = 9001
AFTER_Q1 = local(2024, 4, 1, 9)


@pytest.fixture
def bound(runtime: Runtime) -> Conversation:
    conv = make_conversation(runtime)
    say(conv, LIAISON, f"/start {invite(runtime, '县发改局')}")
    say(conv, OFFICE, f"/start {invite(runtime, '县政府政务督查室', PersonRole.OFFICE)}")
    return conv


def notification(runtime: Runtime, key: str, now=AFTER_Q1) -> Notification:  # type: ignore[no-untyped-def]
    with runtime.transaction() as session:
        plan = current_plan(session, runtime.settings)
        assert plan is not None
        return build_notification(session, runtime.settings, plan, key, now)


def state_of(runtime: Runtime, number: int) -> str:
    with runtime.transaction() as session:
        return (
            session.scalars(
                select(Obligation.state)
                .join(Task, Task.id == Obligation.task_id)
                .join(Unit, Unit.id == Obligation.unit_id)
                .where(Task.annex == "county", Task.number == number, Unit.name == "县发改局")
            ).first()
            or ""
        )


def test_returning_an_accepted_report_asks_for_confirmation_first(runtime: Runtime, bound: Conversation) -> None:
    say(bound, LIAISON, "/report 12 按计划推进 已对接企业5家")
    say(bound, OFFICE, "/accept 12 县发改局")
    say(bound, OFFICE, "/return 12 县发改局 附件不全")
    assert "已审核通过" in last_text(runtime, OFFICE) and "确认退回" in last_text(runtime, OFFICE)
    assert state_of(runtime, 12) == "accepted"
    say(bound, OFFICE, "/return 12 县发改局 确认退回 附件不全")
    assert state_of(runtime, 12) == "returned"
    assert "附件不全" in last_text(runtime, LIAISON)


def test_a_resubmission_after_a_return_keeps_the_first_submissions_timeliness(
    runtime: Runtime, bound: Conversation, clock: ManualClock, tmp_path: Path
) -> None:
    say(bound, LIAISON, "/report 12 按计划推进 已对接企业5家")  # on time (due 3-25)
    say(bound, OFFICE, "/accept 12 县发改局")
    clock.set(local(2024, 3, 27, 9))
    say(bound, OFFICE, "/return 12 县发改局 确认退回 请补充签约金额")
    say(bound, LIAISON, "/report 12 按计划推进 已签约3家,金额12亿元")
    item = next(i for i in notification(runtime, "2024-q1").items if i.task_label == "县12" and i.unit == "县发改局")
    assert (item.outcome, item.on_time, item.returns, item.return_reason) == ("on_time", True, 1, "请补充签约金额")
    assert item.answered_at == local(2024, 2, 22, 10)  # the first submission
    n = notification(runtime, "2024-q1")
    html = render_html(n, Messages("zh", runtime.settings.tz))
    assert "请补充签约金额" in html and "已重新报送" in html
    assert "是否按时以首次报送时间为准" in html  # the rule, in 口径说明
    path = tmp_path / "n.xlsx"
    write_xlsx(n, path, Messages("zh", runtime.settings.tz))
    sheet = load_workbook(path)["明细"]
    header = [c.value for c in sheet[2]]
    row = next(r for r in sheet.iter_rows(min_row=3) if r[0].value == "县12" and r[2].value == "县发改局")
    assert row[header.index("报送情况")].value == "按时报送" and row[header.index("退回次数")].value == 1


def test_the_notification_names_and_links_the_files_units_sent(
    runtime: Runtime, bound: Conversation, tmp_path: Path
) -> None:
    say(bound, LIAISON, "/report 1 按计划推进 细化方案已审定", files=(staged_file(tmp_path, "县1细化方案.pdf"),))
    n = notification(runtime, "refined-plan")
    [item] = [i for i in n.items if i.files]
    [file] = item.files
    assert (item.task_label, item.unit, file.name) == ("县1", "县发改局", "县1细化方案.pdf")
    html = render_html(n, Messages("zh", runtime.settings.tz))
    assert "报送附件" in html and "县1细化方案.pdf" in html
    path = tmp_path / "n.xlsx"
    write_xlsx(n, path, Messages("zh", runtime.settings.tz))
    sheet = load_workbook(path)["明细"]
    header = [c.value for c in sheet[2]]
    cell = next(r for r in sheet.iter_rows(min_row=3) if r[0].value == "县1" and r[2].value == "县发改局")[
        header.index("附件")
    ]
    assert cell.value == "县1细化方案.pdf"
    assert cell.hyperlink is not None and cell.hyperlink.target == f"http://127.0.0.1:8080/office/file/{file.id}"


def test_a_rounds_files_are_archived_under_unit_and_task(runtime: Runtime, bound: Conversation, tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    files = (staged_file(first, "细化方案.pdf", b"%PDF v1"), staged_file(second, "细化方案.pdf", b"%PDF v2"))
    say(bound, LIAISON, "/report 1 按计划推进 细化方案及修改稿", files=files)
    with runtime.transaction() as session:
        plan = current_plan(session, runtime.settings)
        assert plan is not None
        entries = round_files(session, plan, "refined-plan")
        assert round_files(session, plan, "no-such-round") is None
    assert entries is not None
    archive = write_round_archive(entries, tmp_path / "out" / "a.zip")
    with zipfile.ZipFile(archive) as opened:
        names = opened.namelist()
        assert names[0] == "县发改局/县1-细化方案.pdf" and names[1].startswith("县发改局/县1-细化方案-")
        assert opened.read(names[0]) == b"%PDF v1" and opened.read(names[1]) == b"%PDF v2"


def test_named_units_are_listed_worst_first(runtime: Runtime, bound: Conversation) -> None:
    named = notification(runtime, "2024-q1").named
    keys = [(u.rate if u.rate is not None else 2.0, -u.missing) for u in named]
    assert named and keys == sorted(keys)


EMOJI_RANGES = [(0x1F000, 0x1FAFF), (0x2700, 0x27BF), (0x2B50, 0x2B55), (0xFE0F, 0xFE0F)]


def test_what_the_sandbox_and_the_notification_show_has_no_emoji_debians_fonts_lack() -> None:
    """Debian's default fonts (Noto CJK, DejaVu) have no colour emoji: such a character prints as a box."""
    shown = [*TEMPLATES.glob("zh/*.j2"), *TEMPLATES.glob("web/*.j2"), *TEMPLATES.glob("reports/*")]
    found = {
        (path.name, char)
        for path in shown
        for char in path.read_text(encoding="utf-8")
        if any(low <= ord(char) <= high for low, high in EMOJI_RANGES)
    }
    assert found == set()


def test_the_office_gets_a_rounds_files_as_one_zip_in_chat(
    runtime: Runtime, bound: Conversation, tmp_path: Path
) -> None:
    from core.digest import Digest
    from core.escalation import make_calendar
    from core.office import OfficeRequests

    settings = runtime.settings
    messages = Messages("zh", settings.tz)
    bound.on_office_request = OfficeRequests(settings, messages, Digest(settings, messages, make_calendar(settings)))
    say(bound, LIAISON, "/report 1 按计划推进 细化方案", files=(staged_file(tmp_path, "细化方案.pdf", b"%PDF zip"),))
    say(bound, OFFICE, "/export refined-plan zip")
    [sent] = [row for row in outbox(runtime, OFFICE) if row.payload.get("document")]
    path = Path(sent.payload["document"]["path"])
    assert sent.payload["document"]["file_name"] == "附件-嘉鱼县-refined-plan.zip"
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == ["县发改局/县1-细化方案.pdf"]
        assert archive.read("县发改局/县1-细化方案.pdf") == b"%PDF zip"
    say(bound, OFFICE, "/export year zip")
    assert "zip" in last_text(runtime, OFFICE)  # the usage again: the year has no single set of files
