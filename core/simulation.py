"""``duban simulate``: run the schedule on a virtual clock over a copy of the data.

The office's planning tool ("what will go out next week?") and a dry run of
the year.  It jumps from one rung time to the next (and to each answer in the
answers file), runs the same tick the service runs, and collects what would be
sent — without queuing anything, on a copy of the database: SQLite is copied
with the backup API; on PostgreSQL everything happens in a transaction that is
rolled back.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.config import PersonRole, Settings
from core.conversation import parse_local_datetime
from core.escalation import Escalation, Notice, make_calendar
from core.reporting import StatusCode, parse_status
from core.runtime import Runtime, current_plan
from core.tasks import parse_task_ref
from core.workdays import CalendarNotCovered
from messages import Messages
from storage.db import make_engine
from storage.models import Checkpoint, Obligation, RungRun
from storage.queries import find_task, find_unit


@dataclass(frozen=True)
class Answer:
    """An answer to apply during the simulation: a unit answers a task at a time."""

    at: datetime
    unit: str
    task: str
    status: StatusCode = StatusCode.ON_TRACK


@dataclass
class Timeline:
    start: datetime
    end: datetime
    notices: list[Notice] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)

    def per_day(self, tz: Any) -> Counter[str]:
        return Counter(n.at.astimezone(tz).strftime("%Y-%m-%d") for n in self.notices)

    def per_unit(self) -> Counter[str]:
        counter: Counter[str] = Counter()
        for notice in self.notices:
            if notice.role in (PersonRole.LIAISON.value, PersonRole.HEAD.value):
                counter.update(notice.units)
        return counter

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "notices": [n.as_dict() for n in self.notices],
            "answers": self.answers,
            "totals": {
                "notices": len(self.notices),
                "reaching_someone": sum(1 for n in self.notices if n.recipients),
                "per_day": dict(sorted(self.per_day(self.start.tzinfo).items())),
                "per_unit": dict(self.per_unit().most_common()),
            },
        }


def load_answers(path: Path, settings: Settings) -> list[Answer]:
    """Read ``[{"at": "2024-02-27T10:00", "unit": "县发改局", "task": "1", "status": "按计划推进"}, …]``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: 不是有效的 JSON: {exc}") from exc
    if not isinstance(data, list):
        raise ValueError(f"{path}: 应为答复列表")
    answers = []
    for index, item in enumerate(data, start=1):
        try:
            status = parse_status(str(item.get("status", "on_track")))
            if status is None:
                raise ValueError(f"未知状态 {item.get('status')!r}")
            answers.append(
                Answer(
                    at=parse_local_datetime(str(item["at"]), settings),
                    unit=str(item["unit"]),
                    task=str(item["task"]),
                    status=status,
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: 第 {index} 条答复无效: {exc}") from exc
    return sorted(answers, key=lambda a: a.at)


@contextlib.contextmanager
def _copy_of(runtime: Runtime) -> Iterator[Session]:
    engine = runtime.engine
    if engine.dialect.name == "sqlite":
        with tempfile.TemporaryDirectory(prefix="duban-simulate-") as folder:
            target = Path(folder) / "copy.sqlite3"
            raw = engine.raw_connection()
            try:
                destination = sqlite3.connect(target)
                raw.driver_connection.backup(destination)  # type: ignore[union-attr]
                destination.close()
            finally:
                raw.close()
            copy = make_engine(f"sqlite:///{target}")
            try:
                with Session(copy) as session, session.begin():
                    yield session
            finally:
                copy.dispose()
        return
    with engine.connect() as connection:
        transaction = connection.begin()
        try:
            with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
                yield session
        finally:
            transaction.rollback()


def _apply_answer(session: Session, settings: Settings, answer: Answer) -> dict[str, Any]:
    plan = current_plan(session, settings)
    assert plan is not None
    unit = find_unit(session, plan.jurisdiction_id, answer.unit)
    ref = parse_task_ref(answer.task)
    task = find_task(session, plan.id, ref[0].value, ref[1]) if ref else None
    result: dict[str, Any] = {"at": answer.at.isoformat(), "unit": answer.unit, "task": answer.task}
    if unit is None or task is None:
        result["applied"] = False
        result["reason"] = "未知单位" if unit is None else "未知任务"
        return result
    obligation = session.scalar(
        select(Obligation)
        .join(Checkpoint, Checkpoint.id == Obligation.checkpoint_id)
        .where(
            Obligation.task_id == task.id,
            Obligation.unit_id == unit.id,
            Obligation.active.is_(True),
            Obligation.state.in_(("owed", "returned")),
            Checkpoint.cancelled_at.is_(None),
        )
        .order_by(Checkpoint.due_at)
        .limit(1)
    )
    if obligation is None:
        result["applied"] = False
        result["reason"] = "无待报送事项"
        return result
    obligation.state = "answered"
    obligation.answered_at = answer.at
    result["applied"] = True
    result["checkpoint"] = obligation.checkpoint.key
    return result


def _settle_before(session: Session, escalation: Escalation, start: datetime) -> None:
    """Begin the timeline at ``start``: every rung before it dealt with, none from it on.

    The service records each rung it passes, at its own clock: once it has
    run, a window in the past (the README's 2024 example) would otherwise show
    nothing, its rungs recorded as skipped at start-up.  The copy forgets them.
    """
    session.execute(delete(RungRun).where(RungRun.fires_at >= start))
    done = {tuple(row) for row in session.execute(select(RungRun.checkpoint_id, RungRun.rung_key, RungRun.role))}
    for checkpoint in session.scalars(select(Checkpoint).where(Checkpoint.cancelled_at.is_(None))):
        for rung in escalation.schedule(checkpoint):
            if rung.fires_at >= start:
                continue
            for role in rung.roles:
                if (checkpoint.id, rung.key, role.value) not in done:
                    session.add(
                        RungRun(
                            checkpoint_id=checkpoint.id,
                            rung_key=rung.key,
                            role=role.value,
                            fires_at=rung.fires_at,
                            processed_at=start,
                            outcome="before-simulation",
                        )
                    )
    session.flush()


def _forget_finished(session: Session, escalation: Escalation, moment: datetime) -> None:
    """Drop the open obligations of rounds with no rung left after ``moment`` (memory stays per round)."""
    cache = escalation.open_cache
    if not cache:
        return
    for checkpoint_id in list(cache):
        checkpoint = session.get(Checkpoint, checkpoint_id)
        try:
            rest = checkpoint is not None and any(r.fires_at > moment for r in escalation.schedule(checkpoint))
        except CalendarNotCovered:
            rest = False
        if not rest:
            del cache[checkpoint_id]


def run_simulation(runtime: Runtime, start: datetime, end: datetime, answers: list[Answer]) -> Timeline:
    """The timeline of what would be sent between ``start`` and ``end``."""
    settings = runtime.settings
    messages = Messages(settings.service.language, settings.tz)
    escalation = Escalation(settings, messages, make_calendar(settings))
    timeline = Timeline(start=start, end=end)
    pending = [a for a in answers if start <= a.at <= end]
    # What is owed is read once per round, not at every rung: only an applied answer changes it.
    escalation.open_cache = {}
    with _copy_of(runtime) as session:
        _settle_before(session, escalation, start)
        moment = start
        while True:
            next_rung = escalation.next_fire_after(session, moment)
            next_answer = pending[0].at if pending else None
            candidates = [t for t in (next_rung, next_answer) if t is not None and t <= end]
            if not candidates:
                break
            moment = min(candidates)
            while pending and pending[0].at <= moment:
                timeline.answers.append(_apply_answer(session, settings, pending.pop(0)))
                escalation.open_cache.clear()
            session.flush()
            timeline.notices += escalation.tick(session, moment, deliver=False).notices
            _forget_finished(session, escalation, moment)
    return timeline
