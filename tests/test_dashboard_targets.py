"""The dashboard's 目标与节点 page and the round page's two lights, over HTTP on the real app."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from bot.service import Service
from core.milestones import add_milestones, parse_milestones
from core.runtime import Runtime, current_plan
from storage.models import Checkpoint, Milestone, Target, Task
from tests.conftest import local
from tests.support import report_figures
from tests.test_web import WebClient, service  # noqa: F401  (the service fixture)


@pytest.fixture
def client(service: Service) -> Iterator[WebClient]:  # noqa: F811
    browser = WebClient(service)
    yield browser
    browser.close()


def token(client: WebClient, path: str = "/office/targets") -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', client.get(path).text)
    assert found is not None
    return found.group(1)


def targets_of(runtime: Runtime, annex: str, number: int) -> list[tuple[str, float, str, str]]:
    with runtime.transaction() as session:
        rows = session.execute(
            select(Target.metric, Target.value, Target.unit, Target.source)
            .join(Task, Task.id == Target.task_id)
            .where(Task.annex == annex, Task.number == number, Target.active.is_(True))
            .order_by(Target.position, Target.id)
        )
        return [(m, v, u, s) for m, v, u, s in rows]


def seed_figures(runtime: Runtime) -> None:
    """县住建局 (lead of 市33) reports figures in Q1 and Q2."""
    with runtime.transaction() as session:
        for at, key, value in ((local(2024, 3, 20, 9), "2024-q1", 100), (local(2024, 6, 20, 9), "2024-q2", 300)):
            report_figures(
                session,
                runtime.settings,
                "市33",
                {"改造城镇老旧小区": value},
                at,
                note="按计划推进",
                checkpoint_key=key,
            )


def test_the_page_lists_each_tasks_targets_with_their_trend_by_round(
    runtime: Runtime, client: WebClient, clock: object
) -> None:
    seed_figures(runtime)
    clock.set(local(2024, 7, 1, 9))  # type: ignore[attr-defined]
    page = client.get("/office/targets?task=市33").text
    assert "改造城镇老旧小区" in page and "434个" in page
    trend = re.search(r'data-target="\d+">.*?<td class="trend">(.*?)</td>', page, re.S)
    assert trend is not None
    assert "第一季度进展督办</span> 100个" in trend.group(1) and "第二季度进展督办</span> 300个" in trend.group(1)


def test_the_office_corrects_a_target_and_the_correction_is_marked(runtime: Runtime, client: WebClient) -> None:
    with runtime.transaction() as session:
        first = session.scalar(
            select(Target.id).join(Task, Task.id == Target.task_id).where(Task.annex == "city", Task.number == 33)
        )
    answer = client.post(
        "/office/targets/change",
        data={
            "csrf": token(client),
            "task": "市33",
            "target_id": str(first),
            "metric": "老旧小区改造",
            "value": "450",
            "unit": "个",
            "kind": "amount",
            "action": "save",
        },
    )
    assert answer.status_code == 200 and "目标已保存" in answer.text
    assert targets_of(runtime, "city", 33)[0] == ("老旧小区改造", 450, "个", "office")


def test_a_correction_that_is_not_a_number_changes_nothing(runtime: Runtime, client: WebClient) -> None:
    before = targets_of(runtime, "city", 33)
    answer = client.post(
        "/office/targets/change",
        data={
            "csrf": token(client),
            "task": "市33",
            "metric": "新指标",
            "value": "很多",
            "unit": "个",
            "action": "save",
        },
    )
    assert "未保存:“很多”不是数字" in answer.text
    assert targets_of(runtime, "city", 33) == before


def test_a_form_without_the_session_token_is_refused(runtime: Runtime, client: WebClient) -> None:
    before = targets_of(runtime, "city", 33)
    answer = client.post("/office/targets/change", data={"task": "市33", "metric": "x", "value": "1", "unit": "个"})
    assert answer.status_code == 403
    assert targets_of(runtime, "city", 33) == before


def test_the_office_enters_and_moves_milestones(runtime: Runtime, client: WebClient) -> None:
    answer = client.post(
        "/office/milestones/add",
        data={"csrf": token(client), "task": "县45", "lines": "6月底前 完成可研批复\n9月30日前 开工建设"},
    )
    assert "县45 已保存 2 个节点" in answer.text
    with runtime.transaction() as session:
        first = session.scalars(select(Milestone).order_by(Milestone.due_on)).first()
        assert first is not None
        milestone_id = first.id
    answer = client.post(
        "/office/milestones/change",
        data={
            "csrf": token(client),
            "task": "县45",
            "milestone_id": str(milestone_id),
            "due_on": "2024-07-10",
            "what": "完成可研批复",
            "action": "save",
        },
    )
    assert "节点已修改" in answer.text
    with runtime.transaction() as session:
        moved = session.get(Milestone, milestone_id)
        assert moved is not None and moved.due_on.isoformat() == "2024-07-10"
        checkpoint = session.get(Checkpoint, moved.checkpoint_id)
        assert checkpoint is not None and checkpoint.due_at.astimezone(local(2024, 1, 1).tzinfo).isoformat().startswith(
            "2024-07-10T18:00"
        )


def test_a_milestone_without_a_date_is_refused(client: WebClient) -> None:
    answer = client.post(
        "/office/milestones/add", data={"csrf": token(client), "task": "县45", "lines": "完成可研批复"}
    )
    assert "未保存:第1条没有日期" in answer.text


def test_the_round_page_shows_both_lights_and_the_targets(runtime: Runtime, client: WebClient, clock: object) -> None:
    seed_figures(runtime)
    clock.set(local(2024, 6, 27, 9))  # type: ignore[attr-defined]
    page = client.get("/office/checkpoint/2024-q2").text
    row = re.search(r'<tr data-task="市33" data-light="(\w+)"[^>]*>\s*<td>(.*?)</td>\s*<td>(.*?)</td>', page, re.S)
    assert row is not None
    assert row.group(1) == "green"  # answered on time
    assert 'class="light green"' in row.group(2) and 'class="light green"' not in row.group(3)  # but not on pace
    assert 'id="time-half"' in page and "市33 农村危房改造开工" in page


def test_milestones_set_in_core_show_on_the_page(runtime: Runtime, client: WebClient) -> None:
    with runtime.transaction() as session:
        plan = current_plan(session, runtime.settings)
        task = session.scalar(select(Task).where(Task.annex == "county", Task.number == 45))
        assert plan is not None and task is not None
        lead = next(a.unit for a in task.assignments if a.role == "lead")
        drafts = parse_milestones("8月底前 完成线路方案比选", plan.year)
        add_milestones(
            session, runtime.settings, plan, task, lead, drafts, now=runtime.clock.now(), source="office", actor="test"
        )
    page = client.get("/office/targets?task=县45").text
    assert 'value="2024-08-31"' in page and "完成线路方案比选" in page
