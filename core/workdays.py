"""Working days by the Chinese public-holiday calendar, make-up workdays included.

The calendar comes from the ``chinesecalendar`` package, which the State
Council's yearly notice updates; the office can declare extra holidays and
make-up workdays in the configuration, which also covers a year the package
does not know yet.  A date in a year nobody covers is an error, not a guess.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar


class CalendarNotCovered(Exception):
    """The holiday calendar for this year is unknown: update chinesecalendar or declare it in [calendar]."""

    def __init__(self, year: int) -> None:
        super().__init__(
            f"{year}年的法定节假日安排未知:请升级 chinesecalendar,或在配置 [calendar] holidays/workdays 中声明该年的安排"
        )
        self.year = year


class WorkCalendar:
    """Answers "is this a working day?" and finds send times on working days, in local time."""

    def __init__(
        self,
        tz: ZoneInfo,
        *,
        send_time: time = time(9, 0),
        quiet_start: time = time(21, 0),
        quiet_end: time = time(8, 0),
        holidays: Iterable[date] = (),
        workdays: Iterable[date] = (),
    ) -> None:
        self.tz = tz
        self.send_time = send_time
        self.quiet_start = quiet_start
        self.quiet_end = quiet_end
        self.holidays = frozenset(holidays)
        self.workdays = frozenset(workdays)
        self._declared_years = {d.year for d in self.holidays | self.workdays}

    def is_workday(self, day: date) -> bool:
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        try:
            return bool(chinese_calendar.is_workday(day))
        except NotImplementedError:
            if day.year in self._declared_years:
                return day.weekday() < 5
            raise CalendarNotCovered(day.year) from None

    def in_quiet_hours(self, moment: datetime) -> bool:
        local = moment.astimezone(self.tz).time()
        if self.quiet_start == self.quiet_end:
            return False
        if self.quiet_start < self.quiet_end:
            return self.quiet_start <= local < self.quiet_end
        return local >= self.quiet_start or local < self.quiet_end

    def is_sendable(self, moment: datetime) -> bool:
        """A working day, outside quiet hours."""
        return self.is_workday(moment.astimezone(self.tz).date()) and not self.in_quiet_hours(moment)

    def at_send_time(self, day: date) -> datetime:
        return datetime.combine(day, self.send_time, tzinfo=self.tz)

    def previous_send_time(self, moment: datetime) -> datetime:
        """The latest working-day send time at or before ``moment``."""
        day = moment.astimezone(self.tz).date()
        for _ in range(60):
            candidate = self.at_send_time(day)
            if candidate <= moment and self.is_workday(day):
                return candidate
            day -= timedelta(days=1)
        raise CalendarNotCovered(day.year)  # sixty days without a working day: the data is wrong

    def next_send_time(self, moment: datetime) -> datetime:
        """The earliest working-day send time at or after ``moment``."""
        day = moment.astimezone(self.tz).date()
        for _ in range(60):
            candidate = self.at_send_time(day)
            if candidate >= moment and self.is_workday(day):
                return candidate
            day += timedelta(days=1)
        raise CalendarNotCovered(day.year)

    def working_days_between(self, start: date, end: date) -> int:
        """Working days in (start, end]: how late something is, in working days."""
        count = 0
        day = start
        while day < end:
            day += timedelta(days=1)
            if self.is_workday(day):
                count += 1
        return count
