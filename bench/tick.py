"""The scheduler tick: ``Escalation.tick(session, now)`` in one transaction, idle and firing.

* cold: the first tick of a fresh :class:`Escalation` (its rung schedules not yet cached), nothing due;
* idle before: nothing due, no rung ever fired (median of a few ticks a minute apart);
* firing: the -7d rung of the refined-plan checkpoint of every county, which
  queues one reminder per bound liaison of every lead unit;
* idle: the minutes after that rung (the steady state: due rungs exist and
  are all recorded in ``rung_run``).  This is the tick the 1 s target is held to.

The scheduler's job, :func:`jobs.ticks.remind`, runs that tick and then checks
every jurisdiction's plan for a round whose 通报 is due; that whole job is
timed too (``job_idle_s``), and so is its quarter-end part at the moment the
first quarter's 通报 goes out for every county (``quarter_end_s``), when it
writes one XLSX per county inside the tick's transaction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from bench.common import FIRING_AT, IDLE_BEFORE, QUARTER_END_AT, median, stopwatch
from core.documents import FileWriter
from core.escalation import Escalation, TickReport, make_calendar
from core.quarter_end import plans_with_closed_rounds
from core.runtime import Runtime
from jobs.ticks import notify_counties, remind
from messages import Messages
from storage.models import OutboxMessage
from storage.queries import newest_plans


@dataclass
class TickFigures:
    cold_s: float
    idle_before_s: float
    firing_s: float
    idle_s: float
    job_idle_s: float
    queued: int
    notices: int
    checkpoints_reached: int
    quarter_end_s: float | None
    quarter_end_queued: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _tick(runtime: Runtime, escalation: Escalation, now: Any) -> tuple[float, TickReport]:
    """One ``Escalation.tick`` in its own transaction, commit included."""
    with stopwatch() as elapsed, runtime.transaction() as session:
        report = escalation.tick(session, now)
    return elapsed(), report


def _quarter_end(runtime: Runtime, escalation: Escalation) -> tuple[float | None, int]:
    """The quarter-end half of ``remind``: each county with a closed round gets its 通报, the files written by
    ``[report] file_workers`` processes as in the service (started within the timed part, as at its first)."""
    files = FileWriter(escalation.m, runtime.settings.report.file_processes())
    try:
        with stopwatch() as elapsed:
            with runtime.transaction() as session:
                plan_ids = plans_with_closed_rounds(
                    session, [plan.id for plan in newest_plans(session)], QUARTER_END_AT
                )
            queued = len(notify_counties(runtime, escalation, plan_ids, QUARTER_END_AT, files))
    finally:
        files.close()
    return elapsed(), queued


def run(runtime: Runtime, repeats: int) -> TickFigures:
    """Time the ticks described in the module docstring on a freshly built deployment."""
    settings = runtime.settings
    escalation = Escalation(settings, Messages(settings.service.language, settings.tz), make_calendar(settings))
    cold_s, cold = _tick(runtime, escalation, IDLE_BEFORE)
    assert not cold.notices, "something was due before the first rung"
    idle_before = [_tick(runtime, escalation, IDLE_BEFORE + timedelta(minutes=m))[0] for m in range(1, repeats + 1)]
    firing_s, fired = _tick(runtime, escalation, FIRING_AT)
    idle = []
    for minute in range(1, repeats + 1):
        seconds, report = _tick(runtime, escalation, FIRING_AT + timedelta(minutes=minute))
        assert report.queued == 0 and not report.notices, "an idle tick queued something"
        idle.append(seconds)
    job = []
    for minute in range(repeats + 1, 2 * repeats + 1):
        with stopwatch() as elapsed:
            remind(runtime, escalation, FIRING_AT + timedelta(minutes=minute))
        job.append(elapsed())
    with runtime.transaction() as session:
        reached = session.scalar(
            select(func.count(func.distinct(OutboxMessage.checkpoint_id))).where(OutboxMessage.kind == "reminder")
        )
    quarter_end_s, quarter_end_queued = _quarter_end(runtime, escalation)
    return TickFigures(
        cold_s=cold_s,
        idle_before_s=median(idle_before),
        firing_s=firing_s,
        idle_s=median(idle),
        job_idle_s=median(job),
        queued=fired.queued,
        notices=len(fired.notices),
        checkpoints_reached=int(reached or 0),
        quarter_end_s=quarter_end_s,
        quarter_end_queued=quarter_end_queued,
    )
