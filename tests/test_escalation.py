"""A year of checkpoints on a virtual clock: who is reminded of what, when, and who is escalated to."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from core.clock import ManualClock
from core.config import PersonRole
from core.conversation import Conversation, IncomingFile
from core.digest import Digest
from core.escalation import Escalation, make_calendar
from core.office import OfficeRequests
from core.quarter_end import plans_with_closed_rounds
from core.reporting import StagedFile
from core.runtime import Runtime
from jobs.ticks import remind
from messages import Messages
from storage.models import Checkpoint, OutboxMessage, RungRun
from storage.queries import newest_plans
from tests.conftest import local
from tests.support import invite, make_conversation, outbox, say

LIAISON, HEAD, OFFICE, LEADER = 11, 12, 13, 14  # 县发改局's people, the office, the leader in charge
TOWN = 21  # 簰洲湾镇人民政府's liaison

REFINED_PLAN_TASKS = ["县1", "县3", "县7", "县10", "县25", "县45", "市3", "市24", "市26"]

pytestmark = pytest.mark.both_databases


@pytest.fixture
def escalation(runtime: Runtime) -> Escalation:
    settings = runtime.settings
    return Escalation(settings, Messages("zh", settings.tz), make_calendar(settings))


@pytest.fixture
def people(runtime: Runtime, clock: ManualClock) -> Conversation:
    clock.set(local(2024, 2, 20, 10))
    conv = make_conversation(runtime)
    say(conv, LIAISON, f"/start {invite(runtime, '县发改局')}")
    say(conv, HEAD, f"/start {invite(runtime, '县发改局', PersonRole.HEAD)}")
    say(conv, OFFICE, f"/start {invite(runtime, '县政府政务督查室', PersonRole.OFFICE)}")
    say(conv, LEADER, f"/start {invite(runtime, '县发改局', PersonRole.LEADER)}")
    say(conv, TOWN, f"/start {invite(runtime, '簰洲湾镇人民政府')}")
    return conv


def tick_at(runtime: Runtime, escalation: Escalation, clock: ManualClock, moment: datetime) -> list[OutboxMessage]:
    clock.set(moment)
    before = {row.id for row in outbox(runtime)}
    remind(runtime, escalation, moment)
    return [row for row in outbox(runtime) if row.id not in before and row.kind in ("reminder", "escalation")]


def run_until(
    runtime: Runtime, escalation: Escalation, clock: ManualClock, end: datetime
) -> list[tuple[datetime, OutboxMessage]]:
    """Jump from rung to rung (as the scheduler would wake), collecting what each tick queued."""
    sent = []
    moment = clock.now()
    while True:
        with runtime.transaction() as session:
            following = escalation.next_fire_after(session, moment)
        if following is None or following > end:
            return sent
        moment = following
        sent += [(moment, row) for row in tick_at(runtime, escalation, clock, moment)]


def to(rows: list[OutboxMessage], chat: int) -> list[OutboxMessage]:
    return [row for row in rows if row.chat_id == str(chat)]


def listed(row: OutboxMessage) -> list[str]:
    """The task labels a reminder lists, in order."""
    return [
        line.split()[0]
        for line in row.payload["text"].splitlines()
        if line.startswith("  ") and line.split()[0][0] in "县市"
    ]


def document(tmp_path: Path, name: str) -> IncomingFile:
    path = tmp_path / name
    path.write_bytes(b"%PDF refined plan")
    staged = StagedFile(name, 17, "application/pdf", f"f-{name}", f"u-{name}", path, StagedFile.digest(path), "sandbox")
    return IncomingFile(file_id=staged.file_id, file_name=name, size=17, staged=staged)


def test_liaison_is_reminded_seven_days_ahead_of_every_lead_task(
    runtime: Runtime, escalation: Escalation, clock: ManualClock, people: Conversation
) -> None:
    rows = to(tick_at(runtime, escalation, clock, local(2024, 2, 22, 9)), LIAISON)
    [reminder] = rows
    assert listed(reminder) == REFINED_PLAN_TASKS
    assert "【督办提醒】细化方案报送" in reminder.payload["text"] and "2024-02-29 18:00" in reminder.payload["text"]
    assert reminder.rung == "-7d" and not reminder.late


def test_nothing_is_sent_before_the_first_rung(
    runtime: Runtime, escalation: Escalation, clock: ManualClock, people: Conversation
) -> None:
    assert tick_at(runtime, escalation, clock, local(2024, 2, 22, 8, 59)) == []


def test_a_tick_run_twice_sends_nothing_twice(
    runtime: Runtime, escalation: Escalation, clock: ManualClock, people: Conversation
) -> None:
    first = tick_at(runtime, escalation, clock, local(2024, 2, 22, 9))
    assert first and tick_at(runtime, escalation, clock, local(2024, 2, 22, 9, 1)) == []


def test_answered_tasks_are_not_reminded_again(
    runtime: Runtime, escalation: Escalation, clock: ManualClock, people: Conversation, tmp_path: Path
) -> None:
    tick_at(runtime, escalation, clock, local(2024, 2, 22, 9))
    clock.set(local(2024, 2, 23, 10))
    say(people, LIAISON, "/report 1 按计划推进 细化方案已审定", files=(document(tmp_path, "县1.pdf"),))
    [reminder] = to(tick_at(runtime, escalation, clock, local(2024, 2, 26, 9)), LIAISON)
    assert listed(reminder) == REFINED_PLAN_TASKS[1:]


def test_a_unit_that_answered_everything_gets_nothing(
    runtime: Runtime, escalation: Escalation, clock: ManualClock, people: Conversation, tmp_path: Path
) -> None:
    clock.set(local(2024, 2, 21, 10))
    for label in REFINED_PLAN_TASKS:
        say(people, LIAISON, f"/report {label} 按计划推进 细化方案见附件", files=(document(tmp_path, f"{label}.pdf"),))
    rows = run_until(runtime, escalation, clock, local(2024, 3, 10))
    assert [row for _, row in rows if row.unit_id is not None and row.chat_id in {str(LIAISON), str(HEAD)}] == []


def test_escalation_reaches_head_office_and_leader(
    runtime: Runtime, escalation: Escalation, clock: ManualClock, people: Conversation
) -> None:
    rows = run_until(runtime, escalation, clock, local(2024, 3, 10))
    timeline = [
        (when, row.chat_id, row.rung) for when, row in rows if row.checkpoint_id and row.rung in ("+1d", "+3d", "+7d")
    ]
    assert (local(2024, 3, 1, 9), str(HEAD), "+1d") in timeline
    assert (local(2024, 3, 1, 9), str(LIAISON), "+1d") in timeline
    assert (local(2024, 3, 4, 9), str(OFFICE), "+3d") in timeline  # Sunday's rung waits for Monday
    assert (local(2024, 3, 7, 9), str(LEADER), "+7d") in timeline
    head = next(row for when, row in rows if row.chat_id == str(HEAD))
    assert "【逾期提醒】" in head.payload["text"] and "请单位负责人督促办理" in head.payload["text"]
    office = next(row for when, row in rows if row.chat_id == str(OFFICE))
    assert "仍有 28 个单位、109 项未报送" in office.payload["text"]


def test_reminders_before_the_deadline_go_to_liaisons_only(
    runtime: Runtime, escalation: Escalation, clock: ManualClock, people: Conversation
) -> None:
    rows = run_until(runtime, escalation, clock, local(2024, 2, 29, 18))
    assert {row.chat_id for _, row in rows} == {str(LIAISON)}  # 簰洲湾镇 leads nothing
    assert [row.rung for _, row in rows] == ["-7d", "-3d", "-1d", "+0d"]


def test_spring_festival_moves_a_rung_to_the_last_working_day(
    runtime: Runtime, escalation: Escalation, clock: ManualClock, people: Conversation
) -> None:
    clock.set(local(2024, 2, 1, 10))
    say(people, OFFICE, "/round festival 2024-02-19 1 节后专项督查")
    rows = run_until(runtime, escalation, clock, local(2024, 2, 19, 18))
    festival = [
        (when, row.rung) for when, row in rows if row.chat_id == str(LIAISON) and "节后专项督查" in row.payload["text"]
    ]
    assert festival == [(local(2024, 2, 9, 9), "-3d"), (local(2024, 2, 18, 9), "-1d"), (local(2024, 2, 19, 9), "+0d")]


def test_catch_up_after_a_week_of_downtime_sends_one_late_reminder_per_person(
    runtime: Runtime, escalation: Escalation, clock: ManualClock, people: Conversation
) -> None:
    tick_at(runtime, escalation, clock, local(2024, 2, 22, 9))
    rows = tick_at(runtime, escalation, clock, local(2024, 3, 5, 10))  # down from 22 Feb to 5 March
    per_person = {chat: [r.rung for r in rows if r.chat_id == chat] for chat in {r.chat_id for r in rows}}
    assert per_person == {str(LIAISON): ["+1d"], str(HEAD): ["+1d"], str(OFFICE): ["+3d"]}
    assert all(row.late for row in rows)
    assert "【补发】" in to(rows, LIAISON)[0].payload["text"]
    with runtime.transaction() as session:
        skipped = {
            tuple(row)
            for row in session.execute(select(RungRun.rung_key, RungRun.role).where(RungRun.outcome == "skipped"))
        }
    assert {("-3d", "liaison"), ("-1d", "liaison"), ("+0d", "liaison")} <= skipped


def test_rungs_missed_long_ago_are_not_sent_at_all(
    runtime: Runtime, escalation: Escalation, clock: ManualClock, people: Conversation
) -> None:
    rows = tick_at(runtime, escalation, clock, local(2025, 6, 1, 10))
    assert rows == []


def test_a_returned_answer_is_reminded_again(
    runtime: Runtime, escalation: Escalation, clock: ManualClock, people: Conversation
) -> None:
    clock.set(local(2024, 3, 10, 10))
    say(people, LIAISON, "/report 12 按计划推进 已对接")
    say(people, OFFICE, "/return 12 县发改局 请补充数据")
    rows = to(tick_at(runtime, escalation, clock, local(2024, 3, 18, 9)), LIAISON)
    [reminder] = [row for row in rows if "第一季度" in row.payload["text"]]
    assert "县12 绿色食品全产业链规模达到165亿元(已退回,需重报)" in reminder.payload["text"]


def test_a_whole_year_for_a_unit_that_never_answers(
    runtime: Runtime, escalation: Escalation, clock: ManualClock, people: Conversation
) -> None:
    rows = run_until(runtime, escalation, clock, local(2025, 2, 1))
    mine = to([row for _, row in rows], LIAISON)
    per_checkpoint: dict[int, int] = {}
    for row in mine:
        per_checkpoint[row.checkpoint_id] = per_checkpoint.get(row.checkpoint_id, 0) + 1  # type: ignore[index]
    # -7d, -3d, -1d, due day, +1d and four weekly repeats: nine per checkpoint — except Q1, whose
    # -1d (Sunday 24 March) moves back to Friday 22 March where -3d already is: one message, not two.
    assert sorted(per_checkpoint.values()) == [8, 9, 9, 9, 9]
    town = to([row for _, row in rows], TOWN)
    assert len(town) == 8 + 9 + 9 + 9  # towns lead nothing, so no refined plan; four quarters
    assert all(not row.late for row in mine)


def test_the_notification_goes_to_the_office_the_morning_after_the_deadline(
    runtime: Runtime, escalation: Escalation, clock: ManualClock, people: Conversation
) -> None:
    clock.set(local(2024, 3, 1, 8, 59))
    remind(runtime, escalation, clock.now())
    assert outbox(runtime, OFFICE, kind="notification") == []
    clock.set(local(2024, 3, 1, 9, 0))
    remind(runtime, escalation, clock.now())
    [notification] = outbox(runtime, OFFICE, kind="notification")
    assert "【通报】细化方案报送" in notification.payload["text"]
    document = Path(notification.payload["document"]["path"])
    assert document.suffix == ".xlsx" and document.read_bytes()[:2] == b"PK"
    remind(runtime, escalation, local(2024, 3, 2, 9))
    assert len(outbox(runtime, OFFICE, kind="notification")) == 1, "once, whatever the ticks"


def cut_at(path: Path) -> datetime:
    """The moment a 通报 file was cut (统计截至 on its summary sheet), in local wall-clock time."""
    rows = {row[0]: row[1] for row in load_workbook(path, read_only=True)["概况"].iter_rows(values_only=True)}
    cut = rows["统计截至"]
    assert isinstance(cut, datetime)
    return cut


def answer_office_requests(conversation: Conversation, runtime: Runtime) -> None:
    """Let the office's /export be answered, as the service does."""
    settings = runtime.settings
    messages = Messages("zh", settings.tz)
    conversation.on_office_request = OfficeRequests(
        settings, messages, Digest(settings, messages, make_calendar(settings))
    )


