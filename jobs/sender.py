"""The outbox sender: delivers queued messages within each platform's limits, exactly once by design.

One loop per platform claims the next deliverable row (``FOR UPDATE SKIP LOCKED``
on PostgreSQL, so several processes share the work), marks it ``sending``,
sends it through the platform's :class:`Transport`, and records the platform's
message id.  A crash between the send and the record can repeat only that one
row; rows left ``sending`` by a dead process are requeued after a lease.

Pacing is the sender's job, not the platform's: an overall rate per platform
(Telegram ~30/s), a minimum interval and sliding windows per chat (Telegram
1/s; WeCom 30/min and 1000/h per member), and a platform-wide pause when the
platform answers 429 with ``retry_after``.

Nothing is given up on silently.  A passing failure (network, 5xx, 429, WeCom's
-1 "system busy") is retried with exponential backoff capped at ``retry_cap``
for as long as the message still matters (``outbox.matters_until``, set when
it was queued: see :mod:`core.outbox`), the last try just before that moment;
past it, also for a row that waited in the queue that long, the row becomes
``expired`` — never sent late, shown on the dashboard, which can send it
again.  Only a permanent refusal (blocked, chat not found, invalid user)
stops at once, and marks the person unreachable for the office to see.  Each
platform's failure streak is kept in ``platform_status`` (in the database, so
it survives restarts and is shared by processes) for the health check.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import CursorResult, Interval, and_, exists, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, aliased, sessionmaker
from sqlalchemy.sql.expression import ColumnElement, UnaryExpression
from sqlalchemy.sql.operators import custom_op

from core.clock import Clock, SystemClock
from core.outbox import scrubbed
from jobs.pacing import Pacer, SendLimits
from storage.models import Identity, OutboxMessage, PlatformStatus, RateSlot
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
    matters_until: datetime | None = None


class Transport(Protocol):
    platform: str
    limits: SendLimits

    async def send(self, row: OutgoingRow) -> Delivered: ...


# --- the sender ---------------------------------------------------------------------------------


@dataclass
class SenderStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    rate_limited: int = 0
    slots_missed: int = 0  # slots given up because the send could not start in time
    expired: int = 0  # rows that stopped mattering before they could be delivered
    outcomes: dict[str, int] = field(default_factory=dict)


def _wall(moment: float) -> datetime:
    return datetime.fromtimestamp(moment, UTC)


class OutboxSender:
    """Delivers the outbox; one loop per platform with a transport, several sends in flight on each."""

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
        deadline_clock: Clock | None = None,
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
        # Whether a message still matters is judged in the time it was queued in (the service's
        # clock).  In service both are the system clock; tests may run the core on a manual clock
        # while the sender's backoff runs in real time.
        self.deadline_clock = deadline_clock or self.clock
        # When this process last wrote a success to ``platform_status`` (monotonic), per platform:
        # a success is written at most every HEALTHY_NOTE seconds unless a failure came between.
        self._noted_healthy: dict[str, float] = {}
        self.on_result = on_result
        self.stats = SenderStats()
        self._wake: dict[str, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        # Per platform: the chat of each row claimed and not yet settled (a chat never has two) ...
        self._flying: dict[str, dict[str, asyncio.Task[None]]] = {p: {} for p in self.transports}
        # ... and how many of them have left and await their answers.
        self._awaiting: dict[str, int] = dict.fromkeys(self.transports, 0)
        self._answered: dict[str, asyncio.Event] = {p: asyncio.Event() for p in self.transports}

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
        return sum(len(flying) for flying in self._flying.values())

    # --- running ------------------------------------------------------------

    async def run(self, stop: asyncio.Event, *, requeue_all_in_flight: bool = False) -> None:
        """Deliver until ``stop`` is set; finishes the sends in progress before returning."""
        self._loop = asyncio.get_running_loop()
        await self._blocking(self.recover, everything=requeue_all_in_flight)
        loops = [asyncio.create_task(self._platform_loop(p, stop), name=f"outbox-{p}") for p in self.transports]
        try:
            await asyncio.gather(*loops)
        finally:
            for task in loops:
                task.cancel()
            log.info(
                "outbox sender stopped: %d sent, %d retried, %d failed, %d rate-limited, %d slots missed",
                self.stats.sent,
                self.stats.retried,
                self.stats.failed,
                self.stats.rate_limited,
                self.stats.slots_missed,
            )

    async def drain(self, *, timeout: float = 30.0, due_only: bool = False, alone: bool = True) -> None:
        """Send until nothing deliverable is left (tests and one-shot use).

        ``due_only``: until nothing is due now; rows waiting for a later retry stay queued
        (a test moving a manual clock sends what each moment allows).
        ``alone``: no other sender is running, so every row left ``sending`` is a dead one's and
        is requeued at once; with others running (False) only rows past the lease are, as in
        :meth:`run` — requeuing a row another sender has in flight would send it twice.
        """
        self._loop = asyncio.get_running_loop()
        await self._blocking(self.recover, everything=alone)
        stop = asyncio.Event()
        loops = [
            asyncio.create_task(self._platform_loop(p, stop, until_drained=True, due_only=due_only), name=f"drain-{p}")
            for p in self.transports
        ]
        try:
            done, _pending = await asyncio.wait(loops, timeout=timeout)
            for task in done:
                task.result()
            if len(done) < len(loops):
                stop.set()
                for flying in self._flying.values():  # a row still waiting goes back to the queue
                    for task in list(flying.values()):
                        task.cancel()
                for task in loops:
                    task.cancel()
                await asyncio.gather(*loops, return_exceptions=True)
                raise TimeoutError(f"outbox not drained in {timeout}s")
        finally:
            for task in loops:
                task.cancel()

    async def _platform_loop(
        self, platform: str, stop: asyncio.Event, *, until_drained: bool = False, due_only: bool = False
    ) -> None:
        event = self._wake.setdefault(platform, asyncio.Event())
        flying = self._flying[platform]
        pacer = self.pacers[platform]
        idle_checks = 0
        try:
            while not stop.is_set():
                event.clear()  # before looking: a send landing or a row queued from now on wakes the wait below
                wait: float | None = None
                try:
                    pause = pacer.pause_wait()
                    free = pacer.capacity() - len(flying)
                    if pause > 0:
                        wait = pause
                    elif free <= 0:
                        wait = 1.0  # a finishing send wakes the loop
                    else:
                        claimed = await self._claim_some(platform, free)
                        if claimed:
                            now = time.monotonic()
                            for row, slot in claimed:
                                sending = asyncio.create_task(self._deliver(row, slot, now), name=f"send-{row.id}")
                                flying[row.chat_id] = sending
                                sending.add_done_callback(functools.partial(self._landed, platform, row.chat_id))
                            continue
                        if (
                            until_drained
                            and not flying
                            and not await self._blocking(self._has_pending, platform, due_only)
                        ):
                            await self._blocking(self.expire, platform)  # what waited past its moment, marked
                            return
                        wait = pacer.blocked_chats()[1]
                except Exception:  # a database hiccup must not end delivery
                    log.exception("outbox step failed")
                    wait = 1.0
                idle_checks += 1
                if idle_checks % 30 == 0 and not until_drained:
                    # Housekeeping, not delivery: a claim never takes a row past its moment, so marking
                    # those ``expired`` can wait for this rather than cost a transaction every idle second.
                    await self._blocking(self.recover)
                    await self._blocking(self.expire, platform)
                stopping = asyncio.create_task(stop.wait())
                woken = asyncio.create_task(event.wait())
                limit = 0.05 if until_drained else 1.0
                _done, pending = await asyncio.wait(
                    {stopping, woken}, timeout=min(wait, limit), return_when=asyncio.FIRST_COMPLETED
                )
                for task in pending:
                    task.cancel()
        finally:
            if flying:  # sends already claimed go out (or back to the queue) before the loop ends
                await asyncio.gather(*flying.values(), return_exceptions=True)

    def _landed(self, platform: str, chat_id: str, _task: asyncio.Task[None]) -> None:
        self._flying[platform].pop(chat_id, None)
        event = self._wake.get(platform)
        if event is not None:
            event.set()

    async def _claim_some(self, platform: str, count: int) -> list[tuple[OutgoingRow, float]]:
        """Claim up to ``count`` rows to distinct idle chats, each with the slot it may start in (monotonic)."""
        pacer = self.pacers[platform]
        blocked, _soonest = pacer.blocked_chats()
        excluded = blocked + list(self._flying[platform])
        rows, slots = await self._blocking(self._claim, platform, excluded, count)
        if not rows:
            return []
        if slots is None:
            slots = pacer.reserve(len(rows))
        return list(zip(rows, slots, strict=True))

    async def _slot(self, platform: str) -> float:
        """One more slot, for a send that missed its own (the next free one: now, when the schedule is idle)."""
        if self.shared and self.transports[platform].limits.per_second:
            return (await self._blocking(self._reserve_slots, platform, 1))[0]
        return self.pacers[platform].reserve()[0]

    async def _start(self, row: OutgoingRow, slot: float, claimed: float) -> bool:
        """Wait for ``slot``; a send that cannot start in it (woken late, or paused meanwhile) takes the next free one.

        False when the row is no longer ours: it waited so long (a loaded
        machine missing slot after slot) that its lease ran out and another
        process took it back; it must not be sent from here then.
        """
        platform = row.platform
        pacer = self.pacers[platform]
        answered = self._answered[platform]
        renew_after = self.lease.total_seconds() / 3
        while True:
            delay = slot - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            if time.monotonic() - claimed > renew_after:
                if not await self._blocking(self._renew, row):
                    return False
                claimed = time.monotonic()
                continue
            if pacer.usable(slot):
                if self._awaiting[platform] < pacer.outstanding_allowed():
                    return True  # the caller counts the departure before its next await
                answered.clear()
                await answered.wait()  # too many already out: the slot is likely lost, a new one follows
                continue
            if slot >= pacer.paused_until:
                self.stats.slots_missed += 1
            await asyncio.sleep(pacer.pause_wait())
            slot = await self._slot(platform)

    async def _deliver(self, row: OutgoingRow, slot: float, claimed: float) -> None:
        platform = row.platform
        transport = self.transports[platform]
        pacer = self.pacers[platform]
        try:
            if not await self._start(row, slot, claimed):
                log.warning("outbox row %s waited past its lease and was taken back; not sent from here", row.id)
                return
        except BaseException:
            await asyncio.shield(self._blocking(self._requeue, row, 0.0, "not sent: stopped", count_attempt=False))
            raise
        calls = _calls(transport, row)
        pacer.record(row.chat_id, calls)
        started = time.monotonic()
        # Until its outcome is written, a request that left may be repeated by a crash: these are
        # what ``outstanding_allowed`` limits, so a crash repeats no more than that many.
        self._awaiting[platform] += 1
        try:
            await self._send_and_record(row, transport, calls, started)
        finally:
            self._awaiting[platform] -= 1
            self._answered[platform].set()

    async def _send_and_record(self, row: OutgoingRow, transport: Transport, calls: int, started: float) -> None:
        platform = row.platform
        pacer = self.pacers[platform]
        try:
            try:
                result = await transport.send(row)
                pacer.observe_round_trip(time.monotonic() - started)
            finally:
                pacer.settle(row.chat_id, calls)
                answered = time.time()
        except RetryLater as exc:
            pacer.pause(exc.seconds)
            if self.shared:
                await self._blocking(self._pause_slot, platform, exc.seconds)
            self.stats.rate_limited += 1
            outcome = await self._retry_later(row, exc.seconds, str(exc), count_attempt=False, answered=answered)
            self._report(row, "rate_limited" if outcome == "retry" else outcome, started)
        except TransientFailure as exc:
            outcome = await self._retry_later(row, self._backoff(row), str(exc), count_attempt=True, answered=answered)
            self._report(row, outcome, started)
        except PermanentFailure as exc:
            self.stats.failed += 1
            await self._blocking(self._fail, row, str(exc), exc.unreachable, answered=answered)
            self._report(row, "unreachable" if exc.unreachable else "failed", started)
        except Exception as exc:  # a bug in a transport must not leave the row claimed until the lease
            log.exception("transport %s failed on outbox row %s", platform, row.id)
            outcome = await self._retry_later(row, self._backoff(row), repr(exc), count_attempt=True, answered=answered)
            self._report(row, outcome, started)
        else:
            self.stats.sent += 1
            await self._blocking(self._mark_sent, row, result, answered, self._note_success(platform))
            self._report(row, "sent", started)

    async def _retry_later(
        self, row: OutgoingRow, delay: float, error: str, *, count_attempt: bool, answered: float
    ) -> str:
        """A passing failure: retried after ``delay`` or expired (see ``_retry_or_expire``); counted here."""
        outcome: str = await self._blocking(
            self._retry_or_expire, row, delay, error, count_attempt=count_attempt, answered=answered
        )
        self._noted_healthy.pop(row.platform, None)  # the next success is written at once
        if outcome == "expired":
            self.stats.expired += 1
        elif count_attempt:
            self.stats.retried += 1
        return outcome

    def _backoff(self, row: OutgoingRow) -> float:
        """Seconds before the next try: ``retry_base`` doubling per attempt, at most ``retry_cap``."""
        return min(self.retry_cap, self.retry_base * 2 ** min(30, max(0, row.attempts - 1)))

    def _note_success(self, platform: str) -> bool:
        """Whether this success is written to ``platform_status`` (clearing a failure streak).

        Not every send writes: a process that saw no failure writes at most every
        ``HEALTHY_NOTE`` seconds, so a streak another process recorded is cleared
        within that long after sends go through again.
        """
        last = self._noted_healthy.get(platform)
        now = time.monotonic()
        if last is not None and now - last < HEALTHY_NOTE:
            return False
        self._noted_healthy[platform] = now
        return True

    def _report(self, row: OutgoingRow, outcome: str, started: float) -> None:
        self.stats.outcomes[outcome] = self.stats.outcomes.get(outcome, 0) + 1
        if self.on_result is not None:
            self.on_result(row, outcome, time.monotonic() - started)

    # --- database steps (run in a worker thread) -----------------------------------

    def _has_pending(self, platform: str, due_only: bool = False) -> bool:
        query = select(OutboxMessage.id).where(
            OutboxMessage.platform == platform,
            OutboxMessage.state.in_(("queued", "sending")),
            or_(OutboxMessage.matters_until.is_(None), OutboxMessage.matters_until > self.deadline_clock.now()),
        )
        if due_only:
            query = query.where(
                or_(OutboxMessage.state == "sending", OutboxMessage.next_attempt_at <= self.clock.now())
            )
        with self.sessions() as session:
            return session.scalar(query.limit(1)) is not None

    def _claim(
        self, platform: str, excluded_chats: list[str], count: int
    ) -> tuple[list[OutgoingRow], list[float] | None]:
        """Claim up to ``count`` due rows, at most one per chat; on PostgreSQL with their slots (else None).

        Shared (several processes): the platform's slot row is locked first, so
        claims are taken one process at a time and see each other's rows in
        flight; the slots for the whole block are reserved in the same
        transaction, one round trip for the lot.
        """
        now = self.clock.now()
        limits = self.transports[platform].limits
        shared_slots = self.shared and bool(limits.per_second)
        with self.sessions() as session, session.begin():
            if shared_slots:
                self._lock_slot_row(session, platform)
            candidate = (
                select(OutboxMessage.id, OutboxMessage.chat_id)
                .where(
                    OutboxMessage.platform == platform,
                    OutboxMessage.state == "queued",
                    self._due_at(session) <= now,
                    # past its moment it is not sent (``expire`` marks it)
                    or_(OutboxMessage.matters_until.is_(None), OutboxMessage.matters_until > self.deadline_clock.now()),
                )
                .order_by(OutboxMessage.id)
                .limit(count * 4)
            )
            if excluded_chats:
                candidate = candidate.where(OutboxMessage.chat_id.not_in(excluded_chats))
            if self.shared:
                candidate = candidate.where(*self._chat_is_free(platform, limits)).with_for_update(skip_locked=True)
            chosen: dict[str, int] = {}
            for row_id, chat_id in session.execute(candidate):
                if chat_id not in chosen:  # the oldest row of each chat, so a chat's messages keep their order
                    chosen[chat_id] = row_id
                    if len(chosen) == count:
                        break
            if not chosen:
                return [], None
            claimed = session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(chosen.values()), OutboxMessage.state == "queued")
                .values(state="sending", claimed_by=self.worker, claimed_at=now, attempts=OutboxMessage.attempts + 1)
                .returning(
                    OutboxMessage.id,
                    OutboxMessage.platform,
                    OutboxMessage.chat_id,
                    OutboxMessage.kind,
                    OutboxMessage.payload,
                    OutboxMessage.attempts,
                    OutboxMessage.person_id,
                    OutboxMessage.matters_until,
                )
            ).all()
            rows = sorted((OutgoingRow(*values) for values in claimed), key=lambda row: row.id)
            slots = self._take_slots(session, platform, len(rows)) if shared_slots and rows else None
            return rows, slots

    @staticmethod
    def _due_at(session: Session) -> ColumnElement[datetime]:
        """``next_attempt_at``, for the claim's condition; on SQLite kept out of index use.

        SQLite's planner, without statistics, takes the (state, next_attempt_at)
        range and sorts every due row by id to find the oldest few (3 ms a claim
        with 3,000 queued); with a unary + on the column it walks the (state, id)
        index and stops at the first few.  The + changes nothing else
        (https://www.sqlite.org/optoverview.html#disqualifying_where_clause_terms_using_unary_).
        """
        column = OutboxMessage.__table__.c.next_attempt_at
        if session.get_bind().dialect.name != "sqlite":
            return column
        return UnaryExpression(column, operator=custom_op("+"), type_=column.type)

    def _chat_is_free(self, platform: str, limits: SendLimits) -> list[Any]:
        """Conditions (shared pacing) that a row's chat has nothing in flight and room in its windows.

        Measured on the times the processes' requests were answered (written to the outbox; real time).
        """
        wall_now = datetime.now(UTC)
        other = aliased(OutboxMessage)
        conditions: list[Any] = [
            ~exists().where(
                other.platform == platform,
                other.chat_id == OutboxMessage.chat_id,
                or_(
                    other.state == "sending",
                    other.answered_at > wall_now - timedelta(seconds=limits.per_chat_interval),
                ),
            )
        ]
        for window_count, seconds in limits.windows():
            recent = aliased(OutboxMessage)
            conditions.append(
                select(func.count())
                .where(
                    recent.platform == platform,
                    recent.chat_id == OutboxMessage.chat_id,
                    recent.answered_at > wall_now - timedelta(seconds=seconds),
                )
                .scalar_subquery()
                < window_count
            )
        return conditions

    @staticmethod
    def _lock_slot_row(session: Session, platform: str) -> None:
        session.execute(
            pg_insert(RateSlot).values(platform=platform, next_at=datetime.now(UTC)).on_conflict_do_nothing()
        )
        session.execute(select(RateSlot.next_at).where(RateSlot.platform == platform).with_for_update())

    def _take_slots(self, session: Session, platform: str, count: int) -> list[float]:
        """The next ``count`` slots of the shared schedule, as monotonic times of this process.

        The schedule is kept in wall time (every process's clock; on one host
        they agree exactly, across hosts NTP keeps them within milliseconds).
        """
        per_second = self.transports[platform].limits.per_second
        assert per_second
        step = 1.0 / per_second
        # The database's clock when the statement runs: an idle schedule starts the block then,
        # not at a moment that has passed by the time the answer is back.
        end = session.execute(
            update(RateSlot)
            .where(RateSlot.platform == platform)
            .values(
                next_at=func.greatest(RateSlot.next_at, func.clock_timestamp())
                + literal(timedelta(seconds=step * count), Interval())
            )
            .returning(RateSlot.next_at)
        ).scalar_one()
        first = end.timestamp() - step * count
        offset = time.monotonic() - time.time()
        return [first + index * step + offset for index in range(count)]

    def _reserve_slots(self, platform: str, count: int) -> list[float]:
        """Take ``count`` slots of the platform's shared schedule on their own (a send that missed its slot)."""
        with self.sessions() as session, session.begin():
            self._lock_slot_row(session, platform)
            return self._take_slots(session, platform, count)

    def _pause_slot(self, platform: str, seconds: float) -> None:
        with self.sessions() as session, session.begin():
            session.execute(
                update(RateSlot)
                .where(RateSlot.platform == platform)
                .values(next_at=func.greatest(RateSlot.next_at, _wall(time.time() + seconds)))
            )

    def _renew(self, row: OutgoingRow) -> bool:
        """Extend the claim on a row still waiting for its slot; False when it is no longer ours."""
        with self.sessions() as session, session.begin():
            result = session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.id == row.id,
                    OutboxMessage.state == "sending",
                    OutboxMessage.claimed_by == self.worker,
                )
                .values(claimed_at=self.clock.now())
            )
            return (cast("CursorResult[Any]", result).rowcount or 0) == 1

    def _mark_sent(self, row: OutgoingRow, result: Delivered, answered: float, note_success: bool = False) -> None:
        now = self.clock.now()
        with self.sessions() as session, session.begin():
            if note_success:
                self._record_success(session, row.platform, now)
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row.id)
                .values(
                    state="sent",
                    sent_at=now,
                    answered_at=_wall(answered),
                    platform_message_id=result.platform_message_id,
                    last_error=None,
                    # a sign-in code must not stay readable in the outbox once delivered
                    **({"payload": kept} if (kept := scrubbed(row.payload)) is not None else {}),
                )
            )

    def _requeue(
        self, row: OutgoingRow, delay: float, error: str, *, count_attempt: bool, answered: float | None = None
    ) -> None:
        now = self.clock.now()
        values: dict[str, Any] = {
            "state": "queued",
            "next_attempt_at": now + timedelta(seconds=delay),
            "last_error": error[:1000],
            "claimed_by": None,
        }
        if answered is not None:
            values["answered_at"] = _wall(answered)
        if not count_attempt:
            values["attempts"] = OutboxMessage.attempts - 1
        with self.sessions() as session, session.begin():
            session.execute(update(OutboxMessage).where(OutboxMessage.id == row.id).values(**values))

    def _retry_or_expire(
        self, row: OutgoingRow, delay: float, error: str, *, count_attempt: bool, answered: float | None = None
    ) -> str:
        """After a passing failure: queue the row for ``delay`` seconds on, or expire it when that is past its moment.

        A backoff that would overshoot the moment is shortened to a last try a second
        before it (a sign-in code still gets its try near the end of its ten minutes);
        when not even ``retry_base`` is left, the row expires now.  Also starts (or
        continues) the platform's failure streak.  Returns ``retry`` or ``expired``.
        """
        now = self.clock.now()
        with self.sessions() as session, session.begin():
            self._record_failure(session, row.platform, now, error)
        if row.matters_until is not None:
            left = (row.matters_until - self.deadline_clock.now()).total_seconds() - 1.0
            if delay > left:
                delay = left
                if delay < self.retry_base:
                    self._expire_row(row, f"not delivered before it stopped mattering; last error: {error}", answered)
                    return "expired"
        self._requeue(row, delay, error, count_attempt=count_attempt, answered=answered)
        return "retry"

    def _expire_row(self, row: OutgoingRow, error: str, answered: float | None) -> None:
        values: dict[str, Any] = {"state": "expired", "last_error": error[:1000], "claimed_by": None, "sent_at": None}
        if answered is not None:
            values["answered_at"] = _wall(answered)
        with self.sessions() as session, session.begin():
            session.execute(update(OutboxMessage).where(OutboxMessage.id == row.id).values(**values))

    def expire(self, platform: str | None = None) -> int:
        """Mark ``expired`` the queued rows whose moment has passed (the platform down so long they never went)."""
        condition = and_(
            OutboxMessage.state == "queued",
            OutboxMessage.matters_until.is_not(None),
            OutboxMessage.matters_until <= self.deadline_clock.now(),
        )
        if platform is not None:
            condition = and_(condition, OutboxMessage.platform == platform)
        with self.sessions() as session, session.begin():
            # Read first: usually nothing has expired, and on SQLite an UPDATE takes the write lock
            # even when it matches nothing.
            if session.scalar(select(OutboxMessage.id).where(condition).limit(1)) is None:
                return 0
            result = session.execute(
                update(OutboxMessage)
                .where(condition)
                .values(
                    state="expired",
                    claimed_by=None,
                    last_error=func.coalesce(OutboxMessage.last_error + "; ", "")
                    + "not delivered before it stopped mattering",
                )
            )
            count = cast("CursorResult[Any]", result).rowcount or 0
        if count:
            self.stats.expired += count
            log.warning("%d outbox rows expired undelivered", count)
        return count

    @staticmethod
    def _status_row(session: Session, platform: str) -> PlatformStatus:
        status = session.get(PlatformStatus, platform, with_for_update=True)
        if status is None:
            dialect = session.get_bind().dialect.name
            if dialect == "postgresql":  # two processes may create it at once
                session.execute(pg_insert(PlatformStatus).values(platform=platform).on_conflict_do_nothing())
                status = session.get(PlatformStatus, platform, with_for_update=True)
            else:
                status = PlatformStatus(platform=platform)
                session.add(status)
        assert status is not None
        return status

    def _record_failure(self, session: Session, platform: str, now: datetime, error: str) -> None:
        status = self._status_row(session, platform)
        if status.failing_since is None:
            status.failing_since = now
        status.last_failure_at = now
        status.last_error = error[:500]

    def _record_success(self, session: Session, platform: str, now: datetime) -> None:
        status = self._status_row(session, platform)
        status.failing_since = None
        status.last_success_at = now

    def _fail(self, row: OutgoingRow, error: str, unreachable: bool, *, answered: float | None = None) -> None:
        now = self.clock.now()
        values: dict[str, Any] = {
            "state": "unreachable" if unreachable else "failed",
            "last_error": error[:1000],
            "sent_at": None,
        }
        if answered is not None:
            values["answered_at"] = _wall(answered)
        with self.sessions() as session, session.begin():
            session.execute(update(OutboxMessage).where(OutboxMessage.id == row.id).values(**values))
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


