"""The scheduled jobs as plain functions of "now": what the scheduler calls, and what tests call.

Each takes the time as an argument (the scheduler passes its clock's reading),
does its work in transactions of its own, and returns what it did.  None of them keeps
state between calls: the database is the record of what was sent.
"""

from __future__ import annotations

import logging
import shutil
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, or_, select

from core.digest import Digest
from core.documents import FileFormat, FileWriter, write_pipelined
from core.drafts import DraftSweep, sweep_drafts
from core.escalation import Escalation, TickReport
from core.outbox import SCRUBBED_TEXT
from core.plan_staging import ImportStaging, import_staging_folder
from core.quarter_end import DueNotification, due_notifications, plans_with_closed_rounds, queue_notification
from core.runtime import Runtime
from storage.models import InboundUpdate, LoginCode, OutboxMessage, Plan, SignInLimit, WebSession
from storage.queries import newest_plans

log = logging.getLogger("duban.ticks")


def remind(runtime: Runtime, escalation: Escalation, now: datetime, files: FileWriter | None = None) -> TickReport:
    """Queue every reminder and escalation due by ``now``, and the 通报 of rounds just closed (idempotent).

    ``files`` writes the 通报 (the service's, with its processes); None: written here.
    """
    report, plan_ids = tick(runtime, escalation, now)
    report.notifications += notify_counties(runtime, escalation, plan_ids, now, files)
    return report


def tick(runtime: Runtime, escalation: Escalation, now: datetime) -> tuple[TickReport, list[int]]:
    """The reminders and escalations due by ``now``; and the counties with a closed round to notify."""
    with runtime.transaction() as session:
        report = escalation.tick(session, now)
        plan_ids = plans_with_closed_rounds(session, [plan.id for plan in newest_plans(session)], now)
    return report, plan_ids


def notify_counties(
    runtime: Runtime, escalation: Escalation, plan_ids: list[int], now: datetime, files: FileWriter | None = None
) -> list[int]:
    """The 通报 of the rounds just closed in each of ``plan_ids``; the outbox ids.

    Per county: its notifications are built in a transaction of its own
    (:func:`prepare_county`), the files written outside any transaction -- by
    ``files``' processes while the next counties are built, when it has them --
    and each queued in a short transaction (:func:`queue_written`).  So no
    transaction holds SQLite's write lock (and every chat reply) while a file
    is written, and a county that fails holds up no other.
    """
    # One county's file is written here: starting processes for it costs more than it saves.
    writer = files if files is not None and len(plan_ids) > 1 else FileWriter(escalation.m)
    jobs = (
        (due, due.view, [_xlsx(due.path)])
        for plan_id in plan_ids
        for due in prepare_county(runtime, escalation, plan_id, now)
    )
    queued: list[int] = []
    for due, written in write_pipelined(jobs, writer):
        queued += queue_written(runtime, escalation, due, written, now)
    return queued


def _xlsx(path: Path) -> tuple[FileFormat, Path]:
    return ("xlsx", path)


def notify_county(
    runtime: Runtime, escalation: Escalation, plan_id: int, now: datetime, files: FileWriter | None = None
) -> list[int]:
    """One county's 通报 of the rounds just closed (:func:`notify_counties`); the outbox ids."""
    return notify_counties(runtime, escalation, [plan_id], now, files)


def prepare_county(runtime: Runtime, escalation: Escalation, plan_id: int, now: datetime) -> list[DueNotification]:
    """The county's notifications due by ``now``, built in a transaction of its own (none on an error, logged)."""
    try:
        with runtime.transaction() as session:
            plan = session.get(Plan, plan_id)
            if plan is None:
                return []
            return due_notifications(session, escalation.settings, escalation.calendar, plan, now)
    except Exception:
        log.exception("通报 not sent; retried at the next tick", extra={"plan": plan_id})
        return []