def test_export_of_a_closed_round_serves_the_file_the_office_was_sent(
    runtime: Runtime, escalation: Escalation, clock: ManualClock, people: Conversation
) -> None:
    remind(runtime, escalation, local(2024, 3, 1, 9, 0))
    [notification] = outbox(runtime, OFFICE, kind="notification")
    sent = Path(notification.payload["document"]["path"])
    content = sent.read_bytes()
    clock.set(local(2024, 3, 4, 10))
    answer_office_requests(people, runtime)
    say(people, OFFICE, "/export refined-plan xlsx")
    [export] = outbox(runtime, OFFICE, kind="export")
    assert Path(export.payload["document"]["path"]) == sent
    assert sent.read_bytes() == content, "the stored file, not written again"
    assert cut_at(sent) == datetime(2024, 3, 1, 9, 0)


def test_export_after_an_answer_changed_writes_a_fresh_notification(
    runtime: Runtime, escalation: Escalation, clock: ManualClock, people: Conversation, tmp_path: Path
) -> None:
    remind(runtime, escalation, local(2024, 3, 1, 9, 0))
    clock.set(local(2024, 3, 4, 10))
    say(people, LIAISON, "/report 1 按计划推进 细化方案已审定", files=(document(tmp_path, "县1.pdf"),))
    answer_office_requests(people, runtime)
    say(people, OFFICE, "/export refined-plan xlsx")
    [export] = outbox(runtime, OFFICE, kind="export")
    fresh = Path(export.payload["document"]["path"])
    assert cut_at(fresh) == datetime(2024, 3, 4, 10, 0)
    assert "细化方案已审定" in [
        cell for row in load_workbook(fresh, read_only=True)["明细"].iter_rows(values_only=True) for cell in row
    ]


