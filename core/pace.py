"""Pace (进度): is a target on track for the time gone by?

For every target the office asks at each round: how much is done, how much
should be done by now, and so is the unit ahead, on pace or behind?  The
answer is plain arithmetic on the target, the reported value and the date,
kept apart from storage and chat so it can be tested with tables of dates.

- share done: the reported value over the target for amounts and growth
  rates (cumulative growth so far against the year's rate); for a level to
  reach or hold, the value over the level; for a ceiling, 1 while under it;
- share expected by now: from the task's milestones where it has them (the
  share of milestones due by now), otherwise linear from the start of the
  year to the task's own deadline or the year's end; a level or ceiling is
  expected to hold all the time;
- class: 超前 / 正常 / 滞后 / 严重滞后 by the ratio of the two, with the
  thresholds in ``[report]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from core.targets import TargetKind


class PaceClass(StrEnum):
    AHEAD = "超前"
    ON_PACE = "正常"
    BEHIND = "滞后"
    FAR_BEHIND = "严重滞后"


@dataclass(frozen=True)
class PaceThresholds:
    """Ratios of done to expected: at or above ``ahead`` is 超前, below ``behind`` 滞后, below ``far_behind`` 严重滞后."""

    ahead: float = 1.1
    behind: float = 0.9
    far_behind: float = 0.6


@dataclass(frozen=True)
class Pace:
    done: float
    expected: float
    pace: PaceClass

    @property
    def below_half(self) -> bool:
        """The 时间过半、任务过半 check: less than half done."""
        return self.done < 0.5


def share_done(kind: TargetKind, target: float, value: float) -> float:
    """How much of the target the reported value represents (1.0 = reached)."""
    if kind is TargetKind.CEILING:
        if value <= target:
            return 1.0
        return target / value if value > 0 else 0.0
    if target == 0:
        return 1.0 if value >= 0 else 0.0
    return max(value / target, 0.0)


def expected_share(
    kind: TargetKind,
    today: date,
    *,
    year: int,
    deadline: date | None = None,
    milestones: list[date] | None = None,
) -> float:
    """How much of the target should be done on ``today``.

    Milestones, when the task has them, say it: the share of them due by
    today.  Otherwise the time gone from 1 January to the deadline (the
    task's own, else 31 December).
    """
    if kind in (TargetKind.LEVEL, TargetKind.CEILING):
        return 1.0
    if milestones:
        return sum(1 for due in milestones if due <= today) / len(milestones)
    start = date(year, 1, 1)
    end = deadline or date(year, 12, 31)
    if today <= start:
        return 0.0
    if today >= end:
        return 1.0
    return (today - start).days / (end - start).days


def classify(done: float, expected: float, thresholds: PaceThresholds) -> PaceClass:
    """The pace class; nothing is behind before anything is expected."""
    if expected <= 0:
        return PaceClass.AHEAD if done > 0 else PaceClass.ON_PACE
    ratio = done / expected
    if ratio >= thresholds.ahead:
        return PaceClass.AHEAD
    if ratio >= thresholds.behind:
        return PaceClass.ON_PACE
    if ratio >= thresholds.far_behind:
        return PaceClass.BEHIND
    return PaceClass.FAR_BEHIND


def pace_of(
    kind: TargetKind,
    target: float,
    value: float,
    today: date,
    *,
    year: int,
    thresholds: PaceThresholds,
    deadline: date | None = None,
    milestones: list[date] | None = None,
) -> Pace:
    """Share done, share expected and the class, for one target on one day."""
    done = share_done(kind, target, value)
    expected = expected_share(kind, today, year=year, deadline=deadline, milestones=milestones)
    return Pace(done=done, expected=expected, pace=classify(done, expected, thresholds))
