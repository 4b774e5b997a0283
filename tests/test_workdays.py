"""Working days follow the Chinese public-holiday calendar, make-up workdays included."""

from __future__ import annotations

from datetime import date, time
from zoneinfo import ZoneInfo

import pytest

from core.workdays import CalendarNotCovered, WorkCalendar
from tests.conftest import local

TZ = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def calendar() -> WorkCalendar:
    return WorkCalendar(TZ, send_time=time(9), quiet_start=time(21), quiet_end=time(8))


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2024, 2, 9), True),  # New Year's Eve was a working day in 2024
        (date(2024, 2, 12), False),  # Spring Festival holiday, a Monday
        (date(2024, 2, 16), False),
        (date(2024, 2, 4), True),  # make-up Sunday before the festival
        (date(2024, 2, 18), True),  # make-up Sunday after it
        (date(2024, 2, 24), False),  # an ordinary Saturday
        (date(2024, 10, 1), False),  # National Day
        (date(2024, 10, 12), True),  # its make-up Saturday
    ],
)
def test_workdays_follow_the_2024_holiday_schedule(calendar: WorkCalendar, day: date, working: bool) -> None:
    assert calendar.is_workday(day) is working


def test_previous_send_time_skips_the_spring_festival(calendar: WorkCalendar) -> None:
    assert calendar.previous_send_time(local(2024, 2, 16, 9)) == local(2024, 2, 9, 9)


def test_next_send_time_lands_on_the_make_up_sunday(calendar: WorkCalendar) -> None:
    assert calendar.next_send_time(local(2024, 2, 12, 9)) == local(2024, 2, 18, 9)


@pytest.mark.parametrize(
    ("moment", "quiet"),
    [
        (local(2024, 3, 5, 22), True),
        (local(2024, 3, 5, 7, 59), True),
        (local(2024, 3, 5, 8), False),
        (local(2024, 3, 5, 20, 59), False),
    ],
)
def test_quiet_hours_wrap_around_midnight(calendar: WorkCalendar, moment, quiet: bool) -> None:  # type: ignore[no-untyped-def]
    assert calendar.in_quiet_hours(moment) is quiet


def test_a_year_the_package_does_not_cover_is_a_clear_error(calendar: WorkCalendar) -> None:
    with pytest.raises(CalendarNotCovered, match="2031年"):
        calendar.is_workday(date(2031, 3, 3))


def test_the_office_can_declare_a_year_itself() -> None:
    calendar = WorkCalendar(TZ, holidays=[date(2031, 1, 1)], workdays=[date(2031, 1, 4)])
    assert calendar.is_workday(date(2031, 1, 1)) is False
    assert calendar.is_workday(date(2031, 1, 4)) is True  # a Saturday declared a workday
    assert calendar.is_workday(date(2031, 1, 6)) is True  # an ordinary Monday of a declared year


def test_declared_days_override_the_package(calendar: WorkCalendar) -> None:
    override = WorkCalendar(TZ, holidays=[date(2024, 3, 5)])
    assert calendar.is_workday(date(2024, 3, 5)) and not override.is_workday(date(2024, 3, 5))
