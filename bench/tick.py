"""The scheduler tick: ``jobs.ticks.remind`` (one transaction around ``Escalation.tick``), idle and firing.

* cold: the first tick of a fresh :class:`Escalation` (its rung schedules not yet cached), nothing due;
* idle: nothing due, no rung ever fired (median of a few ticks a minute apart);
* firing: the -7d rung of the refined-plan checkpoint of every county, which
  queues one reminder per bound liaison of every lead unit;
* idle after: the minutes after that rung (the steady state: due rungs exist
  and are all recorded in ``rung_run``; this is the tick that runs every minute).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from bench.common import FIRING_AT, IDLE_BEFORE, median, stopwatch
from core.escalation import Escalation, make_calendar
from core.runtime import Runtime
from jobs.ticks import remind
from messages import Messages
from storage.models import OutboxMessage


@dataclass
class TickFigures:
    cold_s: float
    idle_before_s: float
    firing_s: float
    idle_s: float
    queued: int
    notices: int
    jurisdictions_reached: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run(runtime: Runtime, repeats: int) -> TickFigures:
    """Time the ticks described in the module docstring on a freshly built deployment."""
    settings = runtime.settings
    escalation = Escalation(settings, Messages(settings.service.language, settings.tz), make_calendar(settings))
    with stopwatch() as elapsed:
        cold = remind(runtime, escalation, IDLE_BEFORE)
    cold_s = elapsed()
    assert not cold.notices, "something was due before the first rung"
    idle_before = []
    for minute in range(1, repeats + 1):
        with stopwatch() as elapsed:
            remind(runtime, escalation, IDLE_BEFORE + timedelta(minutes=minute))
        idle_before.append(elapsed())
    with stopwatch() as elapsed:
        fired = remind(runtime, escalation, FIRING_AT)
    firing_s = elapsed()
    idle_after = []
    for minute in range(1, repeats + 1):
        with stopwatch() as elapsed:
            report = remind(runtime, escalation, FIRING_AT + timedelta(minutes=minute))
        idle_after.append(elapsed())
        assert report.queued == 0 and not report.notices, "an idle tick queued something"
    with runtime.transaction() as session:
        reached = session.scalar(
            select(func.count(func.distinct(OutboxMessage.checkpoint_id))).where(OutboxMessage.kind == "reminder")
        )
    return TickFigures(
        cold_s=cold_s,
        idle_before_s=median(idle_before),
        firing_s=firing_s,
        idle_s=median(idle_after),
        queued=fired.queued,
        notices=len(fired.notices),
        jurisdictions_reached=int(reached or 0),
    )
