"""Pace classes and answer flags, as tables of dates and values."""

from __future__ import annotations

from datetime import date

import pytest

from core.answer_flags import is_copy, is_vague, similarity
from core.pace import PaceClass, PaceThresholds, expected_share, pace_of, share_done
from core.targets import TargetKind

AMOUNT, GROWTH, LEVEL, CEILING = TargetKind.AMOUNT, TargetKind.GROWTH, TargetKind.LEVEL, TargetKind.CEILING
THRESHOLDS = PaceThresholds()


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (date(2024, 1, 1), 0.0),
        (date(2024, 3, 31), 90 / 365),  # end of Q1
        (date(2024, 4, 1), 91 / 365),  # the next quarter's first day
        (date(2024, 7, 1), 182 / 365),  # 时间过半
        (date(2024, 12, 31), 1.0),
        (date(2025, 1, 15), 1.0),
    ],
)
def test_expected_share_is_linear_over_the_year(today: date, expected: float) -> None:
    assert expected_share(AMOUNT, today, year=2024) == pytest.approx(expected)


def test_a_task_deadline_shortens_the_line() -> None:
    assert expected_share(AMOUNT, date(2024, 4, 1), year=2024, deadline=date(2024, 6, 30)) == pytest.approx(91 / 181)


def test_milestones_replace_the_line() -> None:
    milestones = [date(2024, 3, 31), date(2024, 6, 30), date(2024, 9, 30), date(2024, 12, 31)]
    assert expected_share(AMOUNT, date(2024, 7, 1), year=2024, milestones=milestones) == 0.5


@pytest.mark.parametrize("kind", [LEVEL, CEILING])
def test_a_level_or_ceiling_is_expected_to_hold_all_year(kind: TargetKind) -> None:
    assert expected_share(kind, date(2024, 2, 1), year=2024) == 1.0


@pytest.mark.parametrize(
    ("kind", "target", "value", "done"),
    [
        (AMOUNT, 434, 217, 0.5),
        (GROWTH, 6.5, 3.25, 0.5),
        (GROWTH, 6.5, -1.0, 0.0),
        (LEVEL, 86, 86, 1.0),
        (CEILING, 4.5, 4.0, 1.0),
        (CEILING, 4.5, 9.0, 0.5),
    ],
)
def test_share_done_by_kind(kind: TargetKind, target: float, value: float, done: float) -> None:
    assert share_done(kind, target, value) == pytest.approx(done)


@pytest.mark.parametrize(
    ("today", "value", "pace"),
    [
        (date(2024, 7, 1), 300, PaceClass.AHEAD),  # 0.69 done, 0.50 expected
        (date(2024, 7, 1), 217, PaceClass.ON_PACE),
        (date(2024, 7, 1), 180, PaceClass.BEHIND),  # 0.41 / 0.50
        (date(2024, 7, 1), 100, PaceClass.FAR_BEHIND),
        (date(2024, 3, 31), 100, PaceClass.ON_PACE),  # Q1: 0.23 done, 0.25 expected
        (date(2024, 4, 1), 50, PaceClass.FAR_BEHIND),  # Q2 starts: 0.12 / 0.25
        (date(2024, 1, 1), 0, PaceClass.ON_PACE),  # nothing expected yet
    ],
)
def test_pace_class_across_quarter_boundaries(today: date, value: float, pace: PaceClass) -> None:
    assert pace_of(AMOUNT, 434, value, today, year=2024, thresholds=THRESHOLDS).pace is pace


def test_below_half_at_mid_year_is_the_time_half_task_half_check() -> None:
    assert pace_of(AMOUNT, 434, 200, date(2024, 7, 1), year=2024, thresholds=THRESHOLDS).below_half
    assert not pace_of(AMOUNT, 434, 217, date(2024, 7, 1), year=2024, thresholds=THRESHOLDS).below_half


@pytest.mark.parametrize(
    ("note", "vague"),
    [
        ("按计划推进", True),
        ("正在有序推进中。", True),
        ("进展顺利,各项工作稳步推进", True),
        ("已完成可研批复,正在开展初步设计", False),
        ("完成投资3.2亿元", False),
        ("预计九月底前完工", False),
    ],
)
def test_a_note_with_no_figure_date_or_fact_is_vague(note: str, vague: bool) -> None:
    assert is_vague(note) is vague


def test_a_note_repeating_last_round_is_a_copy() -> None:
    last = "已完成可研批复,正在开展初步设计,预计6月底前开工。"
    assert is_copy("已完成可研批复，正在开展初步设计，预计6月底前开工", last)
    assert not is_copy("初步设计已获批复,施工招标完成,6月18日开工。", last)
    assert not is_copy("已完成可研批复", None)


def test_similarity_ignores_spaces_and_punctuation() -> None:
    assert similarity("完成 投资,3亿元。", "完成投资3亿元") == 1.0
