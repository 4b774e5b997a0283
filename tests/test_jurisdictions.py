"""One service, several counties: each person's messages mean their own county's plan."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from core.binding import invite
from core.clock import ManualClock
from core.config import BUNDLED_PLAN
from core.escalation import Escalation, make_calendar
from core.plan_import import import_plan
from core.runtime import Runtime
from jobs.ticks import remind
from messages import Messages
from storage.models import Checkpoint, Jurisdiction, Plan, StatusReport, Task
from storage.queries import newest_plan
from tests.conftest import local
from tests.support import last_text, make_conversation, outbox, say

pytestmark = pytest.mark.both_databases

OTHER_COUNTY = "通山县"


@pytest.fixture
def second(runtime: Runtime, bundled_text: str) -> Plan:
    with runtime.transaction() as session:
        result = import_plan(
            session,
            runtime.settings,
            bundled_text,
            source_name="tongshan.txt",
            jurisdiction_name=OTHER_COUNTY,
            now=runtime.clock.now(),
            directory=runtime.settings.unit_directory(BUNDLED_PLAN),
        )
        plan = session.get(Plan, result.plan_id)
        assert plan is not None
        return plan


@pytest.fixture
def home(runtime: Runtime) -> Plan:
    """The configured county's plan (嘉鱼县)."""
    with runtime.transaction() as session:
        jurisdiction = session.scalar(
            select(Jurisdiction).where(Jurisdiction.name == runtime.settings.plan.jurisdiction)
        )
        assert jurisdiction is not None
        plan = newest_plan(session, jurisdiction.id)
        assert plan is not None
        return plan


@pytest.fixture
def escalation(runtime: Runtime) -> Escalation:
    settings = runtime.settings
    return Escalation(settings, Messages("zh", settings.tz), make_calendar(settings))


def code_for(runtime: Runtime, plan: Plan, unit: str, role: str = "liaison") -> str:
    with runtime.transaction() as session:
        issued = invite(session, runtime.settings, unit, role, now=runtime.clock.now(), created_by="test", plan=plan)
        assert issued is not None
        return issued.code


def test_a_new_county_starts_on_the_configured_calendar(runtime: Runtime, second: Plan) -> None:
    with runtime.transaction() as session:
        keys = session.scalars(
            select(Checkpoint.key).where(Checkpoint.plan_id == second.id).order_by(Checkpoint.due_at)
        )
        assert list(keys) == ["refined-plan", "2024-q1", "2024-q2", "2024-q3", "2024-q4"]


def test_a_liaison_reports_on_their_own_countys_task(runtime: Runtime, second: Plan, clock: ManualClock) -> None:
    conv = make_conversation(runtime)
    say(conv, 501, f"/start {code_for(runtime, second, '县发改局')}")
    clock.set(local(2024, 3, 10, 10))
    say(conv, 501, "/report 12 按计划推进 通山县的进展")
    assert "已记录" in last_text(runtime, 501)
    with runtime.transaction() as session:
        report = session.scalar(
            select(StatusReport).options(
                joinedload(StatusReport.task).joinedload(Task.plan).joinedload(Plan.jurisdiction)
            )
        )
        assert report is not None and report.task.plan.jurisdiction.name == OTHER_COUNTY


def test_the_office_of_one_county_sees_its_own_units(runtime: Runtime, second: Plan, clock: ManualClock) -> None:
    conv = make_conversation(runtime)
    say(conv, 601, f"/start {code_for(runtime, second, '县政府政务督查室', 'office')}")
    clock.set(local(2024, 3, 2, 9))
    say(conv, 601, "/urge 县发改局")
    assert "无人绑定、无法催办:县发改局" in last_text(runtime, 601)  # 通山县's, where nobody is bound


def test_reminders_go_out_in_every_county(runtime: Runtime, home: Plan, second: Plan, escalation: Escalation) -> None:
    conv = make_conversation(runtime)
    say(conv, 701, f"/start {code_for(runtime, home, '县发改局')}")
    say(conv, 702, f"/start {code_for(runtime, second, '县发改局')}")
    remind(runtime, escalation, local(2024, 2, 22, 9))
    assert [r.kind for r in outbox(runtime, 701, kind="reminder")] == ["reminder"]
    assert [r.kind for r in outbox(runtime, 702, kind="reminder")] == ["reminder"]


def test_each_countys_notification_is_its_own_file(
    runtime: Runtime, home: Plan, second: Plan, escalation: Escalation
) -> None:
    conv = make_conversation(runtime)
    say(conv, 801, f"/start {code_for(runtime, home, '县政府政务督查室', 'office')}")
    say(conv, 802, f"/start {code_for(runtime, second, '县政府政务督查室', 'office')}")
    remind(runtime, escalation, local(2024, 3, 1, 9))
    [mine] = outbox(runtime, 801, kind="notification")
    [theirs] = outbox(runtime, 802, kind="notification")
    paths = {mine.payload["document"]["path"], theirs.payload["document"]["path"]}
    assert len(paths) == 2, "one county's file must not overwrite the other's"
    assert OTHER_COUNTY in theirs.payload["document"]["file_name"]


def test_a_county_whose_notification_fails_holds_up_no_other(
    runtime: Runtime, home: Plan, second: Plan, escalation: Escalation
) -> None:
    conv = make_conversation(runtime)
    say(conv, 801, f"/start {code_for(runtime, home, '县政府政务督查室', 'office')}")
    say(conv, 802, f"/start {code_for(runtime, second, '县政府政务督查室', 'office')}")
    settings = runtime.settings
    # The home county's file cannot be written: a folder stands where it would go.
    blocker = settings.path(settings.service.data_dir) / "exports" / "通报-嘉鱼县-refined-plan.xlsx"
    blocker.mkdir(parents=True)
    remind(runtime, escalation, local(2024, 3, 1, 9))
    assert outbox(runtime, 801, kind="notification") == []
    assert len(outbox(runtime, 802, kind="notification")) == 1
    blocker.rmdir()
    remind(runtime, escalation, local(2024, 3, 1, 9, 1))  # the next tick tries again
    assert len(outbox(runtime, 801, kind="notification")) == 1
    assert len(outbox(runtime, 802, kind="notification")) == 1
