"""Importing the plan into the database, and re-importing it without losing anything."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from core.config import BUNDLED_PLAN, Settings
from core.plan_import import ImportRefused, import_plan
from core.runtime import Runtime, current_plan
from storage.models import Assignment, AuditLog, Person, StatusReport, Task, Unit, UnitAlias, UnitGroupMember

pytestmark = pytest.mark.both_databases


def reimport(runtime: Runtime, text: str, dry_run: bool = False):  # type: ignore[no-untyped-def]
    with runtime.transaction() as session:
        return import_plan(
            session,
            runtime.settings,
            text,
            source_name="edited.txt",
            jurisdiction_name=runtime.settings.plan.jurisdiction,
            now=runtime.clock.now(),
            dry_run=dry_run,
            directory=runtime.settings.unit_directory(BUNDLED_PLAN),  # an edited copy of the bundled notice
        )


def count(runtime: Runtime, model: type) -> int:
    with runtime.transaction() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_initialise_imports_the_bundled_plan(runtime: Runtime) -> None:
    with runtime.transaction() as session:
        plan = current_plan(session, runtime.settings)
        assert plan is not None and plan.year == 2024
        annexes = dict(session.execute(select(Task.annex, func.count()).group_by(Task.annex)).all())
        assert annexes == {"county": 76, "city": 33}
        towns = session.scalar(select(func.count()).select_from(Unit).where(Unit.kind == "town"))
        assert towns == 8


def test_alias_from_the_document_and_config_are_stored(runtime: Runtime) -> None:
    with runtime.transaction() as session:
        aliases = dict(session.execute(select(UnitAlias.alias, Unit.name).join(Unit)).all())
    assert aliases["县营商办"] == "县发改局"
    assert aliases["县交通运输局"] == "县交通局"


def test_group_memberships_are_stored(runtime: Runtime) -> None:
    with runtime.transaction() as session:
        towns = session.scalars(
            select(Unit.name)
            .join(UnitGroupMember, UnitGroupMember.unit_id == Unit.id)
            .where(UnitGroupMember.phrase == "各镇人民政府")
        ).all()
    assert len(towns) == 8


def test_reimporting_the_same_text_changes_nothing(runtime: Runtime, bundled_text: str) -> None:
    before = count(runtime, Assignment)
    result = reimport(runtime, bundled_text)
    assert result.diff.empty
    assert count(runtime, Assignment) == before


def test_reimport_keeps_recorded_status_history(runtime: Runtime, bundled_text: str) -> None:
    with runtime.transaction() as session:
        task = session.scalar(select(Task).where(Task.annex == "county", Task.number == 22))
        unit = session.scalar(select(Unit).where(Unit.name == "县招商投资中心"))
        assert task is not None and unit is not None
        person = Person(display_name="联络员")
        session.add(person)
        session.flush()
        session.add(
            StatusReport(task_id=task.id, unit_id=unit.id, person_id=person.id, status="on_track", note="已引进3家")
        )
    edited = bundled_text.replace(
        "引进电子信息、生物医药制剂龙头企业5家以上", "引进电子信息、生物医药制剂龙头企业6家以上"
    )
    result = reimport(runtime, edited)
    assert [label for label, _, _ in result.diff.changed_text] == ["county-22"]
    with runtime.transaction() as session:
        report = session.scalar(select(StatusReport))
        assert report is not None and report.note == "已引进3家"
        assert report.task.active and "6家以上" in report.task.text


def test_removed_task_is_deactivated_not_deleted(runtime: Runtime, bundled_text: str) -> None:
    lines = bundled_text.splitlines()
    edited = "\n".join(line for line in lines if not line.startswith("76."))
    result = reimport(runtime, edited)
    assert result.diff.removed_tasks == ["county-76"]
    with runtime.transaction() as session:
        task = session.scalar(select(Task).where(Task.annex == "county", Task.number == 76))
        assert task is not None and not task.active
        assert all(not a.active for a in task.assignments)
    restored = reimport(runtime, bundled_text)
    assert restored.diff.restored_tasks == ["county-76"]


def test_changed_assignments_are_shown_before_they_are_applied(runtime: Runtime, bundled_text: str) -> None:
    edited = bundled_text.replace(
        "(牵头单位:县民政局;责任单位:县卫健局)", "(牵头单位:县民政局;责任单位:县卫健局、县财政局)"
    )
    preview = reimport(runtime, edited, dry_run=True)
    assert [(c.task, c.unit, c.role) for c in preview.diff.added] == [("county-19", "县财政局", "responsible")]
    assert not preview.applied
    with runtime.transaction() as session:
        task = session.scalar(select(Task).where(Task.annex == "county", Task.number == 19))
        assert task is not None
        assert sorted(a.unit.name for a in task.assignments if a.active) == ["县卫健局", "县民政局"]


def test_role_change_is_part_of_the_diff(runtime: Runtime, bundled_text: str) -> None:
    edited = bundled_text.replace("(牵头单位:县民政局;责任单位:县卫健局)", "(牵头单位:县卫健局;责任单位:县民政局)")
    result = reimport(runtime, edited)
    changes = {(c.unit, c.old_role, c.role) for c in result.diff.role_changed}
    assert changes == {("县卫健局", "responsible", "lead"), ("县民政局", "lead", "responsible")}


def test_document_with_nothing_usable_changes_nothing(runtime: Runtime, bundled_text: str) -> None:
    notice = bundled_text.splitlines()[:16]  # the notice around the list, then a list whose task names no unit
    broken = "\n".join(
        [*notice, "附件1", "2024年县《政府工作报告》确定的重点工作责任分解方案", "1.完成县社会养老中心一期工程建设。"]
    )
    before = (count(runtime, Task), count(runtime, Assignment), count(runtime, AuditLog))
    with pytest.raises(ImportRefused) as refused:
        reimport(runtime, broken)
    assert any(p.line == 19 for p in refused.value.problems)
    assert (count(runtime, Task), count(runtime, Assignment), count(runtime, AuditLog)) == before


def test_task_without_units_is_left_out_and_listed_not_refused(runtime: Runtime, bundled_text: str) -> None:
    edited = bundled_text.replace(
        "19.完成县社会养老中心一期工程建设,公立医院新增医养床位200张。(牵头单位:县民政局;责任单位:县卫健局)",
        "19.完成县社会养老中心一期工程建设。",
    )
    result = reimport(runtime, edited, dry_run=True)
    assert [(p.line, p.reason) for p in result.parsed.unparsed][:1] == [
        (40, "编号条目没有牵头或责任单位,未作为任务导入")
    ]
    assert result.diff.removed_tasks == ["county-19"]


def test_import_is_one_transaction(runtime: Runtime, settings: Settings, bundled_text: str) -> None:
    tasks_before = count(runtime, Task)
    with pytest.raises(RuntimeError), runtime.transaction() as session:
        import_plan(
            session,
            settings,
            bundled_text.replace("2024年", "2031年"),
            source_name="x",
            jurisdiction_name="另一县",
            now=runtime.clock.now(),
        )
        raise RuntimeError("crash after the import wrote its rows")
    assert count(runtime, Task) == tasks_before


def test_every_import_is_audited(runtime: Runtime, bundled_text: str) -> None:
    reimport(runtime, bundled_text)
    with runtime.transaction() as session:
        actions = session.scalars(select(AuditLog.action).order_by(AuditLog.id)).all()
    assert actions == ["plan.import", "plan.reimport"]