def queue_written(
    runtime: Runtime, escalation: Escalation, due: DueNotification, written: Future[list[Path]], now: datetime
) -> list[int]:
    """Queue ``due`` once its file is written, in a transaction of its own; the outbox ids.

    A file that could not be written (a full disk …) is logged and nothing
    recorded: the next tick tries again.
    """
    try:
        written.result()
        with runtime.transaction() as session:
            return queue_notification(session, escalation.settings, escalation.m, due, now)
    except Exception:
        log.exception("通报 not sent; retried at the next tick", extra={"plan": due.plan_id})
        return []


def drop_stale_drafts(runtime: Runtime, staging_dir: Path, now: datetime) -> DraftSweep:
    """Unfinished /report drafts untouched for ``[limits] draft_ttl``, and their staged files."""
    with runtime.transaction() as session:
        sweep = sweep_drafts(session, staging_dir, now, runtime.settings.limits.draft_ttl)
    for path in sweep.files:  # committed: no draft refers to them any more
        path.unlink(missing_ok=True)
    return sweep


@dataclass
class Expired:
    """What one housekeeping run deleted."""

    sessions: int = 0
    login_codes: int = 0
    limits: int = 0
    inbound_updates: int = 0
    export_folders: int = 0
    import_uploads: int = 0
    scrubbed: int = 0


SIGN_IN_WINDOW = timedelta(hours=1)


def expire_bookkeeping(runtime: Runtime, exports: Path, now: datetime) -> Expired:
    """Delete what only served for a while: ended web sessions and sign-in codes, spent sign-in limits,
    handled inbound updates past ``[web] retention`` (kept that long to recognise a re-delivery) and the
    dashboard's per-request export folders past it, and uploaded plans never confirmed (staging time to live);
    wipe sign-in codes from outbox rows that are done."""
    retention = runtime.settings.web.retention
    done = Expired()
    with runtime.transaction() as session:
        done.login_codes = _count(
            session.execute(delete(LoginCode).where(or_(LoginCode.expires_at <= now, LoginCode.used_at.is_not(None))))
        )
        still_named = select(LoginCode.session_id)
        done.sessions = _count(
            session.execute(delete(WebSession).where(WebSession.expires_at <= now, WebSession.id.not_in(still_named)))
        )
        quiet = now - SIGN_IN_WINDOW
        done.limits = _count(
            session.execute(
                delete(SignInLimit).where(
                    SignInLimit.window_start <= quiet,
                    or_(SignInLimit.last_failure_at.is_(None), SignInLimit.last_failure_at <= quiet),
                    or_(SignInLimit.locked_until.is_(None), SignInLimit.locked_until <= now),
                )
            )
        )
        done.inbound_updates = _count(
            # one still pending is a person's message not yet handled: it stays until it is
            session.execute(
                delete(InboundUpdate).where(
                    InboundUpdate.received_at < now - retention, InboundUpdate.state != "pending"
                )
            )
        )
        stale_secrets = session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.state.not_in(("queued", "sending")), OutboxMessage.kind == "login"
            )
        ).all()
        for row in stale_secrets:
            if row.payload.get("sensitive") and row.payload.get("text") != SCRUBBED_TEXT:
                row.payload = {**row.payload, "text": SCRUBBED_TEXT}
                done.scrubbed += 1
    if exports.is_dir():
        cutoff = (now - retention).timestamp()
        for folder in exports.iterdir():
            # Only the dashboard's one-per-request folders: files directly in exports/ are rewritten in place.
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
                done.export_folders += 1
    done.import_uploads = ImportStaging(import_staging_folder(runtime.settings)).expire(now)
    if any(vars(done).values()):
        log.info("housekeeping", extra={"expired": vars(done)})
    return done


def _count(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def send_digest(runtime: Runtime, digest: Digest, now: datetime) -> list[int]:
    """The working-morning overdue digest, for every jurisdiction's newest plan (nothing on days off)."""
    with runtime.transaction() as session:
        queued: list[int] = []
        for plan in newest_plans(session):
            queued += digest.send_scheduled(session, plan, now)
        return queued
