"""The reminder and escalation tick: who gets what, now, for each checkpoint's ladder.

:meth:`Escalation.tick` is a pure function of the database and ``now``: for
every live checkpoint it finds the rungs whose time has come and that have not
been dealt with for their role, and queues their messages in the outbox.  Each
(rung, role) is recorded in ``rung_run``, so a tick run twice, or by two
processes, sends nothing twice.

After downtime several rungs may be due at once; per role only the latest is
sent (marked as a late catch-up) and the older ones are recorded as skipped.
Rungs older than ``catch_up_within`` are skipped without sending.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload, lazyload
from sqlalchemy.orm.attributes import set_committed_value

from core.config import PersonRole, Settings
from core.ladder import RungTime, ladder_from_json, rung_schedule
from core.notices import days_late, queue_unit_notice
from core.outbox import About, Message, enqueue_to_identities
from core.tasks import task_label
from core.workdays import CalendarNotCovered, WorkCalendar
from messages import Messages
from storage.models import Binding, Checkpoint, Identity, Obligation, RungRun, Task, Unit
from storage.queries import OPEN_STATES, identities_of_unit, identities_with_role

log = logging.getLogger("duban.escalation")


@dataclass
class Notice:
    """One message a rung produces (or would produce, in a simulation)."""

    at: datetime
    checkpoint: str
    checkpoint_title: str
    rung: str
    role: str
    units: list[str]
    tasks: list[str]
    recipients: int
    late: bool
    outbox_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "checkpoint": self.checkpoint,
            "rung": self.rung,
            "role": self.role,
            "units": self.units,
            "tasks": self.tasks,
            "recipients": self.recipients,
            "late": self.late,
        }


@dataclass
class TickReport:
    """What one tick did."""

    now: datetime
    notices: list[Notice] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (checkpoint, rung, role)
    notifications: list[int] = field(default_factory=list)  # outbox ids of 通报 files sent after a deadline

    @property
    def queued(self) -> int:
        return sum(len(n.outbox_ids) for n in self.notices)


def make_calendar(settings: Settings) -> WorkCalendar:
    calendar = settings.calendar
    return WorkCalendar(
        settings.tz,
        send_time=calendar.send_time,
        quiet_start=calendar.quiet_start,
        quiet_end=calendar.quiet_end,
        holidays=calendar.holidays,
        workdays=calendar.workdays,
    )


@dataclass
class OpenRound:
    """A round's open obligations by unit, and the people bound to those units per roles (each read once)."""

    by_unit: dict[int, list[Obligation]]
    bound: dict[tuple[str, ...], list[tuple[Binding, Identity]]] = field(default_factory=dict)

    def identities(self, session: Session, roles: tuple[str, ...]) -> list[tuple[Binding, Identity]]:
        """Every identity bound to the round's units in ``roles`` (:func:`identities_of_unit`)."""
        if roles not in self.bound:
            self.bound[roles] = identities_of_unit(session, self.by_unit, roles)
        return self.bound[roles]


