"""Figures against a task's targets over WeCom: a status picked on the card, then the figure typed, as WeCom delivers them."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import select

from storage.models import Target, TargetValue
from tests.test_wecom import LIAISON, WeComUser, body_text, fake, member  # noqa: F401  (fixtures)

pytestmark = pytest.mark.asyncio


def figures(user: WeComUser) -> dict[str, float]:
    with user.service.runtime.transaction() as session:
        rows = session.execute(
            select(Target.metric, TargetValue.value).join(Target, Target.id == TargetValue.target_id)
        )
        return {metric: value for metric, value in rows}


async def test_after_a_card_answer_the_receipt_asks_for_the_figure_and_a_typed_one_is_kept(
    member: WeComUser,  # noqa: F811
) -> None:
    card = await member.says(LIAISON, "报告 12 已对接5家企业")
    buttons = {b["text"]: b["key"] for b in card["template_card"]["button_list"]}
    member.fake.register_response_code("code-f")
    await member.press(LIAISON, buttons["按计划推进"], card["template_card"]["task_id"], "code-f")
    deadline = time.monotonic() + 20
    receipt = ""
    while "请回复目标完成值" not in receipt and time.monotonic() < deadline:
        receipt = "\n".join(body_text(m) for m in member.to(LIAISON))
        await asyncio.sleep(0.02)
    assert "绿色食品全产业链规模 已完成 ___ 亿元(目标 165亿元)" in receipt
    answer = await member.says(LIAISON, "80亿元")
    assert "已记录目标完成值" in body_text(answer)
    assert figures(member) == {"绿色食品全产业链规模": 80}
