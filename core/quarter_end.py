"""After each round's deadline, the office gets its notification (通报) as a file, once.

The scheduler's reminder tick calls :func:`send_notifications`; a round whose
deadline plus ``[report] send_after`` has passed (moved to the next working
morning) gets its XLSX written and queued to every office-role person and the
office group chats.  ``rung_run`` records it, so it goes out once whatever the
restarts; after long downtime only rounds within the catch-up window are sent.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.checkpoints import live_checkpoints
from core.config import PersonRole, Settings
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


def send_notifications(
    session: Session, settings: Settings, messages: Messages, calendar: WorkCalendar, plan: Plan, now: datetime
) -> list[int]:
    """Queue the notification of every round that has just closed; returns the outbox ids."""
    if not settings.report.send_automatically:
        return []
    from core.documents import export, keep_stamp

    done = set(session.scalars(select(RungRun.checkpoint_id).where(RungRun.rung_key == RUNG)))
    queued: list[int] = []
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
        run = RungRun(
            checkpoint_id=checkpoint.id, rung_key=RUNG, role=PersonRole.OFFICE.value, fires_at=when, processed_at=now
        )
        if now - when > settings.escalation.catch_up_within:
            run.outcome = "skipped"
            session.add(run)
            continue
        folder: Path = settings.path(settings.service.data_dir) / "exports"
        folder.mkdir(parents=True, exist_ok=True)
        path = export(session, settings, messages, plan, checkpoint.key, "xlsx", now, folder)
        keep_stamp(session, settings, plan, checkpoint.key, path)  # /export serves it while nothing changes
        text = messages.render(
            "notification_ready",
            checkpoint=checkpoint.title,
            key=checkpoint.key,
            due=checkpoint.due_at,
            file_name=path.name,
        )
        targets = [
            (identity.platform, identity.chat_id, identity.person_id)
            for _, identity in identities_with_role(session, plan.jurisdiction_id, PersonRole.OFFICE.value)
            if identity.reachable
        ]
        targets += [(*chat.partition(":")[::2], None) for chat in settings.digest.chats]  # type: ignore[misc]
        for platform, chat_id, person_id in dict.fromkeys(targets):
            outbox_id = enqueue(
                session,
                platform=platform,
                chat_id=chat_id,
                kind="notification",
                dedup_key=f"notification:{checkpoint.id}:{platform}:{chat_id}",
                message=Message(text=text, document={"path": str(path), "file_name": path.name}),
                now=now,
                person_id=person_id,
            )
            if outbox_id is not None:
                queued.append(outbox_id)
        run.outcome = "sent"
        run.messages = len(queued)
        session.add(run)
        log.info("notification queued", extra={"checkpoint": checkpoint.key, "messages": len(queued)})
    return queued
