"""Writing outgoing messages: every message is a row first, delivered later by the sender.

A message is queued in the same transaction as the change it reports (a
recorded status and its confirmation commit together or not at all).  The
deduplication key makes queuing idempotent: queuing the same reminder twice —
after a crash, or from two processes — leaves one row.

Every row carries the moment it stops mattering (``matters_until``): the
sender keeps retrying a platform that fails for a passing reason until then,
and never sends after it — the row becomes ``expired``, shown on the dashboard
with a button to send it again.  What sets the moment: the caller, through
:attr:`About.until` (a reminder: when its round's next rung fires; the
scheduled digest: the next digest; a sign-in code: when the code runs out),
else :data:`KEEP_TRYING` after queuing (a reply, an urge, a review, a file …).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from storage.models import AuditLog, Identity, OutboxMessage

#: How long a message whose caller names no moment of its own still matters: a reply, an urge, a
#: review's outcome, an export, a notification.  A day covers an afternoon's outage of a platform
#: with the night to spare; past it an answer no longer answers anything.
KEEP_TRYING = timedelta(days=1)


@dataclass(frozen=True)
class Button:
    """A button under a message; ``data`` comes back as the press (at most 64 bytes)."""

    text: str
    data: str

    def as_json(self) -> dict[str, str]:
        return {"text": self.text, "data": self.data}


@dataclass
class Message:
    """What to send, independent of the platform that sends it."""

    text: str
    buttons: list[list[Button]] = field(default_factory=list)
    reply_to: str | None = None  # the platform message id this answers
    document: dict[str, str] | None = None  # {"path": ..., "file_name": ...}
    edit_of: str | None = None  # platform message id to edit instead of sending anew
    format: str = "text"  # "text" | "markdown"
    sensitive: bool = False  # a secret (a sign-in code): the text is wiped from the outbox once sent
    # What an edited message now stands for, in a few words: a platform that can only grey
    # out a card's buttons (WeCom) shows it as their text.
    label: str | None = None
    # An edit that only closes ``edit_of``: its buttons go, its text stays (the answer is elsewhere).
    close: bool = False

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {"text": self.text, "format": self.format}
        if self.sensitive:
            data["sensitive"] = True
        if self.label:
            data["label"] = self.label
        if self.close:
            data["close"] = True
        if self.buttons:
            data["buttons"] = [[b.as_json() for b in row] for row in self.buttons]
        if self.reply_to:
            data["reply_to"] = self.reply_to
        if self.document:
            data["document"] = self.document
        if self.edit_of:
            data["edit_of"] = self.edit_of
        return data


@dataclass(frozen=True)
class About:
    """What a message is about, so a reply to it can be understood."""

    checkpoint_id: int | None = None
    unit_id: int | None = None
    task_ids: tuple[int, ...] = ()
    rung: str | None = None
    late: bool = False
    #: When the message stops mattering (not sent after it); None: :data:`KEEP_TRYING` after queuing.
    until: datetime | None = None


# How long one message may be, per platform: (limit, unit).  Longer texts are
# split at line boundaries into several rows, so each part's platform id maps
# back to what the message is about.
TEXT_LIMITS: dict[str, tuple[int, str]] = {
    "telegram": (4000, "chars"),
    "wecom": (2000, "bytes"),
    "wecom_robot": (4000, "bytes"),
}


def _size(text: str, unit: str) -> int:
    return len(text.encode("utf-8")) if unit == "bytes" else len(text)


def split_text(text: str, limit: int, unit: str = "chars") -> list[str]:
    """Split on line boundaries into parts no longer than ``limit``; an over-long line is cut."""
    if _size(text, unit) <= limit:
        return [text]
    parts: list[str] = []
    current = ""
    for line in text.split("\n"):
        candidate = f"{current}\n{line}" if current else line
        if _size(candidate, unit) <= limit:
            current = candidate
            continue
        if current:
            parts.append(current)
        while _size(line, unit) > limit:
            cut = limit
            while _size(line[:cut], unit) > limit:
                cut -= 1
            parts.append(line[:cut])
            line = line[cut:]
        current = line
    if current:
        parts.append(current)
    return parts


SCRUBBED_TEXT = "[已发送,内容不保留]"


def scrubbed(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The payload to keep once a sensitive message has gone out (None: keep it as it is)."""
    if not payload.get("sensitive"):
        return None
    return {**payload, "text": SCRUBBED_TEXT}


# Built once (every reply runs one); the columns come from the parameters it is run with.
_OUTBOX = cast(Table, OutboxMessage.__table__)
_ENQUEUE_SQLITE = sqlite_insert(_OUTBOX).on_conflict_do_nothing(index_elements=["dedup_key"]).returning(_OUTBOX.c.id)
_ENQUEUE_PG = pg_insert(_OUTBOX).on_conflict_do_nothing(index_elements=["dedup_key"]).returning(_OUTBOX.c.id)


