"""Reporting figures against a task's targets in chat: in one line, as the answer to the bot's question, or skipped."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from core.clock import ManualClock
from core.conversation import Conversation
from core.runtime import Runtime
from storage.models import StatusReport, Target, TargetValue
from tests.conftest import local
from tests.support import invite, last_text, make_conversation, say, staged_file

LIAISON = 3301  # 县住建局, lead of 市33 (改造城镇老旧小区434个,农村危房改造开工399户 …)


@pytest.fixture
def conv(runtime: Runtime, clock: ManualClock, tmp_path: Path) -> Conversation:
    conversation = make_conversation(runtime)
    say(conversation, LIAISON, f"/start {invite(runtime, '县住建局')}")
    plan = staged_file(tmp_path, "市33细化方案.pdf")
    say(conversation, LIAISON, "/report 市33 按计划推进 细化方案", files=(plan,))
    assert "细化方案报送" in last_text(runtime, LIAISON)
    clock.set(local(2024, 3, 20, 9))
    return conversation


def figures(runtime: Runtime) -> dict[str, float]:
    with runtime.transaction() as session:
        rows = session.execute(
            select(Target.metric, TargetValue.value).join(Target, Target.id == TargetValue.target_id)
        )
        return {metric: value for metric, value in rows}


def test_the_refined_plan_upload_is_not_asked_for_figures(runtime: Runtime, conv: Conversation) -> None:
    with runtime.transaction() as session:
        first = session.scalars(select(StatusReport).order_by(StatusReport.id)).first()
    assert first is not None and first.checkpoint_id is not None
    assert figures(runtime) == {}


def test_figures_named_in_a_one_line_report_are_kept_with_the_report(runtime: Runtime, conv: Conversation) -> None:
    say(conv, LIAISON, "/report 市33 按计划推进 老旧小区 220 危房 150 已开工")
    receipt = last_text(runtime, LIAISON)
    assert "改造城镇老旧小区:220个(目标 434个,已完成 51%" in receipt
    assert figures(runtime) == {"改造城镇老旧小区": 220, "农村危房改造开工": 150}
    with runtime.transaction() as session:
        report = session.scalars(select(StatusReport).order_by(StatusReport.id.desc())).first()
    assert report is not None and report.note == "老旧小区 220 危房 150 已开工"  # the note as typed


def test_the_figures_not_given_are_asked_for_after_the_receipt(runtime: Runtime, conv: Conversation) -> None:
    say(conv, LIAISON, "/report 市33 按计划推进 老旧小区 220")
    receipt = last_text(runtime, LIAISON)
    assert "请回复目标完成值" in receipt
    assert "农村危房改造开工 已完成 ___ 户(目标 399户)" in receipt
    assert "改造城镇老旧小区 已完成 ___" not in receipt


def test_bare_figures_answer_the_question_in_the_listed_order(runtime: Runtime, conv: Conversation) -> None:
    say(conv, LIAISON, "/report 市33 按计划推进 已开工")
    say(conv, LIAISON, "220 150 200 500")
    answer = last_text(runtime, LIAISON)
    assert answer.startswith("【已记录目标完成值】")
    assert figures(runtime) == {
        "改造城镇老旧小区": 220,
        "农村危房改造开工": 150,
        "保障性租赁住房计划开工": 200,
        "公租房租赁补贴发放": 500,
    }


def test_a_figure_in_the_wrong_unit_is_refused_and_asked_again(runtime: Runtime, conv: Conversation) -> None:
    say(conv, LIAISON, "/report 市33 按计划推进 已开工")
    say(conv, LIAISON, "老旧小区 220户")
    answer = last_text(runtime, LIAISON)
    assert "单位“户”与目标单位“个”不一致" in answer and "请回复目标完成值" in answer
    assert figures(runtime) == {}
    say(conv, LIAISON, "老旧小区 220个")
    assert figures(runtime) == {"改造城镇老旧小区": 220}


def test_skip_ends_the_question_and_keeps_the_report(runtime: Runtime, conv: Conversation) -> None:
    say(conv, LIAISON, "/report 市33 按计划推进 已开工")
    say(conv, LIAISON, "跳过")
    assert "不填写目标完成值" in last_text(runtime, LIAISON)
    say(conv, LIAISON, "220")
    assert figures(runtime) == {}


def test_text_without_figures_is_handled_as_usual(runtime: Runtime, conv: Conversation) -> None:
    say(conv, LIAISON, "/report 市33 按计划推进 已开工")
    say(conv, LIAISON, "你好")
    assert "没有看懂" in last_text(runtime, LIAISON) or "发送" in last_text(runtime, LIAISON)
    say(conv, LIAISON, "220")
    assert figures(runtime) == {}
