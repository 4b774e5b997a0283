"""A typed note is never lost: a status word the bot does not know falls back to the status menu, note kept."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.config import PersonRole
from core.conversation import Conversation
from core.reporting import StatusCode, split_status
from core.runtime import Runtime
from storage.models import StatusReport
from tests.support import invite, last_buttons, last_text, make_conversation, mark_sent, outbox, say

LIAISON = 1001  # 县发改局
OFFICE = 9001


@pytest.fixture
def bound(runtime: Runtime) -> Conversation:
    conv = make_conversation(runtime)
    say(conv, LIAISON, f"/start {invite(runtime, '县发改局')}")
    say(conv, OFFICE, f"/start {invite(runtime, '县发改局', PersonRole.OFFICE)}")
    return conv


def recorded(runtime: Runtime) -> list[tuple[int, str, str]]:
    with runtime.transaction() as session:
        return [
            (r.task.number, r.status, r.note) for r in session.scalars(select(StatusReport).order_by(StatusReport.id))
        ]


def press(runtime: Runtime, conv: Conversation, text: str) -> None:
    button = next(b for b in last_buttons(runtime, LIAISON) if b["text"] == text)
    say(conv, LIAISON, callback=button["data"])


@pytest.mark.parametrize(
    ("typed", "status", "note"),
    [
        ("进展顺利 已完成可研", StatusCode.ON_TRACK, "已完成可研"),
        ("完成 项目已投产", StatusCode.DONE, "项目已投产"),
        ("已办结。", StatusCode.DONE, ""),
        ("稳步推进,已签约", StatusCode.ON_TRACK, "已签约"),
        ("进度缓慢 用地未落实", StatusCode.BEHIND, "用地未落实"),
        ("需要支持 资金缺口", StatusCode.NEEDS_COORDINATION, "资金缺口"),
    ],
)
def test_common_ways_of_saying_a_status_are_understood(typed: str, status: StatusCode, note: str) -> None:
    assert split_status(typed) == (status, note)


def test_one_line_report_with_a_synonym_is_recorded_at_once(runtime: Runtime, bound: Conversation) -> None:
    say(bound, LIAISON, "报告 12 进展顺利 已完成可研")
    assert recorded(runtime) == [(12, "on_track", "已完成可研")]


def test_one_line_report_with_an_unknown_status_word_keeps_the_note(runtime: Runtime, bound: Conversation) -> None:
    say(bound, LIAISON, "报告 12 进展良好 已完成可研")
    menu = last_text(runtime, LIAISON)
    assert "请选择进展状态" in menu and "进展良好 已完成可研" in menu
    press(runtime, bound, "按计划推进")
    assert recorded(runtime) == [(12, "on_track", "进展良好 已完成可研")]


def test_a_wrong_word_at_the_status_menu_is_kept_as_the_note(runtime: Runtime, bound: Conversation) -> None:
    say(bound, LIAISON, "/report 12")
    assert "请选择进展状态" in last_text(runtime, LIAISON)
    say(bound, LIAISON, "还行吧 已完成可研")
    texts = [row.payload["text"] for row in outbox(runtime, LIAISON)[-2:]]
    assert "无法识别进展状态" in texts[0]
    assert "已记下您的说明" in texts[1] and "还行吧 已完成可研" in texts[1]
    press(runtime, bound, "按计划推进")  # the fresh menu's buttons work
    assert recorded(runtime) == [(12, "on_track", "还行吧 已完成可研")]


def test_menu_report_keeps_a_note_typed_instead_of_a_status(runtime: Runtime, bound: Conversation) -> None:
    say(bound, LIAISON, "/report")
    press(runtime, bound, next(b["text"] for b in last_buttons(runtime, LIAISON) if b["text"].startswith("县12 ")))
    say(bound, LIAISON, "项目可研已批复")
    press(runtime, bound, "已完成")
    assert "请确认报送内容" in last_text(runtime, LIAISON) and "项目可研已批复" in last_text(runtime, LIAISON)
    press(runtime, bound, "确认提交")
    assert recorded(runtime) == [(12, "done", "项目可研已批复")]


def test_reply_to_a_reminder_with_an_unknown_status_word_keeps_the_note(runtime: Runtime, bound: Conversation) -> None:
    say(bound, OFFICE, "/urge 县发改局")
    urge = outbox(runtime, LIAISON, kind="urge")[-1]
    mark_sent(runtime, urge.id, "tg-500")
    say(bound, LIAISON, "12 进展良好 已完成可研", reply_to="tg-500")
    assert "进展良好 已完成可研" in last_text(runtime, LIAISON)
    press(runtime, bound, "按计划推进")
    assert recorded(runtime) == [(12, "on_track", "进展良好 已完成可研")]
