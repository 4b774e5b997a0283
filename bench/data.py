"""Deterministic synthetic deployments: N counties importing the bundled notice, their people, their answers.

Every county is its own jurisdiction importing the same notice text through
:func:`core.plan_import.import_plan`, so each gets its own units, tasks,
assignments and (through :func:`core.checkpoints.sync_config_checkpoints`) the
configured calendar's checkpoints and obligations.  People are bound through
the real code path (:func:`core.binding.issue_code` + :func:`core.binding.redeem_code`).
Answers to the first quarter are bulk-inserted as the rows
:func:`core.reporting.record_report` and :func:`core.reporting.review` write.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from bench.common import IMPORTED_AT, REPORT_CHECKPOINT, stopwatch
from core.binding import issue_code, redeem_code
from core.checkpoints import sync_config_checkpoints
from core.config import BUNDLED_PLAN, PersonRole
from core.plan_import import import_plan
from core.reporting import StatusCode
from core.runtime import Runtime, ensure_office_unit
from storage.db import upgrade
from storage.models import (
    Assignment,
    AuditLog,
    Binding,
    Checkpoint,
    Jurisdiction,
    Obligation,
    OutboxMessage,
    Person,
    Plan,
    Review,
    StatusReport,
    Task,
    Unit,
    UnitAlias,
    UnitGroupMember,
)

SEED = 2024
#: The first county is the real one; the others get generated names.
FIRST_COUNTY = "嘉鱼县"
_NAME_FIRST = "安宁平清河阳山城江源丰泰兴和昌德武永新长东临宜通崇桂云松柏南石"
_NAME_SECOND = "乐安宁平川阳山城江源丰泰兴和昌德武溪水原林田岭陵州谷台桥湖"
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国红文斌宇浩"
#: Telegram user ids: county c's people are 10_000_000 + 1000 c + k; inbound liaisons start at 90_000_000.
PEOPLE_BASE = 10_000_000
INBOUND_BASE = 90_000_000


def county_names(count: int) -> list[str]:
    """``count`` distinct, plausible county names; the first is 嘉鱼县 (the notice's own)."""
    rng = random.Random(SEED)
    names = [FIRST_COUNTY]
    seen = set(names)
    while len(names) < count:
        name = f"{rng.choice(_NAME_FIRST)}{rng.choice(_NAME_SECOND)}县"
        if name[0] != name[1] and name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _person_name(rng: random.Random) -> str:
    return rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2))))


# --- building a deployment -------------------------------------------------------------------


@dataclass
class Deployment:
    """What was built, how long each step took, and how many rows each wrote."""

    counties: list[str]
    plan_ids: list[int] = field(default_factory=list)
    schema_s: float = 0.0
    import_s: float = 0.0
    import_rows: int = 0
    calendar_s: float = 0.0
    calendar_rows: int = 0
    bind_s: float = 0.0
    people: int = 0
    bindings: int = 0
    counts: dict[str, int] = field(default_factory=dict)


def _count(session: Session, *models: type) -> int:
    return sum(session.scalar(select(func.count()).select_from(m)) or 0 for m in models)


def build(runtime: Runtime, counties: int) -> Deployment:
    """Create the schema, import the notice once per county, sync the calendar, bind the people."""
    settings = runtime.settings
    deployment = Deployment(county_names(counties))
    with stopwatch() as elapsed:
        upgrade(runtime.engine)
    deployment.schema_s = elapsed()
    text = BUNDLED_PLAN.read_text(encoding="utf-8")

    # 1. import: one transaction per county, as `duban import` does.
    with stopwatch() as elapsed:
        for name in deployment.counties:
            with runtime.transaction() as session:
                result = import_plan(
                    session,
                    settings,
                    text,
                    source_name=BUNDLED_PLAN.name,
                    jurisdiction_name=name,
                    now=IMPORTED_AT,
                    actor="bench",
                    directory=settings.unit_directory(BUNDLED_PLAN),
                )
                assert result.plan_id is not None
                deployment.plan_ids.append(result.plan_id)
    deployment.import_s = elapsed()
    with runtime.transaction() as session:
        # A county's first import also creates its office unit, checkpoints and obligations.
        deployment.import_rows = _count(
            session,
            Jurisdiction,
            Plan,
            Task,
            Unit,
            UnitAlias,
            UnitGroupMember,
            Assignment,
            AuditLog,
            Checkpoint,
            Obligation,
        )

    # 2. the start-up sync: what `initialise` does for every county's plan at each start
    #    (office unit, configured checkpoints, their obligations), here with nothing to change.
    with stopwatch() as elapsed:
        for plan_id in deployment.plan_ids:
            with runtime.transaction() as session:
                plan = session.get(Plan, plan_id)
                assert plan is not None
                ensure_office_unit(session, settings, plan)
                sync_config_checkpoints(session, settings, plan, IMPORTED_AT)
    deployment.calendar_s = elapsed()
    with runtime.transaction() as session:
        deployment.calendar_rows = _count(session, Checkpoint, Obligation)

    # 3. people, through issue_code + redeem_code.
    with stopwatch() as elapsed:
        for index, plan_id in enumerate(deployment.plan_ids):
            deployment.people += bind_county(runtime, plan_id, index)
    deployment.bind_s = elapsed()
    with runtime.transaction() as session:
        deployment.bindings = _count(session, Binding)
        deployment.counts = {
            model.__tablename__: _count(session, model)
            for model in (Jurisdiction, Unit, Task, Assignment, Checkpoint, Obligation, Person, Binding)
        }
    return deployment