def enqueue(
    session: Session,
    *,
    platform: str,
    chat_id: str,
    kind: str,
    dedup_key: str,
    message: Message,
    now: datetime,
    person_id: int | None = None,
    about: About | None = None,
) -> int | None:
    """Queue one message; returns its (first) id, or None when the dedup key was queued before.

    A text longer than the platform allows becomes several rows, buttons on the last.
    """
    limit, unit = TEXT_LIMITS.get(platform, (0, "chars"))
    if limit and not message.edit_of and _size(message.text, unit) > limit:
        parts = split_text(message.text, limit, unit)
        first: int | None = None
        for number, part in enumerate(parts, start=1):
            last = number == len(parts)
            piece = Message(
                text=part,
                buttons=message.buttons if last else [],
                reply_to=message.reply_to if number == 1 else None,
                document=message.document if last else None,
                format=message.format,
            )
            queued = enqueue(
                session,
                platform=platform,
                chat_id=chat_id,
                kind=kind,
                dedup_key=f"{dedup_key}#{number}",
                message=piece,
                now=now,
                person_id=person_id,
                about=about,
            )
            first = first if first is not None else queued
        return first
    about = about or About()
    values = {
        "platform": platform,
        "chat_id": chat_id,
        "person_id": person_id,
        "kind": kind,
        "dedup_key": dedup_key[:200],
        "payload": message.payload(),
        "state": "queued",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "checkpoint_id": about.checkpoint_id,
        "unit_id": about.unit_id,
        "task_ids": list(about.task_ids) or None,
        "rung": about.rung,
        "late": about.late,
        "matters_until": about.until if about.until is not None else now + KEEP_TRYING,
    }
    statement = _ENQUEUE_PG if session.get_bind().dialect.name == "postgresql" else _ENQUEUE_SQLITE
    return session.execute(statement, values).scalar_one_or_none()


def enqueue_to_identities(
    session: Session,
    identities: list[Identity],
    *,
    kind: str,
    dedup_key: str,
    message: Message,
    now: datetime,
    about: About | None = None,
) -> list[int]:
    """Queue a message to each reachable identity; the key is made unique per identity."""
    ids = []
    for identity in identities:
        if not identity.reachable:
            continue
        queued = enqueue(
            session,
            platform=identity.platform,
            chat_id=identity.chat_id,
            kind=kind,
            dedup_key=f"{dedup_key}:{identity.platform}:{identity.chat_id}",
            message=message,
            now=now,
            person_id=identity.person_id,
            about=about,
        )
        if queued is not None:
            ids.append(queued)
    return ids


def message_about(session: Session, platform: str, chat_id: str, platform_message_id: str) -> OutboxMessage | None:
    """The outgoing message a user replied to, found by the id the platform gave it."""
    return session.scalar(
        select(OutboxMessage).where(
            OutboxMessage.platform == platform,
            OutboxMessage.chat_id == chat_id,
            OutboxMessage.platform_message_id == platform_message_id,
        )
    )


#: Rows the office may send again: given up on, or past their moment.  (A row the platform refused
#: because the person blocked the bot or left stays as it is: binding again is the way back.)
RESENDABLE = ("failed", "expired")


def resendable(row: OutboxMessage) -> bool:
    """Whether the office may send ``row`` again: given up on, past its moment, or still being retried."""
    return row.state in RESENDABLE or (row.state == "queued" and row.attempts > 0)


def resend(
    session: Session, outbox_id: int, *, now: datetime, actor: str, subject: str | None = None
) -> OutboxMessage | None:
    """Queue a message the sender gave up on again, with a fresh :data:`KEEP_TRYING`; recorded in the audit log.

    A row still being retried is tried again now, with the fresh moment too.
    None (nothing changed) when there is no such row or it is not given up on
    (being sent, sent or unreachable: sending it again would repeat it or fail again).
    The office asked for it, so it matters from now on, whatever its original moment.
    ``subject`` is what the audit log shows (the dashboard names the message and its recipient).
    """
    row = session.get(OutboxMessage, outbox_id)
    if row is None or not resendable(row):
        return None
    previous = row.state
    changed = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == outbox_id, OutboxMessage.state == previous)
        .values(
            state="queued",
            attempts=0,
            next_attempt_at=now,
            matters_until=now + KEEP_TRYING,
            claimed_by=None,
            last_error=None,
        )
        .execution_options(synchronize_session="fetch")
    )
    if not getattr(changed, "rowcount", 0):
        return None  # another request resent it first
    session.add(
        AuditLog(
            at=now,
            actor=actor,
            action="outbox.resend",
            subject=(subject or f"#{outbox_id}")[:300],
            detail={"kind": row.kind, "platform": row.platform, "was": previous},
        )
    )
    return row
