"""Figures against a task's targets, reported over Telegram: the real PTB client against the fake Bot API."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from storage.models import Target, TargetValue
from tests.conftest import local
from tests.telegram_harness import Running
from tests.test_telegram import LIAISON, bot, bound, fake  # noqa: F401  (fixtures)

pytestmark = pytest.mark.asyncio


def figures(bot: Running) -> dict[str, float]:  # noqa: F811
    with bot.service.runtime.transaction() as session:
        rows = session.execute(
            select(Target.metric, TargetValue.value).join(Target, Target.id == TargetValue.target_id)
        )
        return {metric: value for metric, value in rows}


async def test_the_receipt_asks_for_the_figure_and_the_answer_records_it(bound: Running) -> None:  # noqa: F811
    receipt = await bound.say(LIAISON, "/report 12 按计划推进 已对接绿色食品企业5家")
    assert "请回复目标完成值" in (receipt.text or "") and "绿色食品全产业链规模 已完成 ___ 亿元" in (receipt.text or "")
    answer = await bound.say(LIAISON, "80亿元")
    assert "已记录目标完成值" in (answer.text or "") and "80亿元(目标 165亿元" in (answer.text or "")
    assert figures(bound) == {"绿色食品全产业链规模": 80}


async def test_a_reply_to_a_reminder_may_carry_the_figure(bound: Running) -> None:  # noqa: F811
    bound.clock.set(local(2024, 3, 18, 9))  # Q1's -7d rung
    await bound.remind()
    reminder = await bound.fake.wait_for_async(
        lambda m: m.chat_id == LIAISON and "【督办提醒】第一季度" in (m.text or "")
    )
    receipt = await bound.say(LIAISON, "12 按计划推进 全产业链规模 40亿", reply_to=reminder.message_id)
    assert "已完成 24%" in (receipt.text or "")
    assert figures(bound) == {"绿色食品全产业链规模": 40}
