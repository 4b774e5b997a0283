"""The scheduled jobs as plain functions of "now": what the scheduler calls, and what tests call.

Each takes the time as an argument (the scheduler passes its clock's reading),
does its work in transactions of its own, and returns what it did.  None of them keeps
state between calls: the database is the record of what was sent.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from core.digest import Digest
from core.drafts import DraftSweep, sweep_drafts
from core.escalation import Escalation, TickReport
from core.quarter_end import plans_with_closed_rounds, send_notifications
from core.runtime import Runtime
from storage.models import Plan
from storage.queries import newest_plans

log = logging.getLogger("duban.ticks")


def remind(runtime: Runtime, escalation: Escalation, now: datetime) -> TickReport:
    """Queue every reminder and escalation due by ``now``, and the 通报 of rounds just closed (idempotent)."""
    report, plan_ids = tick(runtime, escalation, now)
    for plan_id in plan_ids:
        report.notifications += notify_county(runtime, escalation, plan_id, now)
    return report


def tick(runtime: Runtime, escalation: Escalation, now: datetime) -> tuple[TickReport, list[int]]:
    """The reminders and escalations due by ``now``; and the counties with a closed round to notify."""
    with runtime.transaction() as session:
        report = escalation.tick(session, now)
        plan_ids = plans_with_closed_rounds(session, [plan.id for plan in newest_plans(session)], now)
    return report, plan_ids


def notify_county(runtime: Runtime, escalation: Escalation, plan_id: int, now: datetime) -> list[int]:
    """One county's 通报 of the rounds just closed, in a transaction of its own; the outbox ids.

    Apart from the tick because, when a round closes everywhere at once, each
    county writes a file: one transaction over all of them would hold SQLite's
    write lock (and every chat reply) for the whole province.  A county whose
    file cannot be written (a full disk …) is logged and tried again at the
    next tick; it holds up no other.
    """
    try:
        with runtime.transaction() as session:
            plan = session.get(Plan, plan_id)
            if plan is None:
                return []
            return send_notifications(session, escalation.settings, escalation.m, escalation.calendar, plan, now)
    except Exception:
        log.exception("通报 not sent; retried at the next tick", extra={"plan": plan_id})
        return []


def drop_stale_drafts(runtime: Runtime, staging_dir: Path, now: datetime) -> DraftSweep:
    """Unfinished /report drafts untouched for ``[limits] draft_ttl``, and their staged files."""
    with runtime.transaction() as session:
        sweep = sweep_drafts(session, staging_dir, now, runtime.settings.limits.draft_ttl)
    for path in sweep.files:  # committed: no draft refers to them any more
        path.unlink(missing_ok=True)
    return sweep


def send_digest(runtime: Runtime, digest: Digest, now: datetime) -> list[int]:
    """The working-morning overdue digest, for every jurisdiction's newest plan (nothing on days off)."""
    with runtime.transaction() as session:
        queued: list[int] = []
        for plan in newest_plans(session):
            queued += digest.send_scheduled(session, plan, now)
        return queued