class Escalation:
    """Computes and queues the reminders and escalations that are due."""

    def __init__(self, settings: Settings, messages: Messages, calendar: WorkCalendar) -> None:
        self.settings = settings
        self.m = messages
        self.calendar = calendar
        self._schedules: dict[tuple[int, datetime, str], list[RungTime]] = {}
        self._labels: dict[tuple[str, int], str] = {}
        #: Open obligations per checkpoint kept from one tick to the next, when set to a dict
        #: (``duban simulate``: the copy changes only where the simulation applies an answer,
        #: and it clears this then).  None in the service: every tick reads what is owed.
        self.open_cache: dict[int, OpenRound] | None = None

    def label(self, task: Task) -> str:
        """The task's short label (县22), one string per task however many notices list it."""
        key = (task.annex, task.number)
        label = self._labels.get(key)
        if label is None:
            label = self._labels[key] = task_label(task.annex, task.number, self.m.language)
        return label

    def schedule(self, checkpoint: Checkpoint) -> list[RungTime]:
        """The checkpoint's rungs in time (cached: the calendar does not change while running)."""
        key = (checkpoint.id, checkpoint.due_at, repr(checkpoint.ladder))
        if key not in self._schedules:
            ladder = ladder_from_json(checkpoint.ladder, self.settings.escalation)
            self._schedules[key] = rung_schedule(checkpoint.due_at, ladder, self.calendar)
        return self._schedules[key]

    def matters_until(self, checkpoint: Checkpoint, now: datetime) -> datetime | None:
        """Until when a rung's message sent ``now`` matters: when the round's next rung fires.

        By then the ladder has moved on (the next reminder, or the escalation to the
        head or the leaders), so an older message delivered after it would be out of
        date.  None after the last rung: the outbox's default (a day) applies.
        """
        return next((rung.fires_at for rung in self.schedule(checkpoint) if rung.fires_at > now), None)

    def next_fire_after(self, session: Session, moment: datetime) -> datetime | None:
        """The earliest rung time after ``moment`` over all live checkpoints (for simulations)."""
        times = []
        for checkpoint in session.scalars(select(Checkpoint).where(Checkpoint.cancelled_at.is_(None))):
            try:
                times += [rung.fires_at for rung in self.schedule(checkpoint) if rung.fires_at > moment]
            except CalendarNotCovered:
                continue  # reported by the tick
        return min(times, default=None)

    def tick(self, session: Session, now: datetime, *, deliver: bool = True) -> TickReport:
        """Queue every rung due by ``now`` that has not been dealt with; record each in rung_run.

        With ``deliver`` false nothing is queued (``duban simulate`` counts recipients only).
        """
        report = TickReport(now=now)
        checkpoints = list(
            session.scalars(select(Checkpoint).where(Checkpoint.cancelled_at.is_(None)).order_by(Checkpoint.due_at))
        )
        due: list[tuple[Checkpoint, list[RungTime]]] = []
        for checkpoint in checkpoints:
            try:
                schedule = self.schedule(checkpoint)
            except CalendarNotCovered as exc:
                # One round in an uncovered year must not stop every other round's reminders.
                log.error("no reminders for this round: %s", exc, extra={"checkpoint": checkpoint.key})
                continue
            fired = [rung for rung in schedule if rung.fires_at <= now]
            if fired:
                due.append((checkpoint, fired))
        if not due:
            return report
        done = {
            (checkpoint_id, rung_key, role)
            for checkpoint_id, rung_key, role in session.execute(
                select(RungRun.checkpoint_id, RungRun.rung_key, RungRun.role).where(
                    RungRun.checkpoint_id.in_([c.id for c, _ in due])
                )
            )
        }
        grace = 2 * self.settings.escalation.resolution
        horizon = now - self.settings.escalation.catch_up_within
        # A checkpoint's open obligations, read once per tick: a rung may fire for several
        # roles, and nothing in the tick changes what is owed.
        opened: dict[int, OpenRound] = self.open_cache if self.open_cache is not None else {}
        for checkpoint, fired in due:
            for role in PersonRole:
                pending = [r for r in fired if role in r.roles and (checkpoint.id, r.key, role.value) not in done]
                if not pending:
                    continue
                latest = pending[-1]
                runs = [self._run(checkpoint, r, role, now, "skipped") for r in pending[:-1]]
                if latest.fires_at < horizon:
                    runs.append(self._run(checkpoint, latest, role, now, "skipped"))
                    report.skipped += [(checkpoint.key, r.key, role.value) for r in pending]
                    self._record(session, runs)
                    continue
                report.skipped += [(checkpoint.key, r.key, role.value) for r in pending[:-1]]
                late = now - latest.fires_at > grace
                notices = self._fire(session, checkpoint, latest, role, now, late=late, deliver=deliver, opened=opened)
                run = self._run(checkpoint, latest, role, now, "sent")
                run.late = late
                run.messages = sum(len(n.outbox_ids) for n in notices)
                runs.append(run)
                if self._record(session, runs):
                    report.notices += notices
        return report

    @staticmethod
    def _run(checkpoint: Checkpoint, rung: RungTime, role: PersonRole, now: datetime, outcome: str) -> RungRun:
        return RungRun(
            checkpoint_id=checkpoint.id,
            rung_key=rung.key,
            role=role.value,
            fires_at=rung.fires_at,
            processed_at=now,
            outcome=outcome,
        )

    @staticmethod
    def _record(session: Session, runs: list[RungRun]) -> bool:
        """Record rung runs; False when another process recorded them first (its messages stand)."""
        savepoint = session.begin_nested()
        try:
            session.add_all(runs)
            session.flush()
        except IntegrityError:
            savepoint.rollback()
            return False
        savepoint.commit()
        return True

    # --- what a rung sends --------------------------------------------------------------

    def _open_by_unit(self, session: Session, checkpoint: Checkpoint) -> dict[int, list[Obligation]]:
        # The round's tasks and units first (a hundred or so), then the obligations without
        # joined rows: each obligation's task and unit then resolve from the identity map,
        # instead of a task and a unit built from every row (most of a tick's time).
        in_round = select(Obligation.unit_id).where(Obligation.checkpoint_id == checkpoint.id)
        tasks = {t.id: t for t in session.scalars(select(Task).where(Task.plan_id == checkpoint.plan_id))}
        units = {u.id: u for u in session.scalars(select(Unit).where(Unit.id.in_(in_round.distinct())))}
        rows = session.scalars(
            select(Obligation)
            .join(Task, Task.id == Obligation.task_id)
            .options(lazyload(Obligation.task), lazyload(Obligation.unit))
            .where(
                Obligation.checkpoint_id == checkpoint.id,
                Obligation.active.is_(True),
                Obligation.state.in_(OPEN_STATES),
                Task.active.is_(True),
            )
            .order_by(Obligation.unit_id, Task.annex.desc(), Task.number)
        )
        by_unit: dict[int, list[Obligation]] = defaultdict(list)
        for obligation in rows:
            # Set from the maps above: committed as loaded, so nothing is marked changed.
            # obligation.checkpoint resolves from the identity map: no query, and no write
            # (assigning it would make every obligation dirty and slow the flush down).
            set_committed_value(obligation, "task", tasks[obligation.task_id])
            set_committed_value(obligation, "unit", units[obligation.unit_id])
            by_unit[obligation.unit_id].append(obligation)
        return by_unit

    def _fire(
        self,
        session: Session,
        checkpoint: Checkpoint,
        rung: RungTime,
        role: PersonRole,
        now: datetime,
        *,
        late: bool,
        deliver: bool,
        opened: dict[int, OpenRound] | None = None,
    ) -> list[Notice]:
        open_round = opened.get(checkpoint.id) if opened is not None else None
        if open_round is None:
            open_round = OpenRound(self._open_by_unit(session, checkpoint))
            if opened is not None:
                opened[checkpoint.id] = open_round
        if not open_round.by_unit:
            return []
        context = {
            "checkpoint": checkpoint.title,
            "due": checkpoint.due_at,
            "late": late,
            "nominal": rung.fires_at,
            "after_due": now > checkpoint.due_at,
            "late_days": days_late(checkpoint.due_at, now),
            "satisfied_by": checkpoint.satisfied_by,
            "role": role.value,
            "now": now,
        }
        until = self.matters_until(checkpoint, now)
        if role in (PersonRole.LIAISON, PersonRole.HEAD):
            return self._fire_units(session, checkpoint, rung, role, now, open_round, context, deliver, until)
        if role is PersonRole.OFFICE:
            return self._fire_office(session, checkpoint, rung, now, open_round, context, deliver, until)
        return self._fire_leaders(session, checkpoint, rung, now, open_round, context, deliver, until)

    def _fire_units(
        self,
        session: Session,
        checkpoint: Checkpoint,
        rung: RungTime,
        role: PersonRole,
        now: datetime,
        open_round: OpenRound,
        context: dict[str, Any],
        deliver: bool,
        until: datetime | None,
    ) -> list[Notice]:
        by_unit = open_round.by_unit
        # One query for every unit's people, handed to queue_unit_notice (not re-read per unit).
        recipients: dict[int, list[Identity]] = defaultdict(list)
        for binding, identity in open_round.identities(session, (role.value,)):
            recipients[binding.unit_id].append(identity)
        notices = []
        for unit_id, owed in by_unit.items():
            unit = owed[0].unit
            ids: list[int] = []
            if deliver and recipients.get(unit_id):
                ids = queue_unit_notice(
                    session,
                    self.m,
                    unit,
                    owed,
                    template="reminder",
                    kind="reminder" if role is PersonRole.LIAISON else "escalation",
                    dedup=f"rung:{checkpoint.id}:{rung.key}:{role.value}:{unit_id}",
                    now=now,
                    roles=(role.value,),
                    identities=recipients[unit_id],
                    extra=context,
                    about=About(
                        checkpoint_id=checkpoint.id,
                        unit_id=unit_id,
                        task_ids=tuple(o.task_id for o in owed),
                        rung=rung.key,
                        late=bool(context["late"]),
                        until=until,
                    ),
                )
            notices.append(
                self._notice(checkpoint, rung, role, [unit], owed, len(recipients.get(unit_id, [])), context, ids)
            )
        return notices

    def _unit_summaries(self, by_unit: dict[int, list[Obligation]], reachable: set[int]) -> list[dict[str, Any]]:
        rows = []
        for unit_id, owed in sorted(by_unit.items(), key=lambda item: (-len(item[1]), item[1][0].unit.name)):
            rows.append(
                {
                    "name": owed[0].unit.name,
                    "count": len(owed),
                    "labels": [self.label(o.task) for o in owed],
                    "reachable": unit_id in reachable,
                }
            )
        return rows

    def _fire_office(
        self,
        session: Session,
        checkpoint: Checkpoint,
        rung: RungTime,
        now: datetime,
        open_round: OpenRound,
        context: dict[str, Any],
        deliver: bool,
        until: datetime | None,
    ) -> list[Notice]:
        by_unit = open_round.by_unit
        jurisdiction_id = next(iter(by_unit.values()))[0].unit.jurisdiction_id
        office = [identity for _, identity in identities_with_role(session, jurisdiction_id, "office")]
        reachable = {b.unit_id for b, _ in open_round.identities(session, ("liaison", "head"))}
        units = self._unit_summaries(by_unit, reachable)
        ids: list[int] = []
        if deliver and office:
            text = self.m.render("escalation_office", units=units, total=sum(u["count"] for u in units), **context)
            ids = enqueue_to_identities(
                session,
                _distinct(office),
                kind="escalation",
                dedup_key=f"rung:{checkpoint.id}:{rung.key}:office",
                message=Message(text=text),
                now=now,
                about=About(checkpoint_id=checkpoint.id, rung=rung.key, late=bool(context["late"]), until=until),
            )
        all_owed = [o for owed in by_unit.values() for o in owed]
        unit_rows = [owed[0].unit for owed in by_unit.values()]
        return [self._notice(checkpoint, rung, PersonRole.OFFICE, unit_rows, all_owed, len(office), context, ids)]

    def _fire_leaders(
        self,
        session: Session,
        checkpoint: Checkpoint,
        rung: RungTime,
        now: datetime,
        open_round: OpenRound,
        context: dict[str, Any],
        deliver: bool,
        until: datetime | None,
    ) -> list[Notice]:
        by_unit = open_round.by_unit
        leaders: dict[int, list[tuple[Binding, Identity]]] = defaultdict(list)
        for binding, identity in open_round.identities(session, ("leader",)):
            leaders[binding.person_id].append((binding, identity))
        notices = []
        for person_id, pairs in leaders.items():
            unit_ids = sorted({b.unit_id for b, _ in pairs})
            mine = {u: by_unit[u] for u in unit_ids}
            identities = _distinct([i for _, i in pairs])
            ids: list[int] = []
            if deliver:
                units = self._unit_summaries(mine, set(unit_ids))
                text = self.m.render("escalation_leader", units=units, **context)
                ids = enqueue_to_identities(
                    session,
                    identities,
                    kind="escalation",
                    dedup_key=f"rung:{checkpoint.id}:{rung.key}:leader:{person_id}",
                    message=Message(text=text),
                    now=now,
                    about=About(checkpoint_id=checkpoint.id, rung=rung.key, late=bool(context["late"]), until=until),
                )
            owed = [o for u in unit_ids for o in mine[u]]
            notices.append(
                self._notice(
                    checkpoint,
                    rung,
                    PersonRole.LEADER,
                    [o[0].unit for o in mine.values()],
                    owed,
                    len(identities),
                    context,
                    ids,
                )
            )
        if not leaders:
            owed = [o for owed in by_unit.values() for o in owed]
            notices.append(
                self._notice(
                    checkpoint, rung, PersonRole.LEADER, [o[0].unit for o in by_unit.values()], owed, 0, context, []
                )
            )
        return notices

    def _notice(
        self,
        checkpoint: Checkpoint,
        rung: RungTime,
        role: PersonRole,
        units: list[Unit],
        owed: list[Obligation],
        recipients: int,
        context: dict[str, Any],
        ids: list[int],
    ) -> Notice:
        return Notice(
            at=context["now"],
            checkpoint=checkpoint.key,
            checkpoint_title=checkpoint.title,
            rung=rung.key,
            role=role.value,
            units=[u.name for u in units],
            tasks=[self.label(o.task) for o in owed],
            recipients=recipients,
            late=bool(context["late"]),
            outbox_ids=ids,
        )


