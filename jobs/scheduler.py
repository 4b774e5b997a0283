"""APScheduler wiring: it wakes the jobs up; the database, not the scheduler, records what is owed and sent.

No persistent job store: jobs are rebuilt from the configuration at start-up,
and a missed wake-up costs nothing because each job looks at the database and
"now" (catch-up after downtime is the reminder job's own logic).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from core.clock import Clock
from core.config import Settings

log = logging.getLogger("duban.scheduler")

Job = Callable[[datetime], Awaitable[object]]


def build_scheduler(
    settings: Settings,
    clock: Clock,
    *,
    remind: Job,
    digest: Job | None = None,
    housekeeping: Job | None = None,
    guard: Callable[[], Awaitable[bool]] | None = None,
) -> AsyncIOScheduler:
    """A scheduler that runs the reminder tick every ``resolution``, the digest each morning, housekeeping hourly.

    Every job reads ``clock`` for "now".  ``guard`` says whether this process
    should run scheduled jobs at all (several processes share one database).
    """
    scheduler = AsyncIOScheduler(timezone=settings.tz)

    def wrap(name: str, job: Job) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            if guard is not None and not await guard():
                return
            try:
                await job(clock.now())
            except Exception:  # a failed tick is logged and retried at the next one
                log.exception("scheduled job %s failed", name)

        run.__name__ = f"duban_{name}"
        return run

    scheduler.add_job(
        wrap("remind", remind),
        IntervalTrigger(seconds=settings.escalation.resolution.total_seconds(), timezone=settings.tz),
        id="remind",
        max_instances=1,
        coalesce=True,
        next_run_time=datetime.now(settings.tz),
    )
    if digest is not None and settings.digest.enabled:
        scheduler.add_job(
            wrap("digest", digest),
            CronTrigger(hour=settings.digest.time.hour, minute=settings.digest.time.minute, timezone=settings.tz),
            id="digest",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=3600,
        )
    if housekeeping is not None:
        scheduler.add_job(
            wrap("housekeeping", housekeeping),
            IntervalTrigger(hours=1, timezone=settings.tz),
            id="housekeeping",
            max_instances=1,
            coalesce=True,
        )
    return scheduler
