"""The durable inbox: what a person sent is stored before the platform is told we have it.

An adapter stores each update it receives (:func:`store`) and only then
acknowledges it (the webhook's 200, the next ``getUpdates`` offset, the WeCom
callback's answer).  The conversation handles a stored update and marks it
handled in the same transaction that records what it meant
(:func:`mark_handled`), so an update is handled exactly once however often it
is delivered, retried or found pending at start-up.

Handling that fails for a passing reason (database locked, disk full, the
platform's file API unreachable) leaves the update pending with a later
``next_attempt_at`` (:func:`retry_later`); a permanent failure, or one that
keeps failing past ``[inbox] give_up_after``, marks it failed
(:func:`give_up`): the sender is told, with a reference, and the office
dashboard lists it (:func:`failed_updates`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core.outbox import Message, enqueue
from storage.models import InboundUpdate

PENDING = "pending"
HANDLED = "handled"
FAILED = "failed"
KEY_CHARS = 200


@dataclass(frozen=True)
class Received:
    """One update as a platform delivered it, before anything is made of it."""

    platform: str
    update_key: str  # the platform's own id for it: the same on every redelivery
    payload: dict[str, Any]  # the raw update, enough to handle it later
    user_id: str | None = None  # who sent it and where to answer, should handling fail for good
    chat_id: str | None = None


@dataclass(frozen=True)
class StoredUpdate:
    """A pending update, as the inbox worker handles it."""

    id: int
    platform: str
    update_key: str
    payload: dict[str, Any]
    user_id: str | None
    chat_id: str | None
    attempts: int
    received_at: datetime
    notified: bool

    @property
    def reference(self) -> str:
        return reference(self.id)


def reference(update_id: int) -> str:
    """How a stored update is named to the person and on the dashboard."""
    return f"IN{update_id}"


# Built once: every update runs these (store, mark_handled, due); on the table, not the ORM entity.
_INBOUND = cast(Table, InboundUpdate.__table__)
# INSERT … ON CONFLICT DO NOTHING RETURNING id, its columns from the parameters it is run with.
_INSERT_SQLITE = (
    sqlite_insert(_INBOUND).on_conflict_do_nothing(index_elements=["platform", "update_key"]).returning(_INBOUND.c.id)
)
_INSERT_PG = (
    pg_insert(_INBOUND).on_conflict_do_nothing(index_elements=["platform", "update_key"]).returning(_INBOUND.c.id)
)
_PENDING = (
    select(
        _INBOUND.c.id,
        _INBOUND.c.platform,
        _INBOUND.c.update_key,
        _INBOUND.c.payload,
        _INBOUND.c.user_id,
        _INBOUND.c.chat_id,
        _INBOUND.c.attempts,
        _INBOUND.c.received_at,
        _INBOUND.c.notified,
        _INBOUND.c.next_attempt_at,
    )
    .where(_INBOUND.c.state == PENDING)
    .order_by(_INBOUND.c.id)
)
_CLAIM = (
    update(_INBOUND)
    .where(
        _INBOUND.c.platform == bindparam("b_platform"),
        _INBOUND.c.update_key == bindparam("b_update_key"),
        _INBOUND.c.state == PENDING,
    )
    .values(state=HANDLED, handled_at=bindparam("b_now"), payload=None, next_attempt_at=None)
)


def store(session: Session, received: Received, now: datetime) -> int | None:
    """Store an update as pending; None when this update was stored before (a redelivery)."""
    insert = _INSERT_PG if session.get_bind().dialect.name == "postgresql" else _INSERT_SQLITE
    stored: int | None = session.execute(
        insert,
        {
            "platform": received.platform,
            "update_key": received.update_key[:KEY_CHARS],
            "received_at": now,
            "state": PENDING,
            "user_id": received.user_id,
            "chat_id": received.chat_id,
            "payload": received.payload,
            "attempts": 0,
            "notified": False,
        },
    ).scalar_one_or_none()
    return stored


def mark_handled(session: Session, platform: str, update_key: str, now: datetime) -> bool:
    """Claim an update for handling in this transaction; False when it was handled (or given up) before.

    An update that never went through the inbox (a sandbox button press) is
    written as handled here, so a second delivery of it is still recognised.
    """
    key = update_key[:KEY_CHARS]
    claim = {"b_platform": platform, "b_update_key": key, "b_now": now}
    # Most updates come from the inbox, stored as pending: one UPDATE claims them.
    # On PostgreSQL a concurrent handler holds the row lock; this waits, then sees it handled.
    if session.execute(_CLAIM, claim).rowcount:  # type: ignore[attr-defined]
        return True
    insert = _INSERT_PG if session.get_bind().dialect.name == "postgresql" else _INSERT_SQLITE
    inserted = session.execute(
        insert, {"platform": platform, "update_key": key, "received_at": now, "state": HANDLED, "handled_at": now}
    ).scalar_one_or_none()
    if inserted is not None:
        return True
    # Stored as pending meanwhile (by another process) between the two statements above: claim it now.
    return bool(session.execute(_CLAIM, claim).rowcount)  # type: ignore[attr-defined]


def due(
    session: Session,
    now: datetime,
    *,
    limit: int = 100,
    skip: set[int] | None = None,
    others_before: datetime | None = None,
    mine: set[int] | None = None,
) -> list[StoredUpdate]:
    """Pending updates whose time has come, oldest first.

    One person's updates are handled in the order they came: behind one that
    waits for its retry (or is in ``skip``, being handled), their later ones wait too.
    With ``others_before`` (several processes share the database), an update
    not in ``mine`` — another process received it and is handling it — is due
    only when it was received before that moment (its process is gone or stuck).
    """
    # Plain rows, read only as far as needed (then the cursor is closed): a burst can leave thousands pending.
    with session.execute(_PENDING) as rows:
        chosen = _choose(rows, now, limit, skip or set(), others_before, mine or set())
    return chosen


def _choose(
    rows: Iterable[Any],
    now: datetime,
    limit: int,
    skip: set[int],
    others_before: datetime | None = None,
    mine: frozenset[int] | set[int] = frozenset(),
) -> list[StoredUpdate]:
    """The first ``limit`` due rows of ``rows`` (pending, by id), each person's in order."""
    waiting: set[tuple[str, str | None]] = set()
    chosen: list[StoredUpdate] = []
    for row in rows:
        person = (row.platform, row.user_id or f"#{row.id}")
        if (
            row.id in skip
            or (row.next_attempt_at is not None and row.next_attempt_at > now)
            or (others_before is not None and row.id not in mine and row.received_at >= others_before)
        ):
            waiting.add(person)
            continue
        if person in waiting:
            continue
        chosen.append(
            StoredUpdate(
                id=row.id,
                platform=row.platform,
                update_key=row.update_key,
                payload=row.payload or {},
                user_id=row.user_id,
                chat_id=row.chat_id,
                attempts=row.attempts,
                received_at=row.received_at,
                notified=row.notified,
            )
        )
        if len(chosen) >= limit:
            break
    return chosen


