"""Progress against targets at a round, on the bundled plan with a seeded year."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config import Settings
from core.pace import PaceClass, PaceThresholds
from core.progress import below_half, pace_lights, round_progress
from core.runtime import Runtime
from storage.models import Checkpoint, Milestone, Task, Unit
from tests.conftest import SHANGHAI, local
from tests.support import report_figures

THRESHOLDS = PaceThresholds()


def _task(session: Session, annex: str, number: int) -> Task:
    task = session.scalar(select(Task).where(Task.annex == annex, Task.number == number))
    assert task is not None
    return task


def _progress(session: Session, key: str, tasks: list[tuple[str, int]]) -> dict[str, object]:
    checkpoint = session.scalar(select(Checkpoint).where(Checkpoint.key == key))
    assert checkpoint is not None
    ids = [_task(session, annex, number).id for annex, number in tasks]
    rows = round_progress(session, checkpoint, ids, year=2024, thresholds=THRESHOLDS, tz=SHANGHAI)
    return {row.metric: row for row in rows}


def test_the_lead_units_figure_is_the_tasks_figure_with_its_pace(runtime: Runtime, settings: Settings) -> None:
    with runtime.transaction() as session:
        report_figures(
            session,
            settings,
            "市33",
            {"改造城镇老旧小区": 300, "农村危房改造开工": 100},
            local(2024, 6, 20, 9),
        )
        progress = _progress(session, "2024-q2", [("city", 33)])
    old_estates = progress["改造城镇老旧小区"]
    assert (old_estates.reported, old_estates.lead) == (300, "县住建局")  # type: ignore[attr-defined]
    assert old_estates.pace is PaceClass.AHEAD  # type: ignore[attr-defined]
    assert progress["农村危房改造开工"].pace is PaceClass.FAR_BEHIND  # type: ignore[attr-defined]
    assert progress["公租房租赁补贴发放"].reported is None  # type: ignore[attr-defined]


def test_the_q2_check_names_exactly_the_targets_below_half(runtime: Runtime, settings: Settings) -> None:
    with runtime.transaction() as session:
        report_figures(
            session,
            settings,
            "市33",
            {
                "改造城镇老旧小区": 300,
                "农村危房改造开工": 100,
                "保障性租赁住房计划开工": 215,
                "公租房租赁补贴发放": 600,
            },
            local(2024, 6, 20, 9),
        )
        report_figures(session, settings, "市29", {"建设高标准农田": 7.2}, local(2024, 6, 21, 9))
        checkpoint = session.scalar(select(Checkpoint).where(Checkpoint.key == "2024-q2"))
        assert checkpoint is not None
        ids = [_task(session, "city", 33).id, _task(session, "city", 29).id]
        rows = round_progress(session, checkpoint, ids, year=2024, thresholds=THRESHOLDS, tz=SHANGHAI)
    # 215 of 430 is exactly half: not below.
    assert [(row.task, row.metric) for row in below_half(rows)] == [("市33", "农村危房改造开工")]


def test_a_figure_reported_after_the_cutoff_does_not_count_for_the_round(runtime: Runtime, settings: Settings) -> None:
    with runtime.transaction() as session:
        report_figures(session, settings, "市29", {"建设高标准农田": 2}, local(2024, 3, 20, 9))
        report_figures(session, settings, "市29", {"建设高标准农田": 9}, local(2024, 6, 26, 9))
        progress = _progress(session, "2024-q2", [("city", 29)])
    farmland = progress["建设高标准农田"]
    assert (farmland.reported, farmland.previous, farmland.change) == (2, 2, 0)  # type: ignore[attr-defined]


def test_change_since_the_last_round(runtime: Runtime, settings: Settings) -> None:
    with runtime.transaction() as session:
        report_figures(session, settings, "市29", {"建设高标准农田": 3}, local(2024, 3, 20, 9))
        report_figures(session, settings, "市29", {"建设高标准农田": 7.5}, local(2024, 6, 20, 9))
        progress = _progress(session, "2024-q2", [("city", 29)])
    assert progress["建设高标准农田"].change == 4.5  # type: ignore[attr-defined]


def test_milestones_set_the_expected_share(runtime: Runtime, settings: Settings) -> None:
    with runtime.transaction() as session:
        task = _task(session, "city", 29)
        lead = session.scalar(select(Unit).where(Unit.name == "县农业农村局"))
        assert lead is not None
        for due in ("2024-05-31", "2024-08-31", "2024-11-30"):
            session.add(
                Milestone(
                    task_id=task.id,
                    unit_id=lead.id,
                    due_on=datetime.fromisoformat(due).date(),
                    what="节点",
                    source="office",
                )
            )
        session.flush()
        progress = _progress(session, "2024-q2", [("city", 29)])
    assert progress["建设高标准农田"].expected == 1 / 3  # type: ignore[attr-defined]


def test_pace_lights_per_task_and_per_lead_unit(runtime: Runtime, settings: Settings) -> None:
    with runtime.transaction() as session:
        report_figures(
            session,
            settings,
            "市33",
            {
                "改造城镇老旧小区": 300,
                "农村危房改造开工": 150,
                "保障性租赁住房计划开工": 215,
                "公租房租赁补贴发放": 480,
            },
            local(2024, 6, 20, 9),
        )
        report_figures(session, settings, "市29", {"建设高标准农田": 7.2}, local(2024, 6, 21, 9))
        checkpoint = session.scalar(select(Checkpoint).where(Checkpoint.key == "2024-q2"))
        assert checkpoint is not None
        city33, city29, county9 = _task(session, "city", 33), _task(session, "city", 29), _task(session, "county", 9)
        rows = round_progress(
            session, checkpoint, [city33.id, city29.id, county9.id], year=2024, thresholds=THRESHOLDS, tz=SHANGHAI
        )
    by_task, by_unit = pace_lights(rows)
    assert by_task == {city33.id: "yellow", city29.id: "green", county9.id: "red"}  # 县9: no figure at all
    assert by_unit == {"县住建局": "yellow", "县农业农村局": "green", "县人社局": "red"}
