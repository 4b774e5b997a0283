"""The scheduled jobs as plain functions of "now": what the scheduler calls, and what tests call.

Each takes the time as an argument (the scheduler passes its clock's reading),
does its work in one transaction, and returns what it did.  None of them keeps
state between calls: the database is the record of what was sent.
"""

from __future__ import annotations

from datetime import datetime

from core.digest import Digest
from core.escalation import Escalation, TickReport
from core.quarter_end import send_notifications
from core.runtime import Runtime
from storage.queries import newest_plans


def remind(runtime: Runtime, escalation: Escalation, now: datetime) -> TickReport:
    """Queue every reminder and escalation due by ``now``, and the 通报 of rounds just closed (idempotent)."""
    with runtime.transaction() as session:
        report = escalation.tick(session, now)
        for plan in newest_plans(session):
            report.notifications += send_notifications(
                session, escalation.settings, escalation.m, escalation.calendar, plan, now
            )
        return report


def send_digest(runtime: Runtime, digest: Digest, now: datetime) -> list[int]:
    """The working-morning overdue digest, for every jurisdiction's newest plan (nothing on days off)."""
    with runtime.transaction() as session:
        queued: list[int] = []
        for plan in newest_plans(session):
            queued += digest.send_scheduled(session, plan, now)
        return queued
