"""The scheduled jobs as plain functions of "now": what the scheduler calls, and what tests call.

Each takes the time as an argument (the scheduler passes its clock's reading),
does its work in one transaction, and returns what it did.  None of them keeps
state between calls: the database is the record of what was sent.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from core.digest import Digest
from core.escalation import Escalation, TickReport
from core.runtime import Runtime
from storage.models import Plan


def remind(runtime: Runtime, escalation: Escalation, now: datetime) -> TickReport:
    """Queue every reminder and escalation due by ``now`` (idempotent)."""
    with runtime.transaction() as session:
        return escalation.tick(session, now)


def send_digest(runtime: Runtime, digest: Digest, now: datetime) -> list[int]:
    """The working-morning overdue digest, for every jurisdiction's newest plan (nothing on days off)."""
    with runtime.transaction() as session:
        newest = (
            select(Plan.jurisdiction_id, func.max(Plan.year).label("year")).group_by(Plan.jurisdiction_id).subquery()
        )
        plans = session.scalars(
            select(Plan).join(newest, (Plan.jurisdiction_id == newest.c.jurisdiction_id) & (Plan.year == newest.c.year))
        ).all()
        queued: list[int] = []
        for plan in plans:
            queued += digest.send_scheduled(session, plan, now)
        return queued
