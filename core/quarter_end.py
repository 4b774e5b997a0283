"""After each round's deadline, the office gets its notification (通报) as a file, once.

The scheduler's reminder tick (``jobs.ticks``) calls :func:`due_notifications`;
a round whose deadline plus ``[report] send_after`` has passed (moved to the
next working morning) gets its notification built, its XLSX written (outside
any transaction, by a :class:`~core.documents.FileWriter`), then, in a short
transaction, :func:`queue_notification` queues it to every office-role person
and the office group chats and ``rung_run`` records it, so it goes out once
whatever the restarts (a crash before that leaves only a file, written again at
the next tick); after long downtime only rounds within the catch-up window are sent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.checkpoints import live_checkpoints
from core.config import PersonRole, Settings
from core.notification import Notification
from core.outbox import Message, enqueue
from core.workdays import CalendarNotCovered, WorkCalendar
from messages import Messages
from storage.models import Checkpoint, Plan, RungRun
from storage.queries import identities_with_role

log = logging.getLogger("duban.quarter_end")
RUNG = "notification"


def plans_with_closed_rounds(session: Session, plan_ids: list[int], now: datetime) -> list[int]:
    """Of ``plan_ids``, those with a live round past its deadline whose 通报 is not recorded yet.

    One query for the whole service, so the minute tick opens a transaction
    only for the counties that may have a notification to send.
    """
    if not plan_ids:
        return []
    recorded = select(RungRun.id).where(RungRun.checkpoint_id == Checkpoint.id, RungRun.rung_key == RUNG).exists()
    rows = session.scalars(
        select(Checkpoint.plan_id)
        .where(
            Checkpoint.plan_id.in_(plan_ids),
            Checkpoint.cancelled_at.is_(None),
            Checkpoint.due_at <= now,
            Checkpoint.source != "milestone",  # a milestone is one unit's step, not a round to notify
            ~recorded,
        )
        .distinct()
    )
    wanted = set(rows)
    return [plan_id for plan_id in plan_ids if plan_id in wanted]


@dataclass
class DueNotification:
    """A round's 通报 built and due to go out: written to ``path``, then queued by :func:`queue_notification`."""

    plan_id: int
    checkpoint_id: int
    checkpoint_key: str
    checkpoint_title: str
    due_at: datetime
    fires_at: datetime
    view: Notification
    stamp: str | None  # what the view was built from (round_stamp), kept beside the file
    path: Path
    targets: list[tuple[str, str, int | None]]  # (platform, chat id, person id) of the office, as of the view


def due_notifications(
    session: Session, settings: Settings, calendar: WorkCalendar, plan: Plan, now: datetime
) -> list[DueNotification]:
    """The rounds of ``plan`` just closed whose 通报 is due, each built; a round past the catch-up window is
    recorded as skipped.

    Nothing is queued here: the caller writes each file (outside the
    transaction, in a process of its own when it can) and then queues it with
    :func:`queue_notification` in a short transaction of its own.
    """
    if not settings.report.send_automatically:
        return []
    from core.documents import build_view, default_name
    from core.notification import round_stamp

    done = set(session.scalars(select(RungRun.checkpoint_id).where(RungRun.rung_key == RUNG)))
    due: list[DueNotification] = []
    targets: list[tuple[str, str, int | None]] = [
        (identity.platform, identity.chat_id, identity.person_id)
        for _, identity in identities_with_role(session, plan.jurisdiction_id, PersonRole.OFFICE.value)
        if identity.reachable
    ]
    for chat in settings.digest.chats:  # "platform:chat_id"
        platform, _, chat_id = chat.partition(":")
        targets.append((platform, chat_id, None))
    for checkpoint in live_checkpoints(session, plan.id):
        if checkpoint.id in done or checkpoint.due_at > now or checkpoint.source == "milestone":
            continue
        try:
            # The morning of the day ``send_after`` past the deadline, or the next working morning.
            day = (checkpoint.due_at.astimezone(settings.tz) + settings.report.send_after).date()
            when = calendar.next_send_time(max(calendar.at_send_time(day), checkpoint.due_at))
        except CalendarNotCovered as exc:
            log.error("no notification: %s", exc, extra={"checkpoint": checkpoint.key})
            continue
        if when > now:
            continue
        if now - when > settings.escalation.catch_up_within:
            session.add(
                RungRun(
                    checkpoint_id=checkpoint.id,
                    rung_key=RUNG,
                    role=PersonRole.OFFICE.value,
                    fires_at=when,
                    processed_at=now,
                    outcome="skipped",
                )
            )
            continue
        view = build_view(session, settings, plan, checkpoint.key, now)
        assert isinstance(view, Notification)
        folder: Path = settings.path(settings.service.data_dir) / "exports"
        due.append(
            DueNotification(
                plan_id=plan.id,
                checkpoint_id=checkpoint.id,
                checkpoint_key=checkpoint.key,
                checkpoint_title=checkpoint.title,
                due_at=checkpoint.due_at,
                fires_at=when,
                view=view,
                # Read with the view, so the file is served again only while it shows the round as it stands.
                stamp=round_stamp(session, settings, plan, checkpoint.key),
                path=folder / default_name(plan, checkpoint.key, "xlsx"),
                targets=list(dict.fromkeys(targets)),
            )
        )
    return due


def queue_notification(
    session: Session, settings: Settings, messages: Messages, due: DueNotification, now: datetime
) -> list[int]:
    """Queue the written file of ``due`` to the office-role people and office chats it was built for, and record
    the round as sent; the outbox ids.  Nothing when the round was recorded meanwhile: each 通报 goes out once."""
    from core.documents import keep_stamp

    recorded = select(RungRun.id).where(RungRun.checkpoint_id == due.checkpoint_id, RungRun.rung_key == RUNG)
    if session.scalars(recorded).first() is not None:
        return []
    path = due.path
    keep_stamp(path, due.stamp)  # /export serves it while nothing changes
    text = messages.render(
        "notification_ready",
        checkpoint=due.checkpoint_title,
        key=due.checkpoint_key,
        due=due.due_at,
        file_name=path.name,
    )
    queued: list[int] = []
    for platform, chat_id, person_id in due.targets:
        outbox_id = enqueue(
            session,
            platform=platform,
            chat_id=chat_id,
            kind="notification",
            dedup_key=f"notification:{due.checkpoint_id}:{platform}:{chat_id}",
            message=Message(text=text, document={"path": str(path), "file_name": path.name}),
            now=now,
            person_id=person_id,
        )
        if outbox_id is not None:
            queued.append(outbox_id)
    session.add(
        RungRun(
            checkpoint_id=due.checkpoint_id,
            rung_key=RUNG,
            role=PersonRole.OFFICE.value,
            fires_at=due.fires_at,
            processed_at=now,
            outcome="sent",
            messages=len(queued),
        )
    )
    log.info("notification queued", extra={"checkpoint": due.checkpoint_key, "messages": len(queued)})
    return queued
