"""The outbox sender: delivers queued messages within each platform's limits, exactly once by design.

One loop per platform claims the next deliverable row (``FOR UPDATE SKIP LOCKED``
on PostgreSQL, so several processes share the work), marks it ``sending``,
sends it through the platform's :class:`Transport`, and records the platform's
message id.  A crash between the send and the record can repeat only that one
row; rows left ``sending`` by a dead process are requeued after a lease.

Pacing is the sender's job, not the platform's: an overall rate per platform
(Telegram ~30/s), a minimum interval and sliding windows per chat (Telegram
1/s; WeCom 30/min and 1000/h per member), and a platform-wide pause when the
platform answers 429 with ``retry_after``.  Network errors and 5xx retry with
exponential backoff; a blocked bot or a vanished chat is a permanent failure
that marks the person unreachable for the office to see.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import CursorResult, Interval, and_, exists, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, aliased, sessionmaker

from core.clock import Clock, SystemClock
from core.outbox import scrubbed
from storage.models import Identity, OutboxMessage, RateSlot
from storage.threads import DatabaseThreads

log = logging.getLogger("duban.sender")


# --- what transports raise and return ------------------------------------------------------


class DeliveryError(Exception):
    """A send that did not go through."""


class RetryLater(DeliveryError):
    """The platform asked to wait (HTTP 429): nothing goes to it until ``seconds`` have passed."""

    def __init__(self, seconds: float, message: str = "") -> None:
        super().__init__(message or f"retry after {seconds}s")
        self.seconds = seconds


class TransientFailure(DeliveryError):
    """Network trouble or a 5xx: try again later."""


class PermanentFailure(DeliveryError):
    """Trying again will not help; ``unreachable`` when the person can no longer be reached."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


@dataclass(frozen=True)
class Delivered:
    platform_message_id: str | None


@dataclass(frozen=True)
class OutgoingRow:
    """A claimed outbox row, detached from the database."""

    id: int
    platform: str
    chat_id: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    person_id: int | None


@dataclass(frozen=True)
class SendLimits:
    """How fast a platform may be sent to."""

    per_second: float | None = None
    per_chat_interval: float = 0.0
    per_chat_windows: tuple[tuple[int, float], ...] = ()  # (count, seconds)


class Transport(Protocol):
    platform: str
    limits: SendLimits

    async def send(self, row: OutgoingRow) -> Delivered: ...


# --- pacing ------------------------------------------------------------------------------------


class Pacer:
    """Keeps one platform's sends within its limits (monotonic time, in memory)."""

    def __init__(self, limits: SendLimits, now: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._now = now
        self._next_slot = float("-inf")
        self._chat_last: dict[str, float] = {}
        self._chat_windows: dict[str, deque[float]] = {}
        self.paused_until = float("-inf")

    def pause_wait(self) -> float:
        """Seconds until a 429 pause is over (0 when there is none)."""
        return max(0.0, self.paused_until - self._now())

    def reserve(self) -> float:
        """Take the next send slot of the overall rate; seconds to wait for it.

        Slots are a schedule (each one interval after the last), not a gap
        after the previous send, so the time spent claiming and sending a
        message overlaps the wait instead of adding to it.
        """
        now = self._now()
        slot = max(now, self._next_slot, self.paused_until)
        if self.limits.per_second:
            self._next_slot = slot + 1.0 / self.limits.per_second
        return slot - now

    def chat_wait(self, chat_id: str) -> float:
        now = self._now()
        wait = 0.0
        last = self._chat_last.get(chat_id)
        if last is not None:
            wait = max(wait, last + self.limits.per_chat_interval - now)
        window = self._chat_windows.get(chat_id)
        if window:
            for count, seconds in self.limits.per_chat_windows:
                recent = [t for t in window if t > now - seconds]
                if len(recent) >= count:
                    wait = max(wait, recent[-count] + seconds - now)
        return max(0.0, wait)

    def blocked_chats(self) -> tuple[list[str], float]:
        """Chats that may not be sent to now, and the soonest one of them frees up."""
        blocked, soonest = [], float("inf")
        for chat_id in set(self._chat_last) | set(self._chat_windows):
            wait = self.chat_wait(chat_id)
            if wait > 0:
                blocked.append(chat_id)
                soonest = min(soonest, wait)
        self._forget_idle()
        return blocked, soonest

    def record(self, chat_id: str) -> None:
        now = self._now()
        self._chat_last[chat_id] = now
        if self.limits.per_chat_windows:
            longest = max(seconds for _, seconds in self.limits.per_chat_windows)
            window = self._chat_windows.setdefault(chat_id, deque())
            window.append(now)
            while window and window[0] <= now - longest:
                window.popleft()

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, self._now() + seconds)

    def _forget_idle(self) -> None:
        now = self._now()
        horizon = max([self.limits.per_chat_interval] + [s for _, s in self.limits.per_chat_windows])
        for chat_id in [c for c, t in self._chat_last.items() if t < now - horizon]:
            del self._chat_last[chat_id]
            self._chat_windows.pop(chat_id, None)