def next_due(session: Session) -> datetime | None:
    """When the earliest pending update is due again (None: nothing pending)."""
    return session.scalar(select(func.min(InboundUpdate.next_attempt_at)).where(InboundUpdate.state == PENDING))


def backoff(attempts: int, base: timedelta, cap: timedelta) -> timedelta:
    """The wait before the next try after ``attempts`` failed ones: doubling from ``base``, at most ``cap``."""
    return min(base * (2 ** min(max(attempts - 1, 0), 30)), cap)


def retry_later(
    session: Session,
    stored: StoredUpdate,
    *,
    error: str,
    at: datetime,
    notice: Message | None = None,
    now: datetime,
) -> None:
    """Leave the update pending until ``at``; send ``notice`` (once per update) saying it is delayed."""
    values: dict[str, Any] = {"attempts": stored.attempts + 1, "next_attempt_at": at, "last_error": error[:2000]}
    if notice is not None and not stored.notified and stored.chat_id:
        enqueue(
            session,
            platform=stored.platform,
            chat_id=stored.chat_id,
            kind="reply",
            dedup_key=f"inbox-delayed:{stored.id}",
            message=notice,
            now=now,
        )
        values["notified"] = True
    session.execute(
        update(InboundUpdate)
        .where(InboundUpdate.id == stored.id, InboundUpdate.state == PENDING)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def give_up(session: Session, stored: StoredUpdate, *, error: str, notice: Message, now: datetime) -> bool:
    """Mark the update failed and tell its sender (``notice``); False when it was handled meanwhile."""
    failed = session.execute(
        update(InboundUpdate)
        .where(InboundUpdate.id == stored.id, InboundUpdate.state == PENDING)
        .values(state=FAILED, attempts=stored.attempts + 1, last_error=error[:2000], next_attempt_at=None)
        .execution_options(synchronize_session=False)
    )
    if not failed.rowcount:  # type: ignore[attr-defined]
        return False
    if stored.chat_id:
        enqueue(
            session,
            platform=stored.platform,
            chat_id=stored.chat_id,
            kind="reply",
            dedup_key=f"inbox-failed:{stored.id}",
            message=notice,
            now=now,
        )
    return True


@dataclass(frozen=True)
class FailedUpdate:
    """A failed update as the dashboard lists it."""

    reference: str
    platform: str
    user_id: str | None
    received_at: datetime
    attempts: int
    error: str


def failed_updates(session: Session, *, limit: int = 50) -> list[FailedUpdate]:
    """The most recent updates that could not be handled, newest first."""
    rows = session.scalars(
        select(InboundUpdate).where(InboundUpdate.state == FAILED).order_by(InboundUpdate.id.desc()).limit(limit)
    )
    return [
        FailedUpdate(reference(r.id), r.platform, r.user_id, r.received_at, r.attempts, r.last_error or "")
        for r in rows
    ]


def counts(session: Session) -> dict[str, int]:
    """How many updates are pending and failed (for the metrics and the dashboard)."""
    rows = session.execute(
        select(InboundUpdate.state, func.count())
        .where(InboundUpdate.state.in_((PENDING, FAILED)))
        .group_by(InboundUpdate.state)
    )
    found = {state: int(count) for state, count in rows}
    return {PENDING: found.get(PENDING, 0), FAILED: found.get(FAILED, 0)}
