"""Group phrases kept per task, defined later by the office, and turned into assignments."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.config import Settings
from core.plan_corrections import CorrectionError, Corrections
from core.plan_import import ImportShrinks, define_group, import_plan
from core.plan_parser import parse_plan
from core.plan_preview import build_preview, likely_duplicates
from core.runtime import Runtime
from storage.models import Assignment, Jurisdiction, Person, Plan, StatusReport, Task, TaskGroup, Unit

pytestmark = pytest.mark.both_databases

COUNTY = "测试县"
NOTICE = """测试县2025年政府工作报告重点工作责任分解方案
附件1
2025年县《政府工作报告》重点工作责任分解
一、经济发展
1.推进国土空间规划编制。(牵头单位:县自然资源局;责任单位:各乡镇人民政府)
2.建设乡镇污水处理设施。(牵头单位:县住建局;责任单位:甲镇人民政府、各乡镇人民政府)
3.稳定就业。(牵头单位:县人社局;责任单位:县财政局)
"""


def load(runtime: Runtime, text: str = NOTICE, **options: object) -> None:
    with runtime.transaction() as session:
        import_plan(
            session,
            runtime.settings,
            text,
            source_name="notice.txt",
            jurisdiction_name=COUNTY,
            now=runtime.clock.now(),
            **options,  # type: ignore[arg-type]
        )


def define(runtime: Runtime, phrase: str, members: list[str]):  # type: ignore[no-untyped-def]
    with runtime.transaction() as session:
        plan = session.scalar(select(Plan).join(Jurisdiction).where(Jurisdiction.name == COUNTY))
        assert plan is not None
        return define_group(session, runtime.settings, plan, phrase, members, now=runtime.clock.now(), actor="test")


def assigned(runtime: Runtime, number: int) -> dict[str, tuple[str, str | None, bool]]:
    with runtime.transaction() as session:
        rows = session.execute(
            select(Unit.name, Assignment.role, Assignment.via_group, Assignment.active)
            .join(Assignment, Assignment.unit_id == Unit.id)
            .join(Task, Task.id == Assignment.task_id)
            .join(Jurisdiction, Jurisdiction.id == Unit.jurisdiction_id)
            .where(Task.number == number, Jurisdiction.name == COUNTY)
        ).all()
    return {name: (role, via, active) for name, role, via, active in rows}


def test_an_undefined_group_phrase_is_kept_on_its_tasks(runtime: Runtime) -> None:
    load(runtime)
    with runtime.transaction() as session:
        refs = session.execute(
            select(Task.number, TaskGroup.phrase, TaskGroup.role)
            .join(Task)
            .join(Plan)
            .join(Jurisdiction)
            .where(Jurisdiction.name == COUNTY)
        ).all()
    assert sorted(refs) == [(1, "各乡镇人民政府", "responsible"), (2, "各乡镇人民政府", "responsible")]
    assert assigned(runtime, 1) == {"县自然资源局": ("lead", None, True)}


def test_defining_a_group_later_assigns_every_task_naming_it(runtime: Runtime) -> None:
    load(runtime)
    done = define(runtime, "各乡镇人民政府", ["甲镇", "乙镇人民政府"])
    assert done.tasks == ["county-1", "county-2"] and done.members == ["甲镇人民政府", "乙镇人民政府"]
    assert assigned(runtime, 1) == {
        "县自然资源局": ("lead", None, True),
        "甲镇人民政府": ("responsible", "各乡镇人民政府", True),
        "乙镇人民政府": ("responsible", "各乡镇人民政府", True),
    }
    # 甲镇 is named directly in task 2: its own assignment stays as it was.
    assert assigned(runtime, 2)["甲镇人民政府"] == ("responsible", None, True)


def test_redefining_a_group_deactivates_leavers_and_keeps_their_reports(runtime: Runtime) -> None:
    load(runtime)
    define(runtime, "各乡镇人民政府", ["甲镇人民政府", "乙镇人民政府"])
    with runtime.transaction() as session:
        task = session.scalar(
            select(Task).join(Plan).join(Jurisdiction).where(Jurisdiction.name == COUNTY, Task.number == 1)
        )
        unit = session.scalar(select(Unit).where(Unit.name == "乙镇人民政府"))
        assert task is not None and unit is not None
        person = Person(display_name="乙镇联络员")
        session.add(person)
        session.flush()
        session.add(
            StatusReport(task_id=task.id, unit_id=unit.id, person_id=person.id, status="on_track", note="已开工")
        )
    done = define(runtime, "各乡镇人民政府", ["甲镇人民政府", "丙镇人民政府"])
    assert done.removed == 2  # 乙镇 leaves tasks 1 and 2
    assert assigned(runtime, 1)["乙镇人民政府"] == ("responsible", "各乡镇人民政府", False)
    assert assigned(runtime, 1)["丙镇人民政府"] == ("responsible", "各乡镇人民政府", True)
    with runtime.transaction() as session:
        assert session.scalars(select(StatusReport.note)).all() == ["已开工"]


def test_a_reimport_keeps_the_offices_group_definition(runtime: Runtime) -> None:
    load(runtime)
    define(runtime, "各乡镇人民政府", ["甲镇人民政府", "乙镇人民政府"])
    load(runtime)
    assert assigned(runtime, 1)["乙镇人民政府"] == ("responsible", "各乡镇人民政府", True)


def test_a_group_defined_in_the_configuration_applies_on_reimport(runtime: Runtime) -> None:
    load(runtime)
    units = runtime.settings.units.model_copy(update={"groups": {"各乡镇人民政府": ["丁镇人民政府"]}})
    runtime.settings = runtime.settings.model_copy(update={"units": units})
    load(runtime)
    assert assigned(runtime, 3) == {"县人社局": ("lead", None, True), "县财政局": ("responsible", None, True)}
    assert assigned(runtime, 1)["丁镇人民政府"] == ("responsible", "各乡镇人民政府", True)


def test_an_empty_group_definition_is_refused(runtime: Runtime) -> None:
    load(runtime)
    with pytest.raises(CorrectionError):
        define(runtime, "各乡镇人民政府", [])


def test_a_shrinking_reimport_is_refused_in_the_core(runtime: Runtime) -> None:
    load(runtime)
    only_first = NOTICE.split("2.建设")[0]
    with pytest.raises(ImportShrinks) as refused:
        load(runtime, only_first)
    assert (refused.value.shrink.removed, refused.value.shrink.active) == (2, 3)
    load(runtime, only_first, allow_shrink=True)


def test_preview_counts_the_tasks_depending_on_a_group_and_writes_nothing(runtime: Runtime, settings: Settings) -> None:
    corrections = Corrections()
    corrections.set_task_units("county-3", responsible=["县财政局", "各乡镇人民政府"])
    with runtime.transaction() as session:
        preview = build_preview(
            session,
            settings,
            lambda directory: parse_plan(NOTICE, directory),
            source_name="notice.txt",
            jurisdiction_name=COUNTY,
            now=runtime.clock.now(),
            corrections=corrections,
        )
        assert session.scalar(select(Jurisdiction).where(Jurisdiction.name == COUNTY)) is None
    [group] = preview.groups_to_define
    assert group.tasks == ["county-1", "county-2", "county-3"]


@pytest.mark.parametrize(
    ("a", "b", "rule"),
    [
        ("县交通局", "县交通运输局", "abbreviation"),
        ("嘉鱼供电公司", "县供电公司", "same-core"),
        ("县政务数据局", "县政务服务和大数据管理局", "abbreviation"),
        ("县财政局", "县民政局", None),
        ("县住建局", "县城建局", None),
    ],
)
def test_likely_duplicates_measure(a: str, b: str, rule: str | None) -> None:
    pairs = likely_duplicates([a], [b], "嘉鱼县")
    assert [p.rule for p in pairs] == ([rule] if rule else [])


def test_a_reimport_without_the_first_imports_tables_keeps_the_countys_groups(runtime: Runtime) -> None:
    configured = runtime.settings
    units = configured.units.model_copy(update={"groups": {"各乡镇人民政府": ["甲镇人民政府", "乙镇人民政府"]}})
    runtime.settings = configured.model_copy(update={"units": units})
    load(runtime)
    runtime.settings = configured  # an uploaded copy: no notice tables, no such [units.groups]
    load(runtime, NOTICE.replace("稳定就业", "稳定和扩大就业"))
    assert assigned(runtime, 1)["乙镇人民政府"] == ("responsible", "各乡镇人民政府", True)