# --- the sender ---------------------------------------------------------------------------------


@dataclass
class SenderStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    rate_limited: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


class OutboxSender:
    """Delivers the outbox; one loop per platform with a transport."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        transports: list[Transport],
        *,
        worker: str,
        clock: Clock | None = None,
        lease: timedelta = timedelta(minutes=2),
        retry_base: float = 2.0,
        retry_cap: float = 600.0,
        max_attempts: int = 10,
        on_result: Callable[[OutgoingRow, str, float], None] | None = None,
        shared: bool = False,
        threads: DatabaseThreads | None = None,
    ) -> None:
        self.sessions = sessions
        # The service passes its database threads (one on SQLite: see storage.threads).
        self._blocking: Callable[..., Awaitable[Any]] = threads.run if threads is not None else asyncio.to_thread
        # Several processes (PostgreSQL): pace through the database, not only in memory.
        self.shared = shared
        self.transports = {t.platform: t for t in transports}
        self.pacers = {t.platform: Pacer(t.limits) for t in transports}
        self.worker = worker
        self.clock = clock or SystemClock()
        self.lease = lease
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.max_attempts = max_attempts
        self.on_result = on_result
        self.stats = SenderStats()
        self._wake: dict[str, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._in_flight = 0

    # --- waking ----------------------------------------------------------

    def wake(self) -> None:
        """Something was queued: look now rather than at the next poll.  Safe from any thread."""
        loop = self._loop
        if loop is None:
            return
        for event in self._wake.values():
            loop.call_soon_threadsafe(event.set)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    # --- running ------------------------------------------------------------

    async def run(self, stop: asyncio.Event, *, requeue_all_in_flight: bool = False) -> None:
        """Deliver until ``stop`` is set; finishes the send in progress before returning."""
        self._loop = asyncio.get_running_loop()
        await self._blocking(self.recover, everything=requeue_all_in_flight)
        loops = [asyncio.create_task(self._platform_loop(p, stop), name=f"outbox-{p}") for p in self.transports]
        try:
            await asyncio.gather(*loops)
        finally:
            for task in loops:
                task.cancel()

    async def drain(self, *, timeout: float = 30.0) -> None:
        """Send until nothing deliverable is left (tests and one-shot use)."""
        self._loop = asyncio.get_running_loop()
        await self._blocking(self.recover, everything=True)
        deadline = time.monotonic() + timeout
        for platform in self.transports:
            while True:
                wait = await self._step(platform)
                if wait is None:  # sent one: there may be more
                    continue
                if not await self._blocking(self._has_pending, platform):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"outbox for {platform} not drained in {timeout}s")
                await asyncio.sleep(min(wait, 0.05))

    async def _platform_loop(self, platform: str, stop: asyncio.Event) -> None:
        event = self._wake.setdefault(platform, asyncio.Event())
        idle_checks = 0
        while not stop.is_set():
            try:
                wait = await self._step(platform)
            except Exception:  # a database hiccup must not end delivery
                log.exception("outbox step failed")
                wait = 1.0
            if wait is None:
                continue
            idle_checks += 1
            if idle_checks % 30 == 0:
                await self._blocking(self.recover)
            event.clear()
            stopping = asyncio.create_task(stop.wait())
            woken = asyncio.create_task(event.wait())
            _done, pending = await asyncio.wait(
                {stopping, woken}, timeout=min(wait, 1.0), return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()

    async def _step(self, platform: str) -> float | None:
        """Send one row; None when one was sent, else seconds to wait before looking again."""
        pacer = self.pacers[platform]
        pause = pacer.pause_wait()
        if pause > 0:
            await asyncio.sleep(pause)
        blocked, soonest = pacer.blocked_chats()
        row = await self._blocking(self._claim, platform, blocked)
        if row is None:
            return min(soonest, 1.0)
        transport = self.transports[platform]
        if self.shared and transport.limits.per_second:
            # Several processes: the database holds the one schedule of slots.
            wait = await self._blocking(self._reserve_slot, platform, 1.0 / transport.limits.per_second)
        else:
            wait = pacer.reserve()
        if wait > 0:
            await asyncio.sleep(wait)
        pacer.record(row.chat_id)
        started = time.monotonic()
        self._in_flight += 1
        try:
            result = await transport.send(row)
        except RetryLater as exc:
            pacer.pause(exc.seconds)
            if self.shared:
                await self._blocking(self._pause_slot, platform, exc.seconds)
            self.stats.rate_limited += 1
            await self._blocking(self._requeue, row, exc.seconds, str(exc), count_attempt=False)
            self._report(row, "rate_limited", started)
        except TransientFailure as exc:
            self.stats.retried += 1
            delay = min(self.retry_cap, self.retry_base * 2 ** max(0, row.attempts - 1))
            if row.attempts >= self.max_attempts:
                await self._blocking(self._fail, row, f"gave up after {row.attempts} attempts: {exc}", False)
                self._report(row, "failed", started)
            else:
                await self._blocking(self._requeue, row, delay, str(exc), count_attempt=True)
                self._report(row, "retry", started)
        except PermanentFailure as exc:
            self.stats.failed += 1
            await self._blocking(self._fail, row, str(exc), exc.unreachable)
            self._report(row, "unreachable" if exc.unreachable else "failed", started)
        else:
            self.stats.sent += 1
            await self._blocking(self._mark_sent, row, result)
            self._report(row, "sent", started)
        finally:
            self._in_flight -= 1
        return None

    def _report(self, row: OutgoingRow, outcome: str, started: float) -> None:
        self.stats.outcomes[outcome] = self.stats.outcomes.get(outcome, 0) + 1
        if self.on_result is not None:
            self.on_result(row, outcome, time.monotonic() - started)

    # --- database steps (run in a worker thread) -----------------------------------

    def _has_pending(self, platform: str) -> bool:
        with self.sessions() as session:
            return (
                session.scalar(
                    select(OutboxMessage.id)
                    .where(OutboxMessage.platform == platform, OutboxMessage.state.in_(("queued", "sending")))
                    .limit(1)
                )
                is not None
            )

    def _claim(self, platform: str, blocked_chats: list[str]) -> OutgoingRow | None:
        now = self.clock.now()
        with self.sessions() as session, session.begin():
            candidate = (
                select(OutboxMessage.id)
                .where(
                    OutboxMessage.platform == platform,
                    OutboxMessage.state == "queued",
                    OutboxMessage.next_attempt_at <= now,
                )
                .order_by(OutboxMessage.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if blocked_chats:
                candidate = candidate.where(OutboxMessage.chat_id.not_in(blocked_chats))
            if self.shared:
                # Another process may be sending to the same chat: leave its chats alone for a moment.
                interval = self.transports[platform].limits.per_chat_interval
                other = aliased(OutboxMessage)
                candidate = candidate.where(
                    ~exists().where(
                        other.platform == platform,
                        other.chat_id == OutboxMessage.chat_id,
                        or_(
                            other.state == "sending",
                            and_(other.state == "sent", other.sent_at > now - timedelta(seconds=interval)),
                        ),
                    )
                )
            row_id = session.scalar(candidate)
            if row_id is None:
                return None
            claimed = session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row_id, OutboxMessage.state == "queued")
                .values(state="sending", claimed_by=self.worker, claimed_at=now, attempts=OutboxMessage.attempts + 1)
                .returning(
                    OutboxMessage.id,
                    OutboxMessage.platform,
                    OutboxMessage.chat_id,
                    OutboxMessage.kind,
                    OutboxMessage.payload,
                    OutboxMessage.attempts,
                    OutboxMessage.person_id,
                )
            ).one_or_none()
            if claimed is None:
                return None
            return OutgoingRow(*claimed)

    def _reserve_slot(self, platform: str, interval: float) -> float:
        """Take the platform's next send slot, shared by all processes; seconds to wait for it."""
        step = literal(timedelta(seconds=interval), Interval())
        with self.sessions() as session, session.begin():
            session.execute(pg_insert(RateSlot).values(platform=platform, next_at=func.now()).on_conflict_do_nothing())
            mine, now = session.execute(
                update(RateSlot)
                .where(RateSlot.platform == platform)
                .values(next_at=func.greatest(RateSlot.next_at, func.clock_timestamp()) + step)
                .returning(RateSlot.next_at - step, func.clock_timestamp())
            ).one()
        return max(0.0, (mine - now).total_seconds())

    def _pause_slot(self, platform: str, seconds: float) -> None:
        with self.sessions() as session, session.begin():
            session.execute(
                update(RateSlot)
                .where(RateSlot.platform == platform)
                .values(
                    next_at=func.greatest(
                        RateSlot.next_at, func.clock_timestamp() + literal(timedelta(seconds=seconds), Interval())
                    )
                )
            )

    def _mark_sent(self, row: OutgoingRow, result: Delivered) -> None:
        now = self.clock.now()
        with self.sessions() as session, session.begin():
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row.id)
                .values(
                    state="sent",
                    sent_at=now,
                    platform_message_id=result.platform_message_id,
                    last_error=None,
                    # a sign-in code must not stay readable in the outbox once delivered
                    **({"payload": kept} if (kept := scrubbed(row.payload)) is not None else {}),
                )
            )

    def _requeue(self, row: OutgoingRow, delay: float, error: str, *, count_attempt: bool) -> None:
        now = self.clock.now()
        values: dict[str, Any] = {
            "state": "queued",
            "next_attempt_at": now + timedelta(seconds=delay),
            "last_error": error[:1000],
            "claimed_by": None,
        }
        if not count_attempt:
            values["attempts"] = OutboxMessage.attempts - 1
        with self.sessions() as session, session.begin():
            session.execute(update(OutboxMessage).where(OutboxMessage.id == row.id).values(**values))

    def _fail(self, row: OutgoingRow, error: str, unreachable: bool) -> None:
        now = self.clock.now()
        with self.sessions() as session, session.begin():
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row.id)
                .values(state="unreachable" if unreachable else "failed", last_error=error[:1000], sent_at=None)
            )
            if unreachable:
                session.execute(
                    update(Identity)
                    .where(Identity.platform == row.platform, Identity.chat_id == row.chat_id)
                    .values(reachable=False, unreachable_reason=error[:500], unreachable_at=now)
                )

    def recover(self, *, everything: bool = False) -> int:
        """Requeue rows left ``sending``: all of them (a single process starting), or those past the lease."""
        now = self.clock.now()
        condition = OutboxMessage.state == "sending"
        if not everything:
            condition = and_(
                condition,
                or_(OutboxMessage.claimed_at.is_(None), OutboxMessage.claimed_at < now - self.lease),
            )
        with self.sessions() as session, session.begin():
            result = session.execute(
                update(OutboxMessage).where(condition).values(state="queued", claimed_by=None, next_attempt_at=now)
            )
            count = cast("CursorResult[Any]", result).rowcount or 0
        if count:
            log.warning("requeued %d outbox rows left in flight", count)
        return count


def outbox_depth(session: Session, now: datetime) -> dict[str, Any]:
    """Queued rows per platform and the age of the oldest (for metrics and the dashboard)."""
    rows = session.execute(
        select(OutboxMessage.platform, OutboxMessage.state, func.count(), func.min(OutboxMessage.created_at)).group_by(
            OutboxMessage.platform, OutboxMessage.state
        )
    ).all()
    depth: dict[str, Any] = {}
    for platform, state, count, oldest in rows:
        entry = depth.setdefault(platform, {})
        entry[state] = count
        if state == "queued" and oldest is not None:
            entry["oldest_age_seconds"] = max(0.0, (now - oldest).total_seconds())
    return depth