def test_only_counties_with_a_closed_round_not_yet_notified_are_visited(
    runtime: Runtime, escalation: Escalation, clock: ManualClock, people: Conversation
) -> None:
    with runtime.transaction() as session:
        [plan_id] = [plan.id for plan in newest_plans(session)]

    def visited(at: datetime) -> list[int]:
        with runtime.transaction() as session:
            return plans_with_closed_rounds(session, [plan_id], at)

    assert visited(local(2024, 2, 29, 17)) == [], "nothing past its deadline yet"
    assert visited(local(2024, 3, 1, 8, 59)) == [plan_id], "the refined plan closed, its 通报 not sent"
    remind(runtime, escalation, local(2024, 3, 1, 9, 0))
    assert visited(local(2024, 3, 1, 9, 1)) == [], "sent and recorded"
    assert visited(local(2024, 3, 26, 9)) == [plan_id], "the first quarter closed"


def test_a_round_in_a_year_the_calendar_does_not_know_stops_no_other(
    runtime: Runtime, escalation: Escalation, clock: ManualClock, people: Conversation
) -> None:
    from core.checkpoints import add_adhoc_checkpoint
    from core.runtime import current_plan

    with runtime.transaction() as session:
        plan = current_plan(session, runtime.settings)
        assert plan is not None
        add_adhoc_checkpoint(
            session,
            plan,
            key="far",
            title="远期督查",
            due_at=local(2031, 3, 3, 18),
            now=clock.now(),
            tasks=["county-1"],
            actor="test",
        )
    rows = to(tick_at(runtime, escalation, clock, local(2024, 2, 22, 9)), LIAISON)
    assert [row.rung for row in rows] == ["-7d"]


