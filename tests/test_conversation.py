"""The platform-neutral conversation core: what people say, what is recorded, what is answered."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from core.clock import ManualClock
from core.config import PersonRole
from core.conversation import Conversation, IncomingFile
from core.runtime import Runtime
from storage.models import Binding, BindingCode, InboundUpdate, Obligation, Review, StatusReport, Task, Unit
from tests.conftest import local
from tests.support import invite, last_buttons, last_text, make_conversation, mark_sent, outbox, say, staged_file

LIAISON = 1001  # 县发改局
OTHER = 1002  # 县招商投资中心
OFFICE = 9001
STRANGER = 4242


@pytest.fixture
def conv(runtime: Runtime) -> Conversation:
    return make_conversation(runtime)


@pytest.fixture
def bound(runtime: Runtime, conv: Conversation) -> Conversation:
    say(conv, LIAISON, f"/start {invite(runtime, '县发改局')}")
    say(conv, OTHER, f"/start {invite(runtime, '县招商投资中心')}")
    say(conv, OFFICE, f"/start {invite(runtime, '县发改局', PersonRole.OFFICE)}")
    return conv


def reports(runtime: Runtime) -> list[StatusReport]:
    with runtime.transaction() as session:
        return list(
            session.scalars(
                select(StatusReport)
                .options(selectinload(StatusReport.task), selectinload(StatusReport.attachments))
                .order_by(StatusReport.id)
            )
        )


def obligation_state(runtime: Runtime, unit: str, annex: str, number: int, checkpoint_key: str) -> str:
    from storage.models import Checkpoint

    with runtime.transaction() as session:
        return session.scalar(
            select(Obligation.state)
            .join(Unit, Unit.id == Obligation.unit_id)
            .join(Task, Task.id == Obligation.task_id)
            .join(Checkpoint, Checkpoint.id == Obligation.checkpoint_id)
            .where(Unit.name == unit, Task.annex == annex, Task.number == number, Checkpoint.key == checkpoint_key)
        )


# --- binding ------------------------------------------------------------------------


def test_binding_code_binds_the_person_to_the_unit(runtime: Runtime, conv: Conversation) -> None:
    say(conv, LIAISON, f"/start {invite(runtime, '县发改局')}")
    assert "绑定成功" in last_text(runtime, LIAISON) and "县发改局" in last_text(runtime, LIAISON)
    say(conv, LIAISON, "/whoami")
    assert "县发改局 联络员" in last_text(runtime, LIAISON)


def test_a_binding_code_has_no_characters_people_confuse_and_is_read_as_typed_on_a_phone(
    runtime: Runtime, conv: Conversation
) -> None:
    code = invite(runtime, "县发改局")
    assert len(code) == 10 and not set(code) & set("IilLoO01")
    typed = f"{code[:5].lower()} {code[5:]}"  # lower case, with a space, as a phone keyboard makes it
    say(conv, LIAISON, f"绑定 {typed}")
    assert "绑定成功" in last_text(runtime, LIAISON)


def test_code_works_only_once(runtime: Runtime, conv: Conversation) -> None:
    code = invite(runtime, "县发改局")
    say(conv, LIAISON, f"/start {code}")
    say(conv, OTHER, f"/start {code}")
    assert "已被使用" in last_text(runtime, OTHER)
    with runtime.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Binding)) == 1


def test_expired_code_binds_nothing(runtime: Runtime, conv: Conversation, clock: ManualClock) -> None:
    code = invite(runtime, "县发改局")
    clock.advance(timedelta(days=8))
    say(conv, LIAISON, f"/start {code}")
    assert "已过期" in last_text(runtime, LIAISON)
    with runtime.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Binding)) == 0


def test_unknown_code_binds_nothing(runtime: Runtime, conv: Conversation) -> None:
    say(conv, LIAISON, "/start NotARealCode1234567")
    assert "绑定码无效" in last_text(runtime, LIAISON)


def test_codes_are_stored_hashed(runtime: Runtime) -> None:
    code = invite(runtime, "县发改局")
    with runtime.transaction() as session:
        stored = session.scalars(select(BindingCode.code_hash)).all()
    assert code not in stored and len(stored[0]) == 64


def test_chinese_bind_command_works(runtime: Runtime, conv: Conversation) -> None:
    say(conv, LIAISON, f"绑定 {invite(runtime, '县发改局')}")
    assert "绑定成功" in last_text(runtime, LIAISON)


def test_several_people_may_bind_to_one_unit(runtime: Runtime, conv: Conversation) -> None:
    say(conv, 1, f"/start {invite(runtime, '县发改局')}")
    say(conv, 2, f"/start {invite(runtime, '县发改局')}")
    with runtime.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Binding).where(Binding.revoked_at.is_(None))) == 2


def test_unbind_revokes_and_the_person_becomes_a_stranger(runtime: Runtime, bound: Conversation) -> None:
    say(bound, LIAISON, "/unbind")
    assert "已解除绑定" in last_text(runtime, LIAISON)
    say(bound, LIAISON, "/tasks")
    assert "还没有绑定单位" in last_text(runtime, LIAISON)


# --- strangers and bad input ---------------------------------------------------------------


def test_stranger_gets_one_polite_message_and_nothing_else(runtime: Runtime, conv: Conversation) -> None:
    say(conv, STRANGER, "/report 22 按计划推进 想代报")
    rows = outbox(runtime, STRANGER)
    assert len(rows) == 1 and "绑定码" in rows[0].payload["text"]
    assert reports(runtime) == []


def test_unknown_command_gets_a_clear_answer(runtime: Runtime, bound: Conversation) -> None:
    say(bound, LIAISON, "/frobnicate")
    assert "无法识别的命令“/frobnicate”" in last_text(runtime, LIAISON)


def test_unknown_task_number_changes_nothing(runtime: Runtime, bound: Conversation) -> None:
    say(bound, LIAISON, "/report 99 按计划推进 无此任务")
    assert "没有编号为“99”的任务" in last_text(runtime, LIAISON)
    assert reports(runtime) == []


def test_report_for_another_units_task_is_refused(runtime: Runtime, bound: Conversation) -> None:
    say(bound, LIAISON, "/report 22 按计划推进 代招商中心报送")  # 县22 is 县招商投资中心's
    assert "未分配给县发改局" in last_text(runtime, LIAISON)
    assert reports(runtime) == []


def test_same_update_delivered_twice_is_processed_once(runtime: Runtime, bound: Conversation) -> None:
    first = say(bound, LIAISON, "/report 12 按计划推进 已对接5家企业", update_key="dup-1")
    second = say(bound, LIAISON, "/report 12 按计划推进 已对接5家企业", update_key="dup-1")
    assert not first.duplicate and second.duplicate
    assert len(reports(runtime)) == 1


def test_edited_message_changes_nothing(runtime: Runtime, bound: Conversation) -> None:
    say(bound, LIAISON, "/report 12 按计划推进 改过的说明", edited=True)
    assert "不会改变已记录的内容" in last_text(runtime, LIAISON)
    assert reports(runtime) == []


def test_oversize_note_is_refused(runtime: Runtime, bound: Conversation) -> None:
    say(bound, LIAISON, "/report 12 按计划推进 " + "很" * 1001)
    assert "说明太长(1001 字)" in last_text(runtime, LIAISON)
    assert reports(runtime) == []


def test_oversize_file_is_refused_and_nothing_stored(runtime: Runtime, bound: Conversation) -> None:
    huge = IncomingFile(file_id="big", file_name="方案.pdf", size=25 * 1024 * 1024)
    say(bound, LIAISON, "", files=(huge,))
    assert "超过 20 MB" in last_text(runtime, LIAISON)
    assert reports(runtime) == []


def test_unsupported_attachment_type_is_refused(runtime: Runtime, bound: Conversation, tmp_path: Path) -> None:
    file = staged_file(tmp_path, "virus.exe")
    say(bound, LIAISON, "", files=(file,))
    assert "不支持的文件类型" in last_text(runtime, LIAISON)
    assert not file.staged.staged_path.exists()  # type: ignore[union-attr]


def test_stray_text_gets_guidance(runtime: Runtime, bound: Conversation) -> None:
    say(bound, LIAISON, "你好")
    assert "没有看懂" in last_text(runtime, LIAISON)


# --- listing and reporting ---------------------------------------------------------------------


def test_tasks_lists_lead_and_responsible_apart_with_state_and_due(runtime: Runtime, bound: Conversation) -> None:
    say(bound, LIAISON, "/tasks")
    text = last_text(runtime, LIAISON)
    lead, responsible = text.split("牵头任务")[1].split("责任任务")
    assert "县1 地区生产总值增长6.5%" in lead and "细化方案报送 · 截止 2月29日" in lead
    assert "县12 " in responsible and "第一季度进展督办 · 截止 3月25日" in responsible
    assert "待报送" in text


def test_tasks_of_a_unit_with_many_are_paged_with_buttons(runtime: Runtime, bound: Conversation) -> None:
    town = 4242
    say(bound, town, f"/start {invite(runtime, '簰洲湾镇人民政府')}")
    say(bound, town, "/tasks")
    first = last_text(runtime, town)
    pages = int(first.split("页")[0].rsplit("/", 1)[1])
    assert pages > 1 and "第 1/" in first and len(first) < 2000
    [forward] = last_buttons(runtime, town)
    assert forward["text"] == "下一页 »"
    say(bound, town, callback=forward["data"])
    second = outbox(runtime, town)[-1]
    assert second.payload["edit_of"] == "menu" and "第 2/" in second.payload["text"]
    assert {b["text"] for b in second.payload["buttons"][0]} >= {"« 上一页"}
    shown = [
        line.split()[0]
        for text in (first, second.payload["text"])
        for line in text.splitlines()
        if line.startswith(("县", "市"))
    ]
    assert len(shown) == len(set(shown))  # no task on two pages


def test_one_line_report_is_recorded_and_confirmed(runtime: Runtime, bound: Conversation) -> None:
    say(bound, LIAISON, "/report 12 按计划推进 已对接绿色食品企业5家")
    [report] = reports(runtime)
    assert (report.status, report.note, report.on_time, report.via) == (
        "on_track",
        "已对接绿色食品企业5家",
        True,
        "line",
    )
    confirmation = last_text(runtime, LIAISON)
    assert "已记录" in confirmation and "按计划推进" in confirmation and "按时报送" in confirmation
    assert obligation_state(runtime, "县发改局", "county", 12, "2024-q1") == "answered"


def test_chinese_one_line_report_with_full_width_punctuation(runtime: Runtime, bound: Conversation) -> None:
    say(bound, LIAISON, "报告12　存在风险：用地指标尚未落实")
    [report] = reports(runtime)
    assert (report.status, report.note) == ("at_risk", "用地指标尚未落实")


def test_city_task_reference(runtime: Runtime, bound: Conversation) -> None:
    say(bound, LIAISON, "/report 市12 按计划推进 流域治理方案已报")
    [report] = reports(runtime)
    assert report.task.annex == "city" and report.task.number == 12


def test_missing_status_is_asked_with_buttons(runtime: Runtime, bound: Conversation) -> None:
    say(bound, LIAISON, "/report 12 已对接企业")
    assert "请选择进展状态" in last_text(runtime, LIAISON)
    behind = next(b for b in last_buttons(runtime, LIAISON) if b["text"] == "进度滞后")
    say(bound, LIAISON, callback=behind["data"])
    [report] = reports(runtime)
    assert (report.status, report.note) == ("behind", "已对接企业")


def test_lead_task_owes_the_refined_plan_as_a_document(runtime: Runtime, bound: Conversation, tmp_path: Path) -> None:
    say(bound, LIAISON, "/report 1 按计划推进 细化方案已审定")
    assert "需上传" in last_text(runtime, LIAISON)
    assert reports(runtime) == []
    file = staged_file(tmp_path, "县1细化方案.pdf")
    say(bound, LIAISON, "", files=(file,))
    [report] = reports(runtime)
    assert report.checkpoint_id is not None and report.note == "细化方案已审定"
    assert file.staged is not None and not file.staged.staged_path.exists(), "the staged copy is gone once stored"
    assert obligation_state(runtime, "县发改局", "county", 1, "refined-plan") == "answered"
    [attachment] = report.attachments
    assert Path(attachment.stored_path).read_bytes() == b"%PDF-1.4 refined plan"
    assert attachment.file_name == "县1细化方案.pdf" and attachment.size == len(b"%PDF-1.4 refined plan")


def test_menu_report_picks_task_status_note_and_confirms(runtime: Runtime, bound: Conversation) -> None:
    say(bound, LIAISON, "/report")
    assert "第 1/" in last_text(runtime, LIAISON)
    nxt = next(b for b in last_buttons(runtime, LIAISON) if "下一页" in b["text"])
    say(bound, LIAISON, callback=nxt["data"])
    assert "第 2/" in last_text(runtime, LIAISON)
    assert outbox(runtime, LIAISON)[-1].payload["edit_of"] == "menu"
    task_button = next(b for b in last_buttons(runtime, LIAISON) if b["text"].startswith("县21 "))
    say(bound, LIAISON, callback=task_button["data"])
    done = next(b for b in last_buttons(runtime, LIAISON) if b["text"] == "已完成")
    say(bound, LIAISON, callback=done["data"])
    assert "请用一段话说明进展" in last_text(runtime, LIAISON)
    say(bound, LIAISON, "技改项目已完成投资3亿元")
    assert "请确认报送内容" in last_text(runtime, LIAISON)
    assert reports(runtime) == []
    confirm = next(b for b in last_buttons(runtime, LIAISON) if b["text"] == "确认提交")
    say(bound, LIAISON, callback=confirm["data"])
    [report] = reports(runtime)
    assert (report.task.number, report.status, report.note, report.via) == (
        21,
        "done",
        "技改项目已完成投资3亿元",
        "menu",
    )


def test_old_menu_button_is_refused(runtime: Runtime, bound: Conversation) -> None:
    say(bound, LIAISON, "/report")
    stale = last_buttons(runtime, LIAISON)[0]["data"]
    say(bound, LIAISON, "/report")
    say(bound, LIAISON, callback=stale)
    assert "按钮已失效" in last_text(runtime, LIAISON)


def test_cancel_discards_the_draft(runtime: Runtime, bound: Conversation) -> None:
    say(bound, LIAISON, "/report 12 已对接企业")
    say(bound, LIAISON, "/cancel")
    assert "已取消" in last_text(runtime, LIAISON)
    say(bound, LIAISON, "按计划推进")
    assert reports(runtime) == []


def test_every_report_is_appended_never_overwritten(runtime: Runtime, bound: Conversation) -> None:
    say(bound, LIAISON, "/report 12 按计划推进 第一次")
    say(bound, LIAISON, "/report 12 已完成 第二次")
    assert [r.note for r in reports(runtime)] == ["第一次", "第二次"]


def test_late_report_is_marked_late(runtime: Runtime, bound: Conversation, clock: ManualClock) -> None:
    clock.set(local(2024, 3, 27, 10))
    say(bound, LIAISON, "/report 12 进度滞后 补报")
    [report] = reports(runtime)
    assert report.on_time is False
    assert "逾期报送" in last_text(runtime, LIAISON)


# --- replying to reminders -----------------------------------------------------------------------


def urge_and_send(runtime: Runtime, conv: Conversation, unit: str, message_id: str) -> int:
    say(conv, OFFICE, f"/urge {unit}")
    [urge] = [row for row in outbox(runtime, LIAISON, kind="urge")][-1:]
    mark_sent(runtime, urge.id, message_id)
    return urge.id


def test_reply_to_a_reminder_with_a_task_number_records_it(runtime: Runtime, bound: Conversation) -> None:
    urge_and_send(runtime, bound, "县发改局", "tg-500")
    say(bound, LIAISON, "12 按计划推进 已完成签约", reply_to="tg-500")
    [report] = reports(runtime)
    assert (report.task.number, report.status, report.via) == (12, "on_track", "reply")


def test_reply_without_task_number_to_a_many_task_reminder_asks_which(runtime: Runtime, bound: Conversation) -> None:
    urge_and_send(runtime, bound, "县发改局", "tg-501")
    say(bound, LIAISON, "按计划推进 都在推进", reply_to="tg-501")
    assert "请选择您报送的是哪一项" in last_text(runtime, LIAISON)
    choice = next(b for b in last_buttons(runtime, LIAISON) if b["text"].startswith("县12 "))
    say(bound, LIAISON, callback=choice["data"])
    [report] = reports(runtime)
    assert (report.task.number, report.note) == (12, "都在推进")


def test_reply_to_another_units_reminder_is_refused(runtime: Runtime, bound: Conversation) -> None:
    say(bound, OFFICE, "/urge 县招商投资中心")
    urge = outbox(runtime, OTHER, kind="urge")[-1]
    mark_sent(runtime, urge.id, "tg-777")
    # the liaison of 县发改局 cannot answer it (a forwarded message id, say)
    with runtime.transaction() as session:
        from storage.models import OutboxMessage

        row = session.get(OutboxMessage, urge.id)
        assert row is not None
        row.chat_id = str(LIAISON)
    say(bound, LIAISON, "按计划推进 代答", reply_to="tg-777")
    assert "您没有绑定该单位" in last_text(runtime, LIAISON)
    assert reports(runtime) == []


# --- office --------------------------------------------------------------------------------------------


def test_office_commands_need_the_office_role(runtime: Runtime, bound: Conversation) -> None:
    say(bound, LIAISON, "/overdue")
    assert "仅限县政府政务督查室" in last_text(runtime, LIAISON)


def test_overdue_is_one_screen_with_the_full_list_attached(
    runtime: Runtime, bound: Conversation, clock: ManualClock
) -> None:
    clock.set(local(2024, 3, 2, 9))
    say(bound, OFFICE, "/overdue")
    [answer] = outbox(runtime, OFFICE)[-1:]
    text, document = answer.payload["text"], answer.payload["document"]
    assert text.startswith("逾期未报送(2024-03-02 09:00):28 个单位、109 项")
    assert text.count("项,最长逾期 2 天") == 5 and len(text) < 1000
    assert document["file_name"] == "逾期清单-20240302-0900.xlsx" and Path(document["path"]).stat().st_size > 0


def test_overdue_of_a_unit_lists_its_items(runtime: Runtime, bound: Conversation, clock: ManualClock) -> None:
    clock.set(local(2024, 3, 2, 9))
    say(bound, OFFICE, "逾期 县发改局")
    text = last_text(runtime, OFFICE)
    assert text.startswith("【县发改局】逾期未报送 9 项,最长逾期 2 天")
    assert "县1 地区生产总值增长6.5% · 细化方案报送 · 逾期 2 天" in text
    assert "document" not in outbox(runtime, OFFICE)[-1].payload  # nine items fit on the screen


def test_overdue_of_a_task_lists_the_units_owing_it(runtime: Runtime, bound: Conversation, clock: ManualClock) -> None:
    clock.set(local(2024, 3, 2, 9))
    say(bound, OFFICE, "/overdue 1")
    text = last_text(runtime, OFFICE)
    assert text.startswith("【县1】1 个单位逾期未报送") and "县发改局 · 细化方案报送 · 逾期 2 天" in text


def test_overdue_of_an_unknown_unit_says_so(runtime: Runtime, bound: Conversation, clock: ManualClock) -> None:
    say(bound, OFFICE, "/overdue 不存在局")
    assert "不存在局" in last_text(runtime, OFFICE)


def test_urge_sends_a_recorded_reminder_to_the_units_liaisons(runtime: Runtime, bound: Conversation) -> None:
    say(bound, OFFICE, "/urge 县发改局")
    assert "已催办 1 个单位:县发改局" in last_text(runtime, OFFICE)
    [urge] = outbox(runtime, LIAISON, kind="urge")
    assert "【催办】" in urge.payload["text"] and "牵头任务" in urge.payload["text"]


def test_urge_understands_a_short_unit_name(runtime: Runtime, bound: Conversation) -> None:
    say(bound, OFFICE, "/urge 发改")
    assert "已催办 1 个单位:县发改局" in last_text(runtime, OFFICE)


def test_urge_of_a_name_fitting_several_units_offers_them_and_sends_nothing(
    runtime: Runtime, bound: Conversation
) -> None:
    say(bound, OFFICE, "/urge 县城")
    text = last_text(runtime, OFFICE)
    assert "可能是以下单位之一" in text and "县城投公司" in text
    assert outbox(runtime, LIAISON, kind="urge") == []


def test_the_office_asks_for_a_units_tasks_by_its_short_name(runtime: Runtime, bound: Conversation) -> None:
    say(bound, OFFICE, "/tasks 发改局")
    assert "县发改局" in last_text(runtime, OFFICE) and "县45" in last_text(runtime, OFFICE)


def test_urge_of_a_unit_with_nobody_bound_says_so(runtime: Runtime, bound: Conversation) -> None:
    say(bound, OFFICE, "/urge 县林业局")
    assert "无人绑定、无法催办:县林业局" in last_text(runtime, OFFICE)


def test_accept_marks_the_submission_accepted(runtime: Runtime, bound: Conversation) -> None:
    say(bound, LIAISON, "/report 12 按计划推进 已对接")
    say(bound, OFFICE, "/accept 12 县发改局")
    assert "已通过" in last_text(runtime, OFFICE)
    assert obligation_state(runtime, "县发改局", "county", 12, "2024-q1") == "accepted"
    assert "审核通过" in last_text(runtime, LIAISON)


def test_return_makes_it_owed_again_and_tells_the_liaison_why(runtime: Runtime, bound: Conversation) -> None:
    say(bound, LIAISON, "/report 12 按计划推进 已对接")
    say(bound, OFFICE, "/return 12 县发改局 请补充对接企业名单")
    assert obligation_state(runtime, "县发改局", "county", 12, "2024-q1") == "returned"
    notice = last_text(runtime, LIAISON)
    assert "退回" in notice and "请补充对接企业名单" in notice
    with runtime.transaction() as session:
        assert session.scalar(select(Review.decision)) == "returned"
    say(bound, LIAISON, "/report 12 按计划推进 补充名单:甲、乙")
    assert obligation_state(runtime, "县发改局", "county", 12, "2024-q1") == "answered"


def test_accept_names_the_unit_as_people_type_it(runtime: Runtime, bound: Conversation) -> None:
    say(bound, LIAISON, "/report 12 按计划推进 已对接")
    say(bound, OFFICE, "/accept 12 发改局")
    assert obligation_state(runtime, "县发改局", "county", 12, "2024-q1") == "accepted"


def test_accept_with_nothing_submitted_is_a_clear_answer(runtime: Runtime, bound: Conversation) -> None:
    say(bound, OFFICE, "/accept 12 县发改局")
    assert "目前没有可通过的报送" in last_text(runtime, OFFICE)


def test_who_lists_bound_people_and_units_with_nobody(runtime: Runtime, bound: Conversation) -> None:
    say(bound, OFFICE, "/who")
    text = last_text(runtime, OFFICE)
    assert "【县发改局】" in text and "无人绑定:" in text and "县林业局" in text.split("无人绑定:")[1]


def test_office_adds_an_adhoc_round(runtime: Runtime, bound: Conversation) -> None:
    say(bound, OFFICE, "/round flood 2024-07-10 41,43,44 防汛专项督查")
    assert "已新增督查轮次【防汛专项督查】" in last_text(runtime, OFFICE)
    say(bound, OFFICE, "/round flood 2024-07-10 41 重复")
    assert "已被使用" in last_text(runtime, OFFICE)
    say(bound, OFFICE, "/round past 2024-01-01 41 过去的")
    assert "必须晚于现在" in last_text(runtime, OFFICE)


def test_incoming_updates_are_remembered(runtime: Runtime, bound: Conversation) -> None:
    with runtime.transaction() as session:
        assert session.scalar(select(func.count()).select_from(InboundUpdate)) == 3