#: A process with no failure in between writes a success to ``platform_status`` at most this often (seconds).
HEALTHY_NOTE = 30.0


@dataclass(frozen=True)
class PlatformHealth:
    platform: str
    failing_since: datetime | None
    failing_seconds: float
    last_error: str | None

    def failing_for_longer_than(self, limit: timedelta) -> bool:
        return self.failing_since is not None and self.failing_seconds > limit.total_seconds()


def platform_health(session: Session, now: datetime, platforms: list[str]) -> dict[str, PlatformHealth]:
    """Each platform's failure streak: since when its sends fail for a passing reason with no success between."""
    rows = {row.platform: row for row in session.scalars(select(PlatformStatus))}
    health: dict[str, PlatformHealth] = {}
    for platform in sorted(set(platforms)):  # a platform no longer configured has nothing to report
        row = rows.get(platform)
        since = row.failing_since if row is not None else None
        health[platform] = PlatformHealth(
            platform=platform,
            failing_since=since,
            failing_seconds=max(0.0, (now - since).total_seconds()) if since is not None else 0.0,
            last_error=row.last_error if row is not None and since is not None else None,
        )
    return health


def _calls(transport: Transport, row: OutgoingRow) -> int:
    """How many platform calls one row makes (a WeCom text and its card are two), for the per-chat windows."""
    calls = getattr(transport, "calls", None)
    return int(calls(row)) if calls is not None else 1


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
