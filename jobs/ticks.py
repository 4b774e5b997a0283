"""The scheduled jobs as plain functions of "now": what the scheduler calls, and what tests call.

Each takes the time as an argument (the scheduler passes its clock's reading),
does its work in one transaction, and returns what it did.  None of them keeps
state between calls: the database is the record of what was sent.
"""

from __future__ import annotations

from datetime import datetime

from core.escalation import Escalation, TickReport
from core.runtime import Runtime


def remind(runtime: Runtime, escalation: Escalation, now: datetime) -> TickReport:
    """Queue every reminder and escalation due by ``now`` (idempotent)."""
    with runtime.transaction() as session:
        return escalation.tick(session, now)
