"""The Telegram bot end to end: the real python-telegram-bot application against the fake Bot API server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from core.clock import ManualClock
from core.config import PersonRole
from storage.models import Identity, OutboxMessage, StatusReport
from tests.conftest import local
from tests.fakes.telegram_api import FakeTelegram
from tests.telegram_harness import Running, running_service, telegram_settings

LIAISON = 5001  # 县发改局
OTHER = 5002  # 县招商投资中心
OFFICE = 5009
STRANGER = 5666


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram(enforce_limits=False) as server:
        yield server


@pytest_asyncio.fixture
async def bot(tmp_path: Path, fake: FakeTelegram, db_backend: str) -> AsyncIterator[Running]:
    async with running_service(telegram_settings(tmp_path, fake, db_backend), fake) as running:
        yield running


@pytest_asyncio.fixture
async def bound(bot: Running) -> Running:
    await bot.bind(LIAISON, "县发改局")
    await bot.bind(OTHER, "县招商投资中心")
    await bot.bind(OFFICE, "县政府政务督查室", PersonRole.OFFICE)
    return bot


def reports(bot: Running) -> list[StatusReport]:
    with bot.service.runtime.transaction() as session:
        return list(
            session.scalars(
                select(StatusReport)
                .options(selectinload(StatusReport.task), selectinload(StatusReport.attachments))
                .order_by(StatusReport.id)
            )
        )


pytestmark = pytest.mark.asyncio


async def test_command_menu_is_set(bot: Running) -> None:
    commands = [c["command"] for c in bot.fake.commands or []]
    assert {"tasks", "report", "help"} <= set(commands)


async def test_deep_link_code_binds_the_account(bot: Running) -> None:
    reply = await bot.say(LIAISON, f"/start {bot.invite('县发改局')}")
    assert "绑定成功:您现在是【县发改局】的联络员" in (reply.text or "")


async def test_start_with_a_code_in_a_group_binds_nothing(bot: Running) -> None:
    group = -4242
    code = bot.invite("县政府政务督查室", PersonRole.OFFICE)
    bot.fake.group_message(group, OFFICE, f"/start {code}")
    answer = await bot.next_to(group, 0)
    assert "私聊" in (answer.text or "") and "没有被绑定" in (answer.text or "")
    with bot.service.runtime.transaction() as session:
        assert session.scalars(select(Identity)).all() == []
    # The code is still good in the private chat.
    assert "绑定成功" in ((await bot.say(OFFICE, f"/start {code}")).text or "")


async def test_office_staff_make_a_group_an_office_group_chat(bound: Running) -> None:
    group = -4243
    bound.fake.group_message(group, OFFICE, "/officegroup")
    assert "已将本群设为督查室工作群" in ((await bound.next_to(group, 0)).text or "")
    with bound.service.runtime.transaction() as session:
        from core.runtime import current_plan

        plan = current_plan(session, bound.service.settings)
        assert plan is not None
        targets = bound.service.digest.targets(session, plan)
    assert ("telegram", str(group), None) in targets
    bound.fake.group_message(group, LIAISON, "/officegroup")  # not office staff
    assert "仅限县政府政务督查室" in ((await bound.next_to(group, 1)).text or "")


async def test_stranger_is_told_how_to_bind_and_nothing_happens(bot: Running) -> None:
    reply = await bot.say(STRANGER, "/report 12 按计划推进 代报")
    assert "绑定码" in (reply.text or "")
    assert reports(bot) == []


async def test_tasks_lists_the_units_tasks(bound: Running) -> None:
    reply = await bound.say(LIAISON, "/tasks")
    assert "牵头任务(9 项)" in (reply.text or "") and "县45" in (reply.text or "")


async def test_one_line_report_is_recorded_with_the_message_id(bound: Running) -> None:
    reply = await bound.say(LIAISON, "/report 12 按计划推进 已对接绿色食品企业5家")
    assert "已记录" in (reply.text or "")
    [report] = reports(bound)
    assert (report.task.number, report.status, report.platform) == (12, "on_track", "telegram")
    assert report.platform_message_id is not None and report.on_time
    assert reply.reply_to_message_id == int(report.platform_message_id)


async def test_report_by_menu_with_buttons(bound: Running) -> None:
    menu = await bound.say(LIAISON, "/report")
    assert menu.reply_markup is not None
    page_two = await bound.press(LIAISON, menu, "下一页 »")
    assert page_two.method == "editMessageText" and page_two.message_id == menu.message_id
    status = await bound.press(
        LIAISON,
        page_two,
        next(
            b["text"]
            for row in page_two.reply_markup["inline_keyboard"]
            for b in row
            if b["text"].startswith("县21 ")  # type: ignore[index]
        ),
    )
    ask = await bound.press(LIAISON, status, "存在风险")
    assert "请用一段话说明进展" in (ask.text or "")
    confirm = await bound.say(LIAISON, "两个技改项目用地未落实")
    done = await bound.press(LIAISON, confirm, "确认提交")
    assert "已记录" in (done.text or "")
    [report] = reports(bound)
    assert (report.task.number, report.status, report.note, report.via) == (
        21,
        "at_risk",
        "两个技改项目用地未落实",
        "menu",
    )
    assert bound.fake.answered_callbacks, "button presses are acknowledged"


async def test_reply_to_a_reminder_records_against_its_task(bound: Running) -> None:
    bound.clock.set(local(2024, 3, 18, 9))  # Q1's -7d rung
    await bound.remind()
    reminder = await bound.fake.wait_for_async(
        lambda m: m.chat_id == LIAISON and "【督办提醒】第一季度" in (m.text or "")
    )
    confirmation = await bound.say(LIAISON, "12 按计划推进 已签约两家", reply_to=reminder.message_id)
    assert "已记录" in (confirmation.text or "")
    [report] = reports(bound)
    assert (report.task.number, report.via, report.checkpoint_id is not None) == (12, "reply", True)


async def test_refined_plan_document_is_downloaded_and_kept(bound: Running) -> None:
    content = b"%PDF-1.7 \xe7\xbb\x86\xe5\x8c\x96\xe6\x96\xb9\xe6\xa1\x88"
    ask = await bound.say(LIAISON, "/report 1 按计划推进 细化方案经局长审定")
    assert "需上传" in (ask.text or "")
    before = len(bound.fake.messages_to(LIAISON))
    bound.fake.user_document(LIAISON, "县1细化方案.pdf", content)
    done = await bound.next_to(LIAISON, before)
    assert "已记录" in (done.text or "") and "县1细化方案.pdf" in (done.text or "")
    [report] = reports(bound)
    [attachment] = report.attachments
    assert Path(attachment.stored_path).read_bytes() == content
    assert attachment.size == len(content) and attachment.file_id


async def test_cross_unit_report_is_refused(bound: Running) -> None:
    reply = await bound.say(LIAISON, "/report 22 按计划推进 替招商中心报")
    assert "未分配给县发改局" in (reply.text or "")
    assert reports(bound) == []


async def test_same_update_delivered_twice_is_processed_once(bound: Running) -> None:
    before = len(bound.fake.messages_to(LIAISON))
    bound.fake.user_message(LIAISON, "/report 12 按计划推进 只报一次")
    await bound.next_to(LIAISON, before)
    update = bound.fake.last_update
    assert update is not None
    bound.fake.push_update(update)
    await bound.say(LIAISON, "/whoami")  # handled after the duplicate
    assert len(reports(bound)) == 1


async def test_oversize_file_is_refused_and_nothing_stored(bound: Running, tmp_path: Path) -> None:
    before = len(bound.fake.messages_to(LIAISON))
    bound.fake.user_document(LIAISON, "大文件.pdf", b"x", size_override=25 * 1024 * 1024)
    reply = await bound.next_to(LIAISON, before)
    assert "超过 20 MB" in (reply.text or "")
    assert reports(bound) == []
    assert not [p for p in (tmp_path / "files").rglob("*") if p.is_file()]


async def test_office_accepts_and_returns(bound: Running) -> None:
    await bound.say(LIAISON, "/report 12 按计划推进 已对接")
    accepted = await bound.say(OFFICE, "/accept 12 县发改局")
    assert "已通过" in (accepted.text or "")
    await bound.fake.wait_for_async(lambda m: m.chat_id == LIAISON and "审核通过" in (m.text or ""))
    asked = await bound.say(OFFICE, "/return 12 县发改局 请附对接企业名单")
    assert "已审核通过" in (asked.text or "") and "确认退回" in (asked.text or "")  # undoing an acceptance
    returned = await bound.say(OFFICE, "/return 12 县发改局 确认退回 请附对接企业名单")
    assert "已退回" in (returned.text or "")
    notice = await bound.fake.wait_for_async(lambda m: m.chat_id == LIAISON and "【退回】" in (m.text or ""))
    assert "请附对接企业名单" in (notice.text or "")


async def test_edited_message_changes_nothing(bound: Running) -> None:
    before = len(bound.fake.messages_to(LIAISON))
    update = bound.fake.user_message(LIAISON, "你好")
    await bound.next_to(LIAISON, before)
    bound.fake.user_edit(LIAISON, update["message"]["message_id"], "/report 12 按计划推进 改过")
    reply = await bound.next_to(LIAISON, before + 1)
    assert "不会改变已记录的内容" in (reply.text or "")
    assert reports(bound) == []


async def test_blocked_user_is_marked_unreachable(bound: Running) -> None:
    bound.fake.block_user(LIAISON)
    bound.clock.set(local(2024, 3, 18, 9))
    await bound.remind()
    for _ in range(200):
        with bound.service.runtime.transaction() as session:
            identity = session.scalar(select(Identity).where(Identity.external_id == str(LIAISON)))
            if identity is not None and not identity.reachable:
                break
        await asyncio.sleep(0.02)
    assert identity is not None and not identity.reachable
    with bound.service.runtime.transaction() as session:
        states = set(session.scalars(select(OutboxMessage.state).where(OutboxMessage.chat_id == str(LIAISON))))
    assert "unreachable" in states


async def test_webhook_refuses_a_forged_call(tmp_path: Path, fake: FakeTelegram, db_backend: str) -> None:
    settings = telegram_settings(
        tmp_path,
        fake,
        db_backend,
        DUBAN_TELEGRAM_MODE="webhook",
        DUBAN_TELEGRAM_WEBHOOK_SECRET="s3cret-token",
        DUBAN_TELEGRAM_WEBHOOK_URL="https://duban.example/telegram/webhook",
    )
    async with running_service(settings, fake) as running:
        assert fake.webhook is not None and fake.webhook.get("secret_token") == "s3cret-token"
        url = f"http://127.0.0.1:{running.service.port}/telegram/webhook"
        update = {
            "update_id": 9,
            "message": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": STRANGER, "type": "private"},
                "from": {"id": STRANGER, "is_bot": False, "first_name": "x"},
                "text": "hi",
            },
        }
        assert await fake.post_update_to_async(url, update, "wrong") == 403
        assert await fake.post_update_to_async(url, update, None) == 403
        assert fake.messages_to(STRANGER) == []
        assert await fake.post_update_to_async(url, update, "s3cret-token") == 200
        reply = await running.next_to(STRANGER, 0)
        assert "绑定码" in (reply.text or "")


async def test_the_scheduler_sends_due_reminders_by_itself(tmp_path: Path, fake: FakeTelegram, db_backend: str) -> None:
    settings = telegram_settings(tmp_path, fake, db_backend, DUBAN_ESCALATION_RESOLUTION="1s")
    clock = ManualClock(local(2024, 2, 21, 10))
    async with running_service(settings, fake, clock) as running:
        await running.bind(LIAISON, "县发改局")
        clock.set(local(2024, 2, 22, 9, 0, 30))  # the -7d rung of the refined plan has come
        reminder = await fake.wait_for_async(
            lambda m: m.chat_id == LIAISON and "【督办提醒】" in (m.text or ""), timeout=10
        )
        assert "细化方案报送" in (reminder.text or "")


async def test_office_exports_the_notification_in_chat(bound: Running) -> None:
    before = len(bound.fake.messages_to(OFFICE))
    bound.fake.user_message(OFFICE, "/export refined-plan xlsx")
    document = await bound.next_to(OFFICE, before)
    assert document.method == "sendDocument"
    assert document.document is not None and document.document["file_name"].endswith(".xlsx")
    assert document.document["content"][:2] == b"PK"  # a zip container: a real XLSX
    usage = await bound.say(OFFICE, "/export")
    assert "用法" in (usage.text or "") and "2024-q1" in (usage.text or "")
