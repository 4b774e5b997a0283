"""Progress against targets (目标完成情况) at a round: share done, share expected, pace, change.

The figures a unit reports for a task's targets are kept as
:class:`~storage.models.TargetValue` rows beside its status report
(:func:`record_values`).  At a round's cut-off, :func:`round_progress` reads,
for every target of the tasks in scope, the latest figure of the task's lead
unit (the task's figure; responsible units' shares are listed apart), the one
at the previous round's cut-off, and computes the pace with
:mod:`core.pace`.  The 时间过半、任务过半 check (:func:`below_half`) and the
进度 lights (:func:`pace_lights`) are read off that list.

进度 light of a task: green when every target is 超前 or 正常, yellow when the
worst is 滞后, red when the worst is 严重滞后 or a target has no figure at a
round where something is expected; ``none`` for a task without targets.  A
unit's 进度 light is the worst light of the tasks it leads.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from core.pace import PaceClass, PaceThresholds, expected_share, pace_of
from core.targets import TargetKind
from core.tasks import task_label
from storage.models import Assignment, Checkpoint, Milestone, StatusReport, Target, TargetValue, Task, Unit

Light = Literal["green", "yellow", "red", "none"]
_LIGHT_RANK: dict[str, int] = {"none": 0, "green": 1, "yellow": 2, "red": 3}
_PACE_LIGHT: dict[PaceClass, Light] = {
    PaceClass.AHEAD: "green",
    PaceClass.ON_PACE: "green",
    PaceClass.BEHIND: "yellow",
    PaceClass.FAR_BEHIND: "red",
}


@dataclass(frozen=True)
class TargetProgress:
    """One target at one round: what the lead unit reported and how that compares with the time gone."""

    task_id: int
    task: str
    target_id: int
    metric: str
    target: float
    unit_of_measure: str
    kind: str
    lead: str
    lead_unit_id: int | None
    reported: float | None
    reported_at: datetime | None
    previous: float | None
    done: float | None
    expected: float
    pace: PaceClass | None

    @property
    def change(self) -> float | None:
        """Change of the reported figure since the previous round's cut-off."""
        if self.reported is None or self.previous is None:
            return None
        return self.reported - self.previous

    @property
    def below_half(self) -> bool:
        """Less than half done (a figure missing counts as below)."""
        return self.done is None or self.done < 0.5

    @property
    def light(self) -> Light:
        if self.pace is None:
            return "red" if self.expected > 0 else "none"
        return _PACE_LIGHT[self.pace]


def record_values(
    session: Session, report: StatusReport, values: dict[int, float], *, reported_at: datetime
) -> list[TargetValue]:
    """Keep the figures a report gave (target id → value in the target's unit), with the report."""
    rows = [
        TargetValue(
            target_id=target_id, report_id=report.id, unit_id=report.unit_id, value=value, reported_at=reported_at
        )
        for target_id, value in values.items()
    ]
    session.add_all(rows)
    return rows


# Built once (the 通报 of every county of a province runs each of them per county); the lists are
# expanding parameters, so a statement is not built, and its cache key not computed, at every call.
_LIVE_TASKS = select(Task.id, Task.annex, Task.number).where(
    Task.id.in_(bindparam("task_ids", expanding=True)), Task.active.is_(True)
)
_TASK_TARGETS = (
    select(Target.id, Target.task_id, Target.metric, Target.value, Target.unit, Target.kind)
    .where(Target.task_id.in_(bindparam("task_ids", expanding=True)), Target.active.is_(True))
    .order_by(Target.task_id, Target.position, Target.id)
)
_LEAD_UNITS = (
    select(Assignment.task_id, Unit.id, Unit.name)
    .join(Unit, Unit.id == Assignment.unit_id)
    .where(
        Assignment.task_id.in_(bindparam("task_ids", expanding=True)),
        Assignment.active.is_(True),
        Assignment.role == "lead",
    )
    .order_by(Assignment.id)
)
_MILESTONE_DATES = select(Milestone.task_id, Milestone.due_on).where(
    Milestone.task_id.in_(bindparam("task_ids", expanding=True)), Milestone.active.is_(True)
)
_LATEST_VALUES = (
    select(TargetValue.target_id, TargetValue.unit_id, TargetValue.value, TargetValue.reported_at)
    .where(
        TargetValue.target_id.in_(bindparam("target_ids", expanding=True)),
        TargetValue.reported_at <= bindparam("until"),
    )
    .order_by(TargetValue.reported_at, TargetValue.id)
)


def _latest_values(
    session: Session, target_ids: list[int], until: datetime
) -> dict[tuple[int, int], tuple[float, datetime]]:
    """(target, unit) → the latest value reported up to ``until``."""
    latest: dict[tuple[int, int], tuple[float, datetime]] = {}
    if not target_ids:
        return latest
    rows = session.execute(_LATEST_VALUES, {"target_ids": target_ids, "until": until})
    for target_id, unit_id, value, at in rows:
        latest[(target_id, unit_id)] = (value, at)
    return latest


def _previous_cutoff(session: Session, checkpoint: Checkpoint) -> datetime | None:
    return session.scalar(
        select(Checkpoint.due_at)
        .where(
            Checkpoint.plan_id == checkpoint.plan_id,
            Checkpoint.cancelled_at.is_(None),
            Checkpoint.due_at < checkpoint.due_at,
            Checkpoint.source != "milestone",
        )
        .order_by(Checkpoint.due_at.desc())
        .limit(1)
    )


