"""The escalation ladder: when each rung of a checkpoint fires, and whom it notifies.

A rung is an offset from the due time.  A whole-day offset (``-7d``) fires at
the morning send time of that day; a finer one (``-3h``, ``-30s``) at the exact
moment.  With the calendar followed, a rung that lands on a non-working day or
in quiet hours moves to the send time of the nearest working day: earlier when
it is before the deadline, later when it is after.  After the last rung the
ladder repeats every ``repeat_every`` until answered, up to ``repeat_cap`` times.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from core.config import Ladder, PersonRole
from core.durations import Offset, format_duration
from core.workdays import WorkCalendar


@dataclass(frozen=True)
class RungTime:
    """One rung of one checkpoint, placed in time."""

    key: str
    index: int
    offset: Offset
    roles: frozenset[PersonRole]
    nominal: datetime
    fires_at: datetime

    @property
    def after_due(self) -> bool:
        return self.offset.delta > timedelta(0)

    @property
    def moved(self) -> bool:
        return self.fires_at != self.nominal


def _nominal(due_at: datetime, offset: Offset, calendar: WorkCalendar) -> datetime:
    if offset.day_granular:
        local_due = due_at.astimezone(calendar.tz)
        return calendar.at_send_time(local_due.date() + timedelta(days=offset.days))
    return due_at + offset.delta


def _place(due_at: datetime, nominal: datetime, calendar: WorkCalendar, follow_calendar: bool) -> datetime:
    if not follow_calendar or calendar.is_sendable(nominal):
        return nominal
    if nominal <= due_at:
        return calendar.previous_send_time(nominal)
    return calendar.next_send_time(nominal)


def rung_schedule(due_at: datetime, ladder: Ladder, calendar: WorkCalendar) -> list[RungTime]:
    """Every rung of a ladder for a deadline, repeats included, in firing order."""
    rungs: list[RungTime] = []
    for index, rung in enumerate(ladder.rungs):
        nominal = _nominal(due_at, rung.offset, calendar)
        rungs.append(
            RungTime(
                key=rung.offset.text,
                index=index,
                offset=rung.offset,
                roles=frozenset(rung.roles),
                nominal=nominal,
                fires_at=_place(due_at, nominal, calendar, ladder.follow_calendar),
            )
        )
    if ladder.repeat_every and ladder.repeat_cap and ladder.rungs and ladder.repeat_roles:
        last = ladder.rungs[-1].offset
        for count in range(1, ladder.repeat_cap + 1):
            delta = last.delta + ladder.repeat_every * count
            offset = Offset(
                delta, last.day_granular and delta % timedelta(days=1) == timedelta(0), "+" + format_duration(delta)
            )
            nominal = _nominal(due_at, offset, calendar)
            rungs.append(
                RungTime(
                    key=f"repeat-{count}",
                    index=len(ladder.rungs) + count - 1,
                    offset=offset,
                    roles=frozenset(ladder.repeat_roles),
                    nominal=nominal,
                    fires_at=_place(due_at, nominal, calendar, ladder.follow_calendar),
                )
            )
    return sorted(rungs, key=lambda r: (r.fires_at, r.index))


def ladder_from_json(data: dict[str, object] | None, default: Ladder) -> Ladder:
    """A checkpoint's own ladder as stored in the database, or the global one."""
    if not data:
        return default
    return Ladder.model_validate(data)


def ladder_to_json(ladder: Ladder) -> dict[str, object]:
    return {
        "rungs": [{"offset": r.offset.text, "roles": [role.value for role in r.roles]} for r in ladder.rungs],
        "repeat_every": format_duration(ladder.repeat_every) if ladder.repeat_every else None,
        "repeat_roles": [role.value for role in ladder.repeat_roles],
        "repeat_cap": ladder.repeat_cap,
        "follow_calendar": ladder.follow_calendar,
    }