def _redeem(session: Session, runtime: Runtime, unit: Unit, role: PersonRole, user_id: int, name: str) -> None:
    now = IMPORTED_AT
    code = issue_code(session, unit, role, now=now, ttl=runtime.settings.binding.code_ttl, created_by="bench")
    result = redeem_code(
        session,
        code.code,
        platform="telegram",
        user_id=str(user_id),
        chat_id=str(user_id),
        display_name=name,
        username="",
        now=now,
    )
    assert result.binding is not None, result.refusal


def bind_county(runtime: Runtime, plan_id: int, county_index: int) -> int:
    """Bind one county's people: 2 liaisons per unit, a head for ~3/4 of units, 1 office, 5 leaders.

    Leaders are each bound to a fifth of the units.  Returns the number of people.
    """
    rng = random.Random(SEED * 1000 + county_index)
    office_name = runtime.settings.office.unit
    people = 0
    with runtime.transaction() as session:
        plan = session.get(Plan, plan_id)
        assert plan is not None
        units = list(
            session.scalars(select(Unit).where(Unit.jurisdiction_id == plan.jurisdiction_id).order_by(Unit.name))
        )
        office = next(u for u in units if u.name == office_name)
        units = [u for u in units if u is not office]
        next_user = PEOPLE_BASE + 1000 * county_index

        def new_person() -> tuple[int, str]:
            nonlocal next_user, people
            next_user += 1
            people += 1
            return next_user, _person_name(rng)

        for unit in units:
            for _ in range(2):
                _redeem(session, runtime, unit, PersonRole.LIAISON, *new_person())
            if rng.random() < 0.75:
                _redeem(session, runtime, unit, PersonRole.HEAD, *new_person())
        _redeem(session, runtime, office, PersonRole.OFFICE, *new_person())
        for leader in range(5):
            user_id, name = new_person()
            for unit in units[leader::5]:
                _redeem(session, runtime, unit, PersonRole.LEADER, user_id, name)
    return people


# --- answers to the first quarter ------------------------------------------------------------

_NOTES = (
    "已完成季度目标的{pct}%,{what}",
    "{what},下一步将加快推进",
    "{what};存在资金缺口,已报请协调",
    "已召开专题会议部署,{what}",
)
_WHAT = (
    "项目前期手续已办结",
    "已完成现场踏勘",
    "招商对接3家企业",
    "专班已组建到位",
    "资金已拨付到位",
    "完成年度任务量的四分之一",
)