def round_progress(
    session: Session,
    checkpoint: Checkpoint,
    task_ids: Iterable[int],
    *,
    year: int,
    thresholds: PaceThresholds,
    tz: ZoneInfo,
    cutoff: datetime | None = None,
) -> list[TargetProgress]:
    """Every active target of the given tasks at the round's cut-off (its deadline unless given)."""
    until = cutoff or checkpoint.due_at
    today: date = until.astimezone(tz).date()
    # Plain rows, not ORM objects: the 通报 of every county reads this once per county.
    tasks = {row.id: row for row in session.execute(_LIVE_TASKS, {"task_ids": list(task_ids)})}
    targets = list(session.execute(_TASK_TARGETS, {"task_ids": list(tasks)}))
    if not targets:
        return []
    leads: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for task_id, unit_id, name in session.execute(_LEAD_UNITS, {"task_ids": list(tasks)}):
        leads[task_id].append((unit_id, name))
    milestones: dict[int, list[date]] = defaultdict(list)
    for task_id, due_on in session.execute(_MILESTONE_DATES, {"task_ids": list(tasks)}):
        milestones[task_id].append(due_on)
    target_ids = [t.id for t in targets]
    latest = _latest_values(session, target_ids, until)
    previous_cutoff = _previous_cutoff(session, checkpoint)
    earlier = _latest_values(session, target_ids, previous_cutoff) if previous_cutoff else {}
    result = []
    for target in targets:
        task = tasks[target.task_id]
        lead_unit_id, lead_name = leads[task.id][0] if leads[task.id] else (None, "")
        found = latest.get((target.id, lead_unit_id)) if lead_unit_id is not None else None
        before = earlier.get((target.id, lead_unit_id)) if lead_unit_id is not None else None
        kind = TargetKind(target.kind)
        if found is None:
            expected = expected_share(kind, today, year=year, milestones=milestones.get(task.id))
            done, pace_class = None, None
        else:
            pace = pace_of(
                kind,
                target.value,
                found[0],
                today,
                year=year,
                thresholds=thresholds,
                milestones=milestones.get(task.id),
            )
            expected, done, pace_class = pace.expected, pace.done, pace.pace
        result.append(
            TargetProgress(
                task_id=task.id,
                task=task_label(task.annex, task.number),
                target_id=target.id,
                metric=target.metric,
                target=target.value,
                unit_of_measure=target.unit,
                kind=target.kind,
                lead=lead_name,
                lead_unit_id=lead_unit_id,
                reported=found[0] if found else None,
                reported_at=found[1] if found else None,
                previous=before[0] if before else None,
                done=done,
                expected=expected,
                pace=pace_class,
            )
        )
    return result


def below_half(progress: list[TargetProgress]) -> list[TargetProgress]:
    """The 时间过半、任务过半 list: every target (of amounts and growth rates) less than half done."""
    return [p for p in progress if p.kind in (TargetKind.AMOUNT.value, TargetKind.GROWTH.value) and p.below_half]


def pace_lights(progress: list[TargetProgress]) -> tuple[dict[int, Light], dict[str, Light]]:
    """进度 lights: per task id, and per lead unit name (the worst of its tasks)."""
    by_task: dict[int, Light] = {}
    by_unit: dict[str, Light] = {}
    for item in progress:
        light = item.light
        if _LIGHT_RANK[light] > _LIGHT_RANK[by_task.get(item.task_id, "none")]:
            by_task[item.task_id] = light
    for item in progress:
        if not item.lead:
            continue
        light = by_task.get(item.task_id, "none")
        if _LIGHT_RANK[light] > _LIGHT_RANK[by_unit.get(item.lead, "none")]:
            by_unit[item.lead] = light
    return by_task, by_unit


@dataclass(frozen=True)
class TrendPoint:
    """A target's figure at one round's cut-off, for the quarter-by-quarter trend."""

    round_title: str
    due_at: datetime
    reported: float | None
    done: float | None
    expected: float


def target_trend(
    session: Session,
    plan_id: int,
    task_ids: list[int],
    *,
    year: int,
    thresholds: PaceThresholds,
    tz: ZoneInfo,
    now: datetime,
) -> dict[int, list[TrendPoint]]:
    """Target id → its figure at each progress round's cut-off so far (rounds not yet due: as of now)."""
    rounds = session.scalars(
        select(Checkpoint)
        .where(
            Checkpoint.plan_id == plan_id,
            Checkpoint.cancelled_at.is_(None),
            Checkpoint.satisfied_by == "status",
            Checkpoint.source != "milestone",
        )
        .order_by(Checkpoint.due_at, Checkpoint.id)
    )
    trend: dict[int, list[TrendPoint]] = defaultdict(list)
    for checkpoint in rounds:
        cutoff = min(checkpoint.due_at, now)
        for item in round_progress(
            session, checkpoint, task_ids, year=year, thresholds=thresholds, tz=tz, cutoff=cutoff
        ):
            trend[item.target_id].append(
                TrendPoint(checkpoint.title, checkpoint.due_at, item.reported, item.done, item.expected)
            )
        if checkpoint.due_at > now:
            break  # the round under way is shown as of now; later ones have nothing yet
    return dict(trend)