# --- binding after a rung has fired ---------------------------------------------------------

LATECOMER = 31  # binds to 县发改局 after the others


def test_a_liaison_who_binds_after_a_reminder_gets_the_current_round_at_once(
    runtime: Runtime, escalation: Escalation, clock: ManualClock, people: Conversation
) -> None:
    tick_at(runtime, escalation, clock, local(2024, 2, 22, 9))
    clock.set(local(2024, 2, 23, 10))
    say(people, LATECOMER, f"/start {invite(runtime, '县发改局')}")
    sent = outbox(runtime, LATECOMER)
    assert "绑定成功" in sent[0].payload["text"]
    [reminder] = [row for row in sent if row.kind == "reminder"]
    assert "【督办提醒】细化方案报送" in reminder.payload["text"]
    assert listed(reminder) == REFINED_PLAN_TASKS
    assert reminder.checkpoint_id is not None  # a reply to it is understood, like any reminder


def test_binding_before_any_rung_or_with_nothing_owed_sends_only_the_welcome(
    runtime: Runtime, escalation: Escalation, clock: ManualClock, people: Conversation
) -> None:
    say(people, LATECOMER, f"/start {invite(runtime, '县发改局')}")
    assert [row.kind for row in outbox(runtime, LATECOMER)] == ["reply"]
    tick_at(runtime, escalation, clock, local(2024, 2, 22, 9))
    say(people, LATECOMER + 1, f"/start {invite(runtime, '县发改局', PersonRole.LEADER)}")
    assert [row.kind for row in outbox(runtime, LATECOMER + 1)] == ["reply"]


def test_a_reminder_matters_until_the_rounds_next_rung_and_the_last_one_for_a_day(
    runtime: Runtime, escalation: Escalation, clock: ManualClock, people: Conversation
) -> None:
    [first] = to(tick_at(runtime, escalation, clock, local(2024, 2, 22, 9)), LIAISON)
    assert first.matters_until == local(2024, 2, 26, 9)  # the -3d rung: by then a newer reminder replaces it
    with runtime.transaction() as session:
        checkpoint = session.get(Checkpoint, first.checkpoint_id)
        assert checkpoint is not None
        last = escalation.schedule(checkpoint)[-1].fires_at
    assert escalation.matters_until(checkpoint, last) is None  # past the last rung: the outbox's day applies
