"""Handling the durable inbox: each platform's stored updates, through the conversation core.

Adapters call :meth:`Inbox.accept` before they acknowledge an update, then
:meth:`Inbox.wake`.  :meth:`Inbox.run` handles every pending update, at
start-up and whenever woken: the platform's reader turns the stored payload
back into an :class:`~core.conversation.Incoming` (downloading its files), the
conversation handles it and marks it handled in one transaction (on SQLite
several people's updates share one, a savepoint each).  One person's updates
are handled in the order they arrived; different people's side by side.

A failure is either passing — the database locked or busy, the uploads folder
full or read-only, the platform's file API unreachable — and the update is
tried again with backoff (the person is told once, when a file is involved),
or permanent, and the update is marked failed: the person gets
"未能记录,请稍后重试" with a reference, and the dashboard lists it.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from core import inbox
from core.conversation import Conversation, Handled, Incoming
from core.inbox import Received, StoredUpdate
from core.outbox import Message
from core.reporting import FileNotStored
from core.runtime import Runtime
from messages import Messages
from storage.threads import DatabaseThreads

log = logging.getLogger("duban.inbox")

# Errors of the file system that an operator fixes (space, permissions): worth waiting for.
_PASSING_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
# Different people's updates handled at once (on SQLite they still queue for the one database thread).
CONCURRENT_PEOPLE = 8


class InboundRetry(Exception):
    """A passing failure outside the database (the platform's file API unreachable, 5xx, timeouts)."""


class InboundReader(Protocol):
    """A platform's side of the inbox: its stored payloads back into what the core understands."""

    platform: str
    #: whether ``read`` fetches the files again (so a failed try's staged copies can go)
    refetches_files: bool

    async def read(self, payload: dict[str, Any]) -> Incoming | None:
        """The update as an Incoming (files downloaded and staged); None when it means nothing to the core."""
        ...

    async def answered(self, payload: dict[str, Any], handled: Handled) -> None:
        """Anything the platform needs once the update is handled (a button press's toast)."""
        ...


def is_passing(exc: BaseException) -> bool:
    """Whether handling may well succeed if tried again later."""
    if isinstance(exc, InboundRetry | FileNotStored | OperationalError | DisconnectionError | PoolTimeout):
        return True
    return isinstance(exc, OSError) and exc.errno in _PASSING_ERRNOS


class Inbox:
    """Stores updates before they are acknowledged and handles them from there."""

    def __init__(
        self,
        runtime: Runtime,
        conversation: Conversation,
        threads: DatabaseThreads,
        messages: Messages,
        *,
        wake_sender: Callable[[], None],
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.runtime = runtime
        self.conversation = conversation
        self.threads = threads
        self.messages = messages
        self.wake_sender = wake_sender
        self.settings = runtime.settings.inbox
        # Retries run on real time (the conversation's clock may be a test's ManualClock).
        self.wall_clock = wall_clock
        self.readers: dict[str, InboundReader] = {}
        self._woken = asyncio.Event()
        self._in_hand: set[int] = set()
        # Several processes on one database: the pending updates this one stored (it handles those;
        # another's only after ``adopt_after``, or those left from before it started).
        self._shared = runtime.engine.dialect.name == "postgresql"
        self._mine: set[int] = set()
        self._started_at = wall_clock()
        # Retry times that could not be written (the database was locked): kept here meanwhile.
        self._held_until: dict[int, datetime] = {}
        self.handled = 0
        self.retried = 0
        self.failed = 0

    def add_reader(self, reader: InboundReader) -> None:
        self.readers[reader.platform] = reader

    # --- receiving ------------------------------------------------------------

    async def accept(self, *received: Received) -> None:
        """Make updates durable before the caller acknowledges them.

        They are stored as pending rows in one transaction.  When the database
        has not taken them within ``[inbox] accept_within`` (another process
        holds the lock, the database thread is busy) they are written to the
        spool folder instead, synced to disk, and moved into the database by
        the worker later (a store that still completes meanwhile makes the
        spooled copy a duplicate, which the dedup drops).  Raises only when
        neither worked: the caller must then not acknowledge them.
        """
        storing = asyncio.ensure_future(self.threads.run(self._store, received))
        storing.add_done_callback(lambda done: done.cancelled() or done.exception())
        try:
            await asyncio.wait_for(asyncio.shield(storing), self.settings.accept_within.total_seconds())
            return
        except Exception as exc:  # timed out, or the database refused
            log.warning("inbox: %d update(s) spooled, the database did not take them: %s", len(received), exc)
        await asyncio.to_thread(self._spool, received)

    @property
    def spool_dir(self) -> Path:
        return self.runtime.settings.path(self.runtime.settings.service.data_dir) / "inbox-spool"

    def _spool(self, received: tuple[Received, ...]) -> None:
        """Write updates to the spool folder: one file each, complete or absent (temporary file, fsync, rename)."""
        folder = self.spool_dir
        folder.mkdir(parents=True, exist_ok=True)
        at = self.wall_clock()
        for item in received:
            name = f"{time.time_ns():020d}-{uuid.uuid4().hex}.json"
            partial = folder / f".{name}"
            record = {**asdict(item), "received_at": at.isoformat()}
            with partial.open("w", encoding="utf-8") as handle:
                json.dump(record, handle, ensure_ascii=False)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, folder / name)
        directory = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def _unspool(self) -> None:
        """Move spooled updates into the database (on the database thread, before reading what is due)."""
        folder = self.spool_dir
        if not folder.is_dir():
            return
        files = sorted(folder.glob("[0-9]*.json"))
        if not files:
            return
        with self.runtime.transaction() as session:
            for path in files:
                record = json.loads(path.read_text(encoding="utf-8"))
                at = datetime.fromisoformat(record.pop("received_at"))
                stored = inbox.store(session, Received(**record), at)
                if stored is not None:
                    self._mine.add(stored)
        for path in files:  # committed: the database has them now
            path.unlink(missing_ok=True)

    def _store(self, received: tuple[Received, ...], *, claim: bool = False) -> list[int]:
        now = self.wall_clock()
        with self.runtime.transaction() as session:
            ids = [i for i in (inbox.store(session, item, now) for item in received) if i is not None]
        self._mine.update(ids)
        if claim:  # the caller handles them itself: the worker leaves them alone
            self._in_hand.update(ids)
        return ids

    def wake(self) -> None:
        self._woken.set()

    # --- handling ---------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Handle pending updates until ``stop``: everything left from before at once, then as they come."""
        while not stop.is_set():
            self._woken.clear()
            try:
                if await self.handle_due():
                    continue
            except Exception as exc:  # the database is locked or gone: try again shortly
                log.warning("could not read the inbox: %s", exc)
                await self._sleep(stop, self.settings.retry_base.total_seconds())
                continue
            await self._sleep(stop, await self._idle_seconds())

    async def handle_due(self) -> int:
        """Handle the pending updates whose time has come; how many there were."""
        batch = await self.threads.run(self._due)
        if batch:
            await self.handle_batch(batch)
        return len(batch)

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> None:
        stopping = asyncio.ensure_future(stop.wait())
        woken = asyncio.ensure_future(self._woken.wait())
        try:
            await asyncio.wait({stopping, woken}, timeout=max(seconds, 0.01), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            woken.cancel()

    async def _idle_seconds(self) -> float:
        now = self.wall_clock()
        waits = [(until - now).total_seconds() for until in self._held_until.values()]
        try:
            at = await self.threads.run(self._next_due)
        except Exception:
            at = None
        if at is not None:
            waits.append((at - now).total_seconds())
        # Also look again now and then: on PostgreSQL another process may have stored updates.
        return min([*waits, 30.0])

    def _next_due(self) -> datetime | None:
        with self.runtime.transaction() as session:
            return inbox.next_due(session)

    def _due(self) -> list[StoredUpdate]:
        self._unspool()
        now = self.wall_clock()
        for held, until in list(self._held_until.items()):
            if until <= now:
                del self._held_until[held]
        others_before = max(self._started_at, now - self.settings.adopt_after) if self._shared else None
        with self.runtime.transaction() as session:
            return inbox.due(
                session, now, skip=self._in_hand | set(self._held_until), others_before=others_before, mine=self._mine
            )

    async def handle_batch(self, batch: list[StoredUpdate]) -> None:
        """Handle updates (at most ``due``'s limit): each person's in order, several people at once.

        They go in waves: every person's first update, read side by side and
        handled together (on SQLite in one database call and one transaction,
        a savepoint each; on PostgreSQL a transaction each, several at once),
        then every person's second, and so on.  So an update is read only once
        the same person's earlier one is handled (whether a file is worth
        downloading depends on it), and a person whose update fails, or is
        left to be tried again, has their later ones wait (their order matters).
        """
        await self._handle(batch)

    async def handle(self, stored: StoredUpdate) -> Handled | None:
        """Handle one stored update; None when it is left to be tried again."""
        return (await self._handle([stored]))[stored.id]

    async def _handle(self, batch: list[StoredUpdate]) -> dict[int, Handled | None]:
        """What became of each update (None: left pending)."""
        by_person: dict[tuple[str, str], list[StoredUpdate]] = defaultdict(list)
        for stored in batch:
            by_person[(stored.platform, stored.user_id or f"#{stored.id}")].append(stored)
        results: dict[int, Handled | None] = {stored.id: None for stored in batch}
        self._in_hand.update(results)
        try:
            chains = list(by_person.values())
            while chains:
                await self._wave([chain[0] for chain in chains], results)
                chains = [chain[1:] for chain in chains if len(chain) > 1 and results[chain[0].id] is not None]
        finally:
            self._in_hand.difference_update(results)
        return results

    async def _wave(self, wave: list[StoredUpdate], results: dict[int, Handled | None]) -> None:
        """Read updates of different people side by side, then handle them (see :meth:`handle_batch`)."""
        gate = asyncio.Semaphore(CONCURRENT_PEOPLE)

        async def read(stored: StoredUpdate) -> tuple[StoredUpdate, InboundReader, Incoming] | None:
            async with gate:
                reader = self.readers.get(stored.platform)
                try:
                    if reader is None:
                        raise LookupError(f"no reader for platform {stored.platform!r}")
                    incoming = await reader.read(stored.payload)
                    if incoming is None:
                        await self.threads.run(self._mark_handled, stored)
                except Exception as exc:
                    results[stored.id] = await self._settle(stored, reader, None, exc)
                    return None
                if incoming is None:  # it meant nothing: marked handled, nothing to answer
                    self._mine.discard(stored.id)
                    results[stored.id] = Handled()
                    return None
                return stored, reader, incoming

        ready = [item for item in await asyncio.gather(*(read(stored) for stored in wave)) if item is not None]
        if not ready:
            return
        if self.threads.single_writer:  # SQLite: one writer at a time anyway, so one transaction for all
            outcomes = await self._conversation(ready)
        else:
            # PostgreSQL locks rows: a long transaction would hold a unit's obligations against every other
            # process (and could deadlock with them), so one transaction per update, several side by side.
            async def alone(item: tuple[StoredUpdate, InboundReader, Incoming]) -> Handled | Exception | None:
                async with gate:
                    return (await self._conversation([item]))[0]

            outcomes = list(await asyncio.gather(*(alone(item) for item in ready)))
        for (stored, reader, incoming), outcome in zip(ready, outcomes, strict=True):
            results[stored.id] = await self._settle(stored, reader, incoming, outcome)
        handled = [(s, r, o) for (s, r, _), o in zip(ready, outcomes, strict=True) if isinstance(o, Handled)]
        if handled:
            self.wake_sender()
            await self._answer(handled)

    async def _conversation(
        self, read: list[tuple[StoredUpdate, InboundReader, Incoming]]
    ) -> list[Handled | Exception | None]:
        """The conversation's outcome for each update: the batch in one transaction, or alone when that fails."""
        incomings = [incoming for _, _, incoming in read]
        try:
            return await self.threads.run(self.conversation.handle_many, incomings)
        except Exception as exc:  # nothing of the batch was recorded
            if is_passing(exc) or len(incomings) == 1:
                return [exc] * len(incomings)  # each is tried again later (or given up), as alone
            log.warning("a batch of %d updates failed (%s); handling them one by one", len(incomings), exc)
        outcomes: list[Handled | Exception | None] = []
        failed: set[tuple[str, str]] = set()
        for incoming in incomings:  # one transaction each, so a bad update fails alone
            sender = (incoming.platform, incoming.user_id)
            if sender in failed:  # left behind the person's failed earlier one, as in a batch
                outcomes.append(None)
                continue
            try:
                (outcome,) = await self.threads.run(self.conversation.handle_many, [incoming])
            except Exception as exc:
                outcome = exc
            if isinstance(outcome, Exception):
                failed.add(sender)
            outcomes.append(outcome)
        return outcomes

    async def _settle(
        self,
        stored: StoredUpdate,
        reader: InboundReader | None,
        incoming: Incoming | None,
        outcome: Handled | Exception | None,
    ) -> Handled | None:
        """Book one update's outcome: handled, tried again later or given up (Handled), or left pending (None)."""
        if isinstance(outcome, Handled):
            self._mine.discard(stored.id)
            self.handled += 1
            return outcome
        result = None if outcome is None else await self._failed(stored, outcome)
        if result is not None:  # given up: no longer pending
            self._mine.discard(stored.id)
        if incoming is not None and (result is not None or (reader is not None and reader.refetches_files)):
            self.conversation.discard_files(incoming)  # given up, or the next try downloads them again
        return result

    async def _answer(self, handled: list[tuple[StoredUpdate, InboundReader, Handled]]) -> None:
        """Tell each platform what it needs about its handled updates (a button press's toast), several at once."""
        gate = asyncio.Semaphore(CONCURRENT_PEOPLE)

        async def answer(stored: StoredUpdate, reader: InboundReader, result: Handled) -> None:
            async with gate:
                try:
                    await reader.answered(stored.payload, result)
                except Exception:  # the answer to the platform is a courtesy; the update is handled
                    log.warning("could not acknowledge a handled update to %s", stored.platform, exc_info=True)

        await asyncio.gather(*(answer(*update) for update in handled))

    def _mark_handled(self, stored: StoredUpdate) -> None:
        with self.runtime.transaction() as session:
            inbox.mark_handled(session, stored.platform, stored.update_key, self.wall_clock())

    async def _failed(self, stored: StoredUpdate, exc: Exception) -> Handled | None:
        """Retry later (None) or give up (a Handled with nothing queued but the notice)."""
        error = f"{type(exc).__name__}: {exc}"
        age = self.wall_clock() - stored.received_at
        if is_passing(exc) and age < self.settings.give_up_after:
            wait = inbox.backoff(stored.attempts + 1, self.settings.retry_base, self.settings.retry_max)
            log.warning("update %s will be tried again in %s: %s", stored.reference, wait, error)
            self.retried += 1
            try:
                await self.threads.run(self._retry_later, stored, exc, error, wait)
            except Exception:  # e.g. still locked: remember the time here instead
                self._held_until[stored.id] = self.wall_clock() + wait
            return None
        log.error("update %s could not be handled: %s", stored.reference, error, exc_info=exc)
        self.failed += 1
        try:
            await self.threads.run(self._give_up, stored, error)
        except Exception:
            log.exception("could not mark update %s failed; it stays pending", stored.reference)
            self._held_until[stored.id] = self.wall_clock() + self.settings.retry_max
            return None
        return Handled()

    def _retry_later(self, stored: StoredUpdate, exc: Exception, error: str, wait: timedelta) -> None:
        notice = None
        if isinstance(exc, FileNotStored | InboundRetry):  # a file is waiting: say so, once
            reason, detail = ("storage", exc.file_name) if isinstance(exc, FileNotStored) else ("platform", "")
            notice = Message(
                text=self.messages.render("inbox_delayed", reason=reason, detail=detail, reference=stored.reference)
            )
        now = self.wall_clock()
        with self.runtime.transaction() as session:
            inbox.retry_later(session, stored, error=error, at=now + wait, notice=notice, now=now)
        if notice is not None:
            self.wake_sender()

    def _give_up(self, stored: StoredUpdate, error: str) -> None:
        notice = Message(text=self.messages.render("inbound_failed", reference=stored.reference))
        with self.runtime.transaction() as session:
            inbox.give_up(session, stored, error=error, notice=notice, now=self.wall_clock())
        self.wake_sender()

    async def handle_now(self, received: Received) -> Handled | None:
        """Store an update and handle it at once (the sandbox, whose browser waits for the answer).

        None when it was stored before, or is left pending to be tried again.
        """
        ids = await self.threads.run(self._store, (received,), claim=True)
        return await self.handle_stored(ids[0], received) if ids else None

    async def handle_stored(self, update_id: int, received: Received) -> Handled | None:
        """Handle an update the caller has just stored (with :func:`core.inbox.store`)."""
        stored = StoredUpdate(
            id=update_id,
            platform=received.platform,
            update_key=received.update_key,
            payload=received.payload,
            user_id=received.user_id,
            chat_id=received.chat_id,
            attempts=0,
            received_at=self.wall_clock(),
            notified=False,
        )
        return await self.handle(stored)
