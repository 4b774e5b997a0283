"""A task's own deadline, read from the notice, is stored, shown and can be its due date."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from sqlalchemy import select

from core.config import CheckpointSettings, Settings
from core.plan_import import import_plan
from core.runtime import Runtime
from storage.models import Assignment, Checkpoint, Jurisdiction, Obligation, Plan, Task, Unit
from tests.conftest import local

CORPUS = Path(__file__).resolve().parent / "corpus"
COUNTY = "梅溪县"


def import_meixi(runtime: Runtime, settings: Settings) -> int:
    with runtime.transaction() as session:
        result = import_plan(
            session,
            settings,
            (CORPUS / "meixi-county-groups.txt").read_text(encoding="utf-8"),
            source_name="meixi.txt",
            jurisdiction_name=COUNTY,
            now=runtime.clock.now(),
        )
        assert result.plan_id is not None
        return result.plan_id


def test_deadline_and_scope_note_are_stored(runtime: Runtime) -> None:
    plan_id = import_meixi(runtime, runtime.settings)
    with runtime.transaction() as session:
        tasks = {t.number: t for t in session.scalars(select(Task).where(Task.plan_id == plan_id))}
        assert (tasks[4].deadline, tasks[4].deadline_text) == (date(2023, 12, 31), "2023年底前")
        assert (tasks[1].deadline, tasks[1].deadline_text) == (None, "")
    baishui = (CORPUS / "baishui-district-wrapped.txt").read_text(encoding="utf-8")
    with runtime.transaction() as session:
        result = import_plan(
            session, runtime.settings, baishui, source_name="b.txt", jurisdiction_name="白水区", now=runtime.clock.now()
        )
        note = session.scalar(
            select(Assignment.note)
            .join(Task, Task.id == Assignment.task_id)
            .join(Unit, Unit.id == Assignment.unit_id)
            .where(Task.plan_id == result.plan_id, Task.number == 2, Unit.name == "区经发局")
        )
    assert note == "负责招商引资"


def test_a_checkpoint_on_task_deadlines_makes_each_task_due_on_its_own_day(runtime: Runtime) -> None:
    round_ = CheckpointSettings(
        id="deadline",
        title="完成时限督办",
        due=datetime(2023, 12, 31, 18, 0),
        owed_by="lead",
        tasks="all",
        task_deadlines=True,
    )
    settings = runtime.settings.model_copy(update={"checkpoints": [round_]})
    plan_id = import_meixi(runtime, settings)
    with runtime.transaction() as session:
        checkpoints = {c.key: c for c in session.scalars(select(Checkpoint).where(Checkpoint.plan_id == plan_id))}
        assert set(checkpoints) == {"deadline", "deadline-20231231", "deadline-20230630", "deadline-20230901"}
        assert checkpoints["deadline-20230901"].due_at == local(2023, 9, 1, 18, 0)
        assert checkpoints["deadline-20230901"].task_scope == ["county-9"]
        owed = session.execute(
            select(Task.number, Unit.name)
            .join(Obligation, Obligation.task_id == Task.id)
            .join(Unit, Unit.id == Obligation.unit_id)
            .where(Obligation.checkpoint_id == checkpoints["deadline-20230901"].id)
        ).all()
        assert owed == [(9, "县教育局")]
        undated = checkpoints["deadline"]
        assert "county-9" not in undated.task_scope and "county-1" in undated.task_scope
        plan = session.get(Plan, plan_id)
        assert plan is not None
        jurisdiction = session.get(Jurisdiction, plan.jurisdiction_id)
        assert jurisdiction is not None and jurisdiction.name == COUNTY
