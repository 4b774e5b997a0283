"""Which round a report counts for: the round named at the start is the round recorded, and the liaison may pick."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from core.clock import ManualClock
from core.conversation import Conversation
from core.runtime import Runtime
from storage.models import Checkpoint, StatusReport
from tests.conftest import local
from tests.support import invite, last_buttons, last_text, make_conversation, say, staged_file

LIAISON = 1001  # 县发改局, lead of 县1 and 县45 (both owe the refined plan and the quarterly round)


@pytest.fixture
def bound(runtime: Runtime, clock: ManualClock) -> Conversation:
    conv = make_conversation(runtime)
    say(conv, LIAISON, f"/start {invite(runtime, '县发改局')}")
    clock.set(local(2024, 3, 20, 10))  # the refined plan overdue since 2-29, the first quarter due 3-25
    return conv


def recorded_rounds(runtime: Runtime) -> list[str]:
    with runtime.transaction() as session:
        return list(
            session.scalars(
                select(Checkpoint.key)
                .join(StatusReport, StatusReport.checkpoint_id == Checkpoint.id)
                .order_by(StatusReport.id)
            )
        )


def press(runtime: Runtime, conv: Conversation, starts: str) -> None:
    button = next(b for b in last_buttons(runtime, LIAISON) if b["text"].startswith(starts))
    say(conv, LIAISON, callback=button["data"])


def test_the_round_named_in_the_menu_is_the_round_recorded(runtime: Runtime, bound: Conversation) -> None:
    say(bound, LIAISON, "报告 45")
    menu = last_text(runtime, LIAISON)
    assert "报送轮次:第一季度进展督办" in menu  # the closest to its deadline, not the oldest
    assert "细化方案报送" in menu  # the other round owed is named too
    press(runtime, bound, "按计划推进")
    say(bound, LIAISON, "可研报告已获批复")
    assert "计入:第一季度进展督办" in last_text(runtime, LIAISON)
    assert recorded_rounds(runtime) == ["2024-q1"]


def test_the_liaison_can_pick_another_round_the_unit_owes(
    runtime: Runtime, bound: Conversation, tmp_path: Path
) -> None:
    say(bound, LIAISON, "报告 45 可研报告已获批复")
    press(runtime, bound, "改报:细化方案报送")
    assert "报送轮次:细化方案报送" in last_text(runtime, LIAISON)
    press(runtime, bound, "按计划推进")
    assert "细化方案报送" in last_text(runtime, LIAISON) and "上传" in last_text(runtime, LIAISON)
    say(bound, LIAISON, "", files=(staged_file(tmp_path, "县45细化方案.pdf"),))
    assert "计入:细化方案报送" in last_text(runtime, LIAISON)
    assert recorded_rounds(runtime) == ["refined-plan"]


def test_a_one_line_report_counts_for_the_round_closest_to_its_deadline(runtime: Runtime, bound: Conversation) -> None:
    say(bound, LIAISON, "报告 45 按计划推进 可研报告已获批复")
    assert "计入:第一季度进展督办" in last_text(runtime, LIAISON)
    assert recorded_rounds(runtime) == ["2024-q1"]


def test_a_round_the_unit_does_not_owe_cannot_be_picked(runtime: Runtime, bound: Conversation) -> None:
    say(bound, LIAISON, "报告 45")
    menu_version = last_buttons(runtime, LIAISON)[0]["data"].split("|")[0]
    say(bound, LIAISON, callback=f"{menu_version}|r|99999")
    assert "按钮已失效" in last_text(runtime, LIAISON)
