"""Milestones (节点督办): read from the lead unit's lines, each supervised like a round, edited by the office."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bot.cli import main
from core.conversation import Conversation
from core.milestones import MilestoneRefused, parse_milestones
from core.runtime import Runtime
from tests.support import invite, last_text, make_conversation, say, staged_file


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "6月底前 完成可研批复\n9月30日前 开工建设",
            [(date(2024, 6, 30), "完成可研批复"), (date(2024, 9, 30), "开工建设")],
        ),
        ("三季度末 主体完工;年底前 竣工验收", [(date(2024, 9, 30), "主体完工"), (date(2024, 12, 31), "竣工验收")]),
        (
            "1. 2024年7月15日前 完成招标\n2、10月底前 完成主体",
            [(date(2024, 7, 15), "完成招标"), (date(2024, 10, 31), "完成主体")],
        ),
        ("完成设计 8月底前", [(date(2024, 8, 31), "完成设计")]),
    ],
)
def test_milestone_lines_give_a_date_and_what_is_due(text: str, expected: list[tuple[date, str]]) -> None:
    assert [(m.due_on, m.what) for m in parse_milestones(text, 2024)] == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [("完成可研批复", "第1条没有日期"), ("6月底前", "没有写要完成什么"), ("", "没有读到节点")],
)
def test_a_line_without_a_date_or_a_step_is_refused_with_its_number(text: str, reason: str) -> None:
    with pytest.raises(MilestoneRefused, match=reason):
        parse_milestones(text, 2024)


LEAD = 4501  # 县发改局, lead of 县45 (横沟至潘家湾通港铁路 前期工作)


@pytest.fixture
def conv(runtime: Runtime, tmp_path: Path) -> Conversation:
    conversation = make_conversation(runtime)
    say(conversation, LEAD, f"/start {invite(runtime, '县发改局')}")
    say(conversation, LEAD, "/report 45 按计划推进 细化方案", files=(staged_file(tmp_path, "县45细化方案.pdf"),))
    return conversation


def test_after_its_refined_plan_the_lead_unit_is_asked_for_milestones(runtime: Runtime, conv: Conversation) -> None:
    receipt = last_text(runtime, LEAD)
    assert "细化方案报送" in receipt and "请再发送细化方案中的主要节点" in receipt


def test_milestones_sent_in_chat_are_saved_and_each_becomes_a_round_for_the_lead(
    runtime: Runtime, conv: Conversation
) -> None:
    say(conv, LEAD, "6月底前 完成可研批复\n9月30日前 完成初步设计")
    answer = last_text(runtime, LEAD)
    assert "已保存 县45 的 2 个节点" in answer and "2024-06-30 完成可研批复" in answer
    rounds = cli(runtime, "checkpoint", "list", "--json")
    milestones = [r for r in json.loads(rounds) if r["id"].startswith("ms-")]
    assert [m["title"] for m in milestones] == ["节点督办:县45 完成可研批复", "节点督办:县45 完成初步设计"]


def test_skip_leaves_the_milestones_for_the_office(runtime: Runtime, conv: Conversation) -> None:
    say(conv, LEAD, "跳过")
    assert "暂不录入节点" in last_text(runtime, LEAD)
    assert json.loads(cli(runtime, "milestones", "list", "--json")) == []


def test_a_milestone_is_reminded_before_and_escalated_after_like_a_round(runtime: Runtime, conv: Conversation) -> None:
    say(conv, LEAD, "6月28日前 完成可研批复")
    data = json.loads(cli(runtime, "simulate", "--from", "2024-06-15", "--to", "2024-07-10", "--json"))
    (milestone,) = [r for r in json.loads(cli(runtime, "checkpoint", "list", "--json")) if r["id"].startswith("ms-")]
    notices = [n for n in data["notices"] if n["checkpoint"] == milestone["id"]]
    liaison = [n["rung"] for n in notices if n["role"] == "liaison" and n["units"] == ["县发改局"]]
    assert liaison[:2] == ["-7d", "-3d"] and "+1d" in liaison
    assert any(n["role"] == "head" for n in notices), "a missed milestone climbs the ladder"


def test_the_office_moves_or_removes_a_milestone_and_its_round_follows(runtime: Runtime, conv: Conversation) -> None:
    say(conv, LEAD, "6月底前 完成可研批复")
    (milestone,) = json.loads(cli(runtime, "milestones", "list", "--json"))
    # The command line runs on the wall clock: a date still ahead of it keeps the round live.
    cli(runtime, "milestones", "edit", str(milestone["id"]), "--date", "2099-07-15")
    rounds = {r["id"]: r for r in json.loads(cli(runtime, "checkpoint", "list", "--json"))}
    assert rounds[f"ms-{milestone['id']}"]["due"].startswith("2099-07-15T18:00")
    cli(runtime, "milestones", "remove", str(milestone["id"]))
    assert f"ms-{milestone['id']}" not in {r["id"] for r in json.loads(cli(runtime, "checkpoint", "list", "--json"))}
    assert json.loads(cli(runtime, "milestones", "list", "--json")) == []


def test_an_unknown_milestone_is_refused(runtime: Runtime) -> None:
    result = invoke(runtime, "milestones", "remove", "999")
    assert result.exit_code == 1 and "没有编号为 999 的节点" in result.output


def test_the_office_adds_milestones_from_the_command_line(runtime: Runtime) -> None:
    out = cli(runtime, "milestones", "add", "县45", "2099年5月底前 完成线路方案比选", "2月底前 完成立项")
    assert "2099-05-31 完成线路方案比选" in out and "2024-02-29 完成立项(已过期,仅作记录)" in out
    listed = json.loads(cli(runtime, "milestones", "list", "--task", "县45", "--json"))
    assert [(m["due_on"], m["unit"], m["source"]) for m in listed] == [
        ("2024-02-29", "县发改局", "office"),
        ("2099-05-31", "县发改局", "office"),
    ]


def invoke(runtime: Runtime, *args: str) -> Result:
    env = {"DUBAN_DATABASE_URL": runtime.settings.database.url, "DUBAN_CONFIG": ""}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def cli(runtime: Runtime, *args: str) -> str:
    result = invoke(runtime, *args)
    assert result.exit_code == 0, result.output
    return result.output
