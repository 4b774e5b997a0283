"""Dashboard sign-in: one-time codes the bot sends to office staff, and the limits on guessing.

A person has at most one live code; asking again re-sends that code (and
moves it to the asking browser).  Codes sent are counted per person, per
browser session and per client address in an hour.  Wrong guesses (of a code
or of the dashboard secret) are counted per session and per client address;
past the limit the key is locked out, each further lockout twice as long up
to an hour.  A guess is compared only with the code issued to that session.
Plain Python on a SQLAlchemy session: the web layer passes in the keys.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core.config import PersonRole, WebSettings
from core.outbox import About, Message, enqueue
from messages import Messages
from storage.models import Identity, LoginCode, SignInLimit
from storage.queries import identities_with_role

CODE_TTL = timedelta(minutes=10)
CODE_ATTEMPTS = 5  # wrong guesses a single code survives
WINDOW = timedelta(hours=1)
MAX_LOCKOUT = timedelta(hours=1)


@dataclass(frozen=True)
class Guesser:
    """Who is guessing: the browser session (its token hash) and the client address."""

    session_key: str
    address: str

    def keys(self, limits: WebSettings) -> list[tuple[str, int]]:
        return [
            (f"session:{self.session_key}", limits.attempts_per_session),
            (f"address:{self.address}", limits.attempts_per_address),
        ]


def _limit_row(session: Session, key: str, now: datetime) -> SignInLimit:
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(SignInLimit)
        .values(key=key, window_start=now, sent=0, failures=0, lockouts=0)
        .on_conflict_do_nothing(index_elements=["key"])
    )
    row = session.scalars(select(SignInLimit).where(SignInLimit.key == key).with_for_update()).one()
    if row.window_start + WINDOW <= now:  # a new hour: sending starts again
        row.window_start = now
        row.sent = 0
    if row.last_failure_at is not None and row.last_failure_at + WINDOW <= now:  # an hour without a wrong guess
        row.failures = 0
        row.lockouts = 0
    return row


def locked_until(session: Session, guesser: Guesser, limits: WebSettings, now: datetime) -> datetime | None:
    """When the guesser may try again, or None when it may now."""
    until = [
        row.locked_until
        for key, _ in guesser.keys(limits)
        if (row := session.get(SignInLimit, key)) is not None and row.locked_until and row.locked_until > now
    ]
    return max(until) if until else None


def record_failure(session: Session, guesser: Guesser, limits: WebSettings, now: datetime) -> datetime | None:
    """Count a wrong guess; returns the end of the lockout it started, if any."""
    started = None
    for key, limit in guesser.keys(limits):
        row = _limit_row(session, key, now)
        row.failures += 1
        row.last_failure_at = now
        if row.failures >= limit:
            row.lockouts += 1
            row.failures = 0
            row.locked_until = now + min(limits.lockout * 2 ** (row.lockouts - 1), MAX_LOCKOUT)
            started = max(started or row.locked_until, row.locked_until)
    return started


def record_success(session: Session, guesser: Guesser, limits: WebSettings, now: datetime) -> None:
    """A right guess clears the session's count (the address keeps its own)."""
    key, _ = guesser.keys(limits)[0]
    row = _limit_row(session, key, now)
    row.failures = 0
    row.lockouts = 0


def _take_send(session: Session, keys: list[str], limit: int, now: datetime) -> bool:
    rows = [_limit_row(session, key, now) for key in keys]
    if any(row.sent >= limit for row in rows):
        return False
    for row in rows:
        row.sent += 1
    return True


def _code_hash(login_code_id: int, code: str) -> str:
    return hashlib.sha256(f"{login_code_id}:{code}".encode()).hexdigest()


def _live_code(session: Session, *where: Any, now: datetime) -> LoginCode | None:
    return session.scalars(
        select(LoginCode)
        .where(LoginCode.used_at.is_(None), LoginCode.expires_at > now, *where)
        .order_by(LoginCode.id.desc())
        .with_for_update()
    ).first()


def office_identities(session: Session, who: str) -> list[Identity]:
    """The office-role identities a name given on the sign-in page means, in any county of the deployment."""
    who = who.strip().lstrip("@")
    if not who:
        return []
    return [
        identity
        for _, identity in identities_with_role(session, None, PersonRole.OFFICE.value)
        if who in (identity.username, identity.external_id) and identity.reachable
    ]


def send_code(
    session: Session,
    messages: Messages,
    limits: WebSettings,
    *,
    who: str,
    web_session_id: int,
    session_key: str,
    address: str,
    now: datetime,
) -> bool:
    """Send (or re-send) the person's live sign-in code; False when nothing was sent (unknown, over a limit)."""
    matches = office_identities(session, who)
    if not matches:
        return False
    person_id = matches[0].person_id
    keys = [f"person:{person_id}", f"codes-session:{session_key}", f"codes-address:{address}"]
    if not _take_send(session, keys, limits.codes_per_hour, now):
        return False
    live = _live_code(session, LoginCode.person_id == person_id, now=now)
    if live is None or live.code is None:
        if live is not None:
            live.expires_at = now
        live = LoginCode(code_hash="", person_id=person_id, session_id=web_session_id, created_at=now)
        live.expires_at = now + CODE_TTL
        live.code = f"{secrets.randbelow(10**6):06d}"
        session.add(live)
        session.flush()
        live.code_hash = _code_hash(live.id, live.code)
    # The code follows the browser that asked last: that is where the person will type it.
    live.session_id = web_session_id
    minutes = max(1, int((live.expires_at - now).total_seconds() // 60))
    text = messages.render("login_code", code=live.code, minutes=minutes)
    for identity in matches:
        if identity.person_id != person_id:
            continue
        enqueue(
            session,
            platform=identity.platform,
            chat_id=identity.chat_id,
            kind="login",
            dedup_key=f"login:{live.id}:{identity.id}:{secrets.token_hex(6)}",  # every request sends
            message=Message(text=text, sensitive=True),
            now=now,
            person_id=identity.person_id,
            about=About(until=live.expires_at),  # a code that arrives after it runs out is no use
        )
    return True


def check_code(session: Session, web_session_id: int | None, code: str, now: datetime) -> int | None:
    """The person the code signs in, when it is the live code issued to this session; uses it up."""
    if web_session_id is None:
        return None
    live = _live_code(session, LoginCode.session_id == web_session_id, now=now)
    if live is None:
        return None
    live.attempts += 1
    if live.attempts > CODE_ATTEMPTS:
        live.expires_at = now
        live.code = None
        return None
    if not hmac.compare_digest(live.code_hash, _code_hash(live.id, code.strip())):
        return None
    live.used_at = now
    live.code = None
    return live.person_id