def seed_answers(runtime: Runtime) -> dict[str, int]:
    """Answer the first quarter deterministically: ~60% on time (some accepted), ~12% late, ~3% returned.

    The rest stays owed (missing once the deadline passed).  Writes exactly the
    rows ``record_report`` (StatusReport, the obligation's state) and ``review``
    (Review, state accepted/returned) would.  Returns the outcome counts.
    """
    rng = random.Random(SEED + 1)
    outcomes = {"on_time": 0, "late": 0, "accepted": 0, "returned": 0, "missing": 0}
    with runtime.transaction() as session:
        liaison = dict(
            session.execute(
                select(Binding.unit_id, func.min(Binding.person_id))
                .where(Binding.role == "liaison", Binding.revoked_at.is_(None))
                .group_by(Binding.unit_id)
            ).all()
        )
        rows = session.execute(
            select(Obligation.id, Obligation.task_id, Obligation.unit_id, Obligation.checkpoint_id, Checkpoint.due_at)
            .join(Checkpoint, Checkpoint.id == Obligation.checkpoint_id)
            .where(Checkpoint.key == REPORT_CHECKPOINT, Obligation.active.is_(True))
            .order_by(Obligation.id)
        ).all()
        reports: list[dict[str, object]] = []
        decided: list[tuple[int, str, object]] = []  # (obligation id, state, answered_at)
        for obligation_id, task_id, unit_id, checkpoint_id, due_at in rows:
            draw = rng.random()
            if draw < 0.22:
                outcomes["missing"] += 1
                continue
            late = 0.22 <= draw < 0.34
            state = "answered"
            if draw >= 0.94:
                state = "accepted"
            elif 0.34 <= draw < 0.37:
                state = "returned"
            outcomes["late" if late else state if state != "answered" else "on_time"] += 1
            offset = timedelta(hours=rng.uniform(4, 144)) if late else -timedelta(hours=rng.uniform(2, 480))
            answered_at = due_at + offset
            note = rng.choice(_NOTES).format(pct=rng.randrange(20, 100, 5), what=rng.choice(_WHAT))
            reports.append(
                {
                    "task_id": task_id,
                    "unit_id": unit_id,
                    "obligation_id": obligation_id,
                    "checkpoint_id": checkpoint_id,
                    "person_id": liaison.get(unit_id),
                    "status": rng.choice(list(StatusCode)).value,
                    "note": note,
                    "on_time": not late,
                    "platform": "telegram",
                    "platform_message_id": None,
                    "via": "line",
                    "reported_at": answered_at,
                }
            )
            decided.append((obligation_id, state, answered_at))
        report_ids: list[int] = []
        for start in range(0, len(reports), 5000):
            report_ids += session.scalars(
                insert(StatusReport).returning(StatusReport.id, sort_by_parameter_order=True),
                reports[start : start + 5000],
            ).all()
        updates = [
            {
                "id": obligation_id,
                "state": state,
                "answered_at": answered_at,
                "last_report_id": report_id,
                "updated_at": answered_at,
            }
            for (obligation_id, state, answered_at), report_id in zip(decided, report_ids, strict=True)
        ]
        for start in range(0, len(updates), 5000):
            session.execute(update(Obligation), updates[start : start + 5000])
        reviews = [
            {
                "obligation_id": obligation_id,
                "report_id": report_id,
                "decision": state,
                "reason": "进展描述不具体,请补充量化指标" if state == "returned" else "",
                "person_id": None,
                "at": answered_at + timedelta(days=1),  # type: ignore[operator]
            }
            for (obligation_id, state, answered_at), report_id in zip(decided, report_ids, strict=True)
            if state in ("accepted", "returned")
        ]
        if reviews:
            session.execute(insert(Review), reviews)
    return outcomes


# --- liaisons for the inbound benchmark -------------------------------------------------------


@dataclass(frozen=True)
class Reporter:
    """A bound liaison and the one-line report they will send."""

    user_id: int
    text: str


def bind_reporters(runtime: Runtime, jurisdiction: str, count: int, *, first: int = 0) -> list[Reporter]:
    """Bind ``count`` new liaisons in ``jurisdiction`` (real code path) and give each a task to report on.

    Each reports on a task its unit is *responsible* for (not lead): a lead
    unit's first report is its refined plan, which needs a file.  ``first``
    offsets the user ids, so that a second run on the same database binds new people.
    """
    rng = random.Random(SEED + 2)
    with runtime.transaction() as session:
        jurisdiction_id = session.scalar(select(Jurisdiction.id).where(Jurisdiction.name == jurisdiction))
        rows = session.execute(
            select(Unit, Task.annex, Task.number)
            .join(Assignment, Assignment.unit_id == Unit.id)
            .join(Task, Task.id == Assignment.task_id)
            .where(Unit.jurisdiction_id == jurisdiction_id, Assignment.role == "responsible", Assignment.active)
            .order_by(Unit.name, Task.annex.desc(), Task.number)
        ).all()
        tasks: dict[int, list[str]] = {}
        units: dict[int, Unit] = {}
        for unit, annex, number in rows:
            units[unit.id] = unit
            tasks.setdefault(unit.id, []).append(f"{'县' if annex == 'county' else '市'}{number}")
        order = sorted(units)
        reporters = []
        for index in range(count):
            unit = units[order[index % len(order)]]
            user_id = INBOUND_BASE + first + index
            _redeem(session, runtime, unit, PersonRole.LIAISON, user_id, _person_name(rng))
            label = rng.choice(tasks[unit.id])
            note = rng.choice(_NOTES).format(pct=rng.randrange(20, 100, 5), what=rng.choice(_WHAT))
            reporters.append(Reporter(user_id, f"/report {label} 按计划推进 {note}"))
    return reporters


def settle_outbox(runtime: Runtime) -> int:
    """Mark every queued message as sent, so a benchmark's sender only delivers what that benchmark queues."""
    with runtime.transaction() as session:
        result = session.execute(
            update(OutboxMessage).where(OutboxMessage.state == "queued").values(state="sent", sent_at=IMPORTED_AT)
        )
        return int(result.rowcount or 0)
