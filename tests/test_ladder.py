"""When each rung fires: offsets from the due time, moved off holidays and quiet hours."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.config import Ladder, PersonRole, Rung
from core.durations import parse_offset
from core.ladder import rung_schedule
from core.workdays import WorkCalendar
from tests.conftest import local

TZ = ZoneInfo("Asia/Shanghai")
CALENDAR = WorkCalendar(TZ, send_time=time(9), quiet_start=time(21), quiet_end=time(8))


def fires(due: datetime, offset: str, *, follow: bool = True) -> datetime:
    ladder = Ladder(
        rungs=[Rung(offset=parse_offset(offset), roles=[PersonRole.LIAISON])], repeat_cap=0, follow_calendar=follow
    )
    [rung] = rung_schedule(due, ladder, CALENDAR)
    return rung.fires_at


# (due, offset, when it fires) — each row read off the 2024 calendar by hand
CASES = [
    # the refined plan, due Thursday 29 February
    (local(2024, 2, 29, 18), "-7d", local(2024, 2, 22, 9)),
    (local(2024, 2, 29, 18), "-3d", local(2024, 2, 26, 9)),
    (local(2024, 2, 29, 18), "0d", local(2024, 2, 29, 9)),
    (local(2024, 2, 29, 18), "+3d", local(2024, 3, 4, 9)),  # Sunday 3 March → Monday, later after the deadline
    # a deadline just after the Spring Festival (Monday 19 February)
    (local(2024, 2, 19, 18), "-7d", local(2024, 2, 9, 9)),  # 12 Feb is a holiday → the last working day before it
    (local(2024, 2, 19, 18), "-3d", local(2024, 2, 9, 9)),
    (local(2024, 2, 19, 18), "-1d", local(2024, 2, 18, 9)),  # a make-up Sunday is a working day
    (local(2024, 2, 13, 18), "+1d", local(2024, 2, 18, 9)),  # after the deadline → the next working day
    # exact offsets and quiet hours
    (local(2024, 3, 25, 18), "-3h", local(2024, 3, 25, 15)),
    (local(2024, 3, 26, 7, 30), "-3h", local(2024, 3, 25, 9)),  # 04:30 is quiet → earlier
    (local(2024, 3, 25, 18), "+13h", local(2024, 3, 26, 9)),  # 07:00 is quiet → later
    (local(2024, 3, 25, 18), "-30s", local(2024, 3, 25, 17, 59, 30)),
]


@pytest.mark.parametrize(("due", "offset", "expected"), CASES, ids=[f"{d:%m%d}{o}" for d, o, _ in CASES])
def test_rung_fires_at(due: datetime, offset: str, expected: datetime) -> None:
    assert fires(due, offset) == expected


def test_a_ladder_that_ignores_the_calendar_fires_on_holidays() -> None:
    assert fires(local(2024, 2, 19, 18), "-7d", follow=False) == local(2024, 2, 12, 9)


def test_repeats_follow_the_last_rung_up_to_the_cap() -> None:
    ladder = Ladder(
        rungs=[Rung(offset=parse_offset("+1d"), roles=[PersonRole.LIAISON])],
        repeat_every=timedelta(days=7),
        repeat_cap=2,
        repeat_roles=[PersonRole.HEAD],
    )
    schedule = rung_schedule(local(2024, 3, 25, 18), ladder, CALENDAR)
    assert [(r.key, r.fires_at, sorted(r.roles)) for r in schedule] == [
        ("+1d", local(2024, 3, 26, 9), [PersonRole.LIAISON]),
        ("repeat-1", local(2024, 4, 2, 9), [PersonRole.HEAD]),
        ("repeat-2", local(2024, 4, 9, 9), [PersonRole.HEAD]),
    ]


def test_rungs_must_be_in_time_order() -> None:
    with pytest.raises(ValueError, match="time order"):
        Ladder(
            rungs=[
                Rung(offset=parse_offset("+1d"), roles=[PersonRole.LIAISON]),
                Rung(offset=parse_offset("-1d"), roles=[PersonRole.LIAISON]),
            ]
        )


@pytest.mark.parametrize(
    ("text", "seconds", "day_granular"),
    [
        ("-7d", -604800, True),
        ("+1d", 86400, True),
        ("-3h", -10800, False),
        ("-30s", -30, False),
        ("1d12h", 129600, False),
        ("0d", 0, True),
    ],
)
def test_offsets_accept_days_hours_minutes_seconds(text: str, seconds: int, day_granular: bool) -> None:
    offset = parse_offset(text)
    assert offset.delta == timedelta(seconds=seconds) and offset.day_granular is day_granular


@pytest.mark.parametrize("text", ["7", "-7x", "d7", "--1d", ""])
def test_malformed_offsets_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_offset(text)