def catch_up_on_binding(
    session: Session, messages: Messages, binding: Binding, identity: Identity, now: datetime
) -> list[int]:
    """What the unit owes now, for a person who binds after a rung for their role has fired: one reminder.

    The current round is the one whose rung for the role fired last among those
    the unit still owes; the message is the rung's reminder, as the others got it.
    """
    runs = session.execute(
        select(RungRun, Checkpoint)
        .join(Checkpoint, Checkpoint.id == RungRun.checkpoint_id)
        .where(RungRun.role == binding.role, RungRun.outcome == "sent", Checkpoint.cancelled_at.is_(None))
        .order_by(RungRun.fires_at.desc(), RungRun.id.desc())
    ).all()
    seen: set[int] = set()
    for run, checkpoint in runs:
        if checkpoint.id in seen:
            continue
        seen.add(checkpoint.id)
        owed = list(
            session.scalars(
                select(Obligation)
                .join(Task, Task.id == Obligation.task_id)
                .options(joinedload(Obligation.task))
                .where(
                    Obligation.checkpoint_id == checkpoint.id,
                    Obligation.unit_id == binding.unit_id,
                    Obligation.active.is_(True),
                    Obligation.state.in_(OPEN_STATES),
                    Task.active.is_(True),
                )
                .order_by(Task.annex.desc(), Task.number)
            )
        )
        if not owed:
            continue
        context = {
            "checkpoint": checkpoint.title,
            "due": checkpoint.due_at,
            "late": False,
            "nominal": run.fires_at,
            "after_due": now > checkpoint.due_at,
            "late_days": days_late(checkpoint.due_at, now),
            "satisfied_by": checkpoint.satisfied_by,
            "role": binding.role,
            "now": now,
        }
        return queue_unit_notice(
            session,
            messages,
            binding.unit,
            owed,
            template="reminder",
            kind="reminder",
            dedup=f"bound:{binding.id}:{checkpoint.id}",
            now=now,
            roles=(binding.role,),
            identities=[identity],
            extra=context,
            about=About(
                checkpoint_id=checkpoint.id,
                unit_id=binding.unit_id,
                task_ids=tuple(o.task_id for o in owed),
                rung=run.rung_key,
            ),
        )
    return []


def _distinct(identities: list[Identity]) -> list[Identity]:
    seen: dict[int, Identity] = {}
    for identity in identities:
        seen.setdefault(identity.id, identity)
    return list(seen.values())
