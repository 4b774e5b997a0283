"""One-time binding codes: the office issues them, a person presents one once and is bound.

Codes are ten characters a liaison can type on a phone: capitals and digits
without the ones people mistake for each other (no I, L, O, 0, 1), about 50
random bits — enough for a code that expires, works once and is looked up by
its SHA-256 hash only.  They fit a Telegram deep link (at most 64 characters of
``[A-Za-z0-9_-]``).  What a person types is read forgivingly: lower case,
spaces and dashes are fine.  Binding creates the person and their platform identity; a
liaison or head binding to a new unit replaces the old one of the same role.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config import PersonRole, Settings
from storage.models import AuditLog, Binding, BindingCode, Identity, OfficeChat, Person, Plan, Unit
from storage.queries import active_bindings, find_identity

CODE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 10
EXCLUSIVE_ROLES = {PersonRole.LIAISON.value, PersonRole.HEAD.value}


class BindRefusal(StrEnum):
    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"


@dataclass
class IssuedCode:
    code: str
    unit: Unit
    role: PersonRole
    expires_at: datetime


@dataclass
class BindResult:
    binding: Binding | None = None
    identity: Identity | None = None
    refusal: BindRefusal | None = None
    replaced: list[Binding] | None = None


def hash_code(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def telegram_link(settings: Settings, code: str) -> str | None:
    """The Telegram deep link that binds with ``code`` (None until ``[telegram] bot_username`` is set)."""
    username = settings.telegram.bot_username
    return f"https://t.me/{username}?start={code}" if username else None


def _typed_forms(code: str) -> list[str]:
    """The code as presented, then as a phone code read forgivingly (ab cd-ef… → ABCDEF…)."""
    forms = [code.strip()]
    typed = re.sub(r"[\s-]+", "", code).upper()
    if typed not in forms and all(c in CODE_ALPHABET for c in typed):
        forms.append(typed)
    return [f for f in forms if CODE_PATTERN.match(f)]


def issue_code(
    session: Session, unit: Unit, role: PersonRole, *, now: datetime, ttl: timedelta, created_by: str
) -> IssuedCode:
    code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    expires_at = now + ttl
    session.add(
        BindingCode(
            code_hash=hash_code(code),
            unit_id=unit.id,
            role=role.value,
            created_at=now,
            expires_at=expires_at,
            created_by=created_by,
        )
    )
    session.add(AuditLog(at=now, actor=created_by, action="code.issue", subject=unit.name, detail={"role": role.value}))
    session.flush()
    return IssuedCode(code=code, unit=unit, role=role, expires_at=expires_at)


def redeem_code(
    session: Session,
    code: str,
    *,
    platform: str,
    user_id: str,
    chat_id: str,
    display_name: str,
    username: str,
    now: datetime,
) -> BindResult:
    """Bind whoever presents ``code``; a used, expired or unknown code binds nothing."""
    forms = _typed_forms(code)
    if not forms:
        return BindResult(refusal=BindRefusal.UNKNOWN)
    stored = session.scalar(
        select(BindingCode).where(BindingCode.code_hash.in_([hash_code(f) for f in forms])).with_for_update()
    )
    if stored is None:
        return BindResult(refusal=BindRefusal.UNKNOWN)
    if stored.used_at is not None:
        return BindResult(refusal=BindRefusal.USED)
    if stored.expires_at <= now:
        return BindResult(refusal=BindRefusal.EXPIRED)

    identity = find_identity(session, platform, user_id)
    if identity is None:
        person = Person(display_name=display_name, created_at=now)
        session.add(person)
        session.flush()
        identity = Identity(
            person_id=person.id,
            platform=platform,
            external_id=user_id,
            chat_id=chat_id,
            username=username,
            created_at=now,
        )
        session.add(identity)
    else:
        identity.chat_id = chat_id
        identity.username = username or identity.username
        identity.reachable = True
        identity.unreachable_reason = None
        if display_name:
            identity.person.display_name = display_name
    session.flush()

    replaced = []
    for existing in active_bindings(session, identity.person_id):
        same_unit_role = existing.unit_id == stored.unit_id and existing.role == stored.role
        if same_unit_role or (stored.role in EXCLUSIVE_ROLES and existing.role == stored.role):
            existing.revoked_at = now
            replaced.append(existing)
    binding = Binding(
        person_id=identity.person_id, unit_id=stored.unit_id, role=stored.role, code_id=stored.id, created_at=now
    )
    session.add(binding)
    stored.used_at = now
    stored.used_by_person_id = identity.person_id
    session.flush()
    session.add(
        AuditLog(
            at=now,
            actor=f"{platform}:{user_id}",
            action="bind",
            subject=stored.unit.name,
            detail={"role": stored.role, "person_id": identity.person_id, "replaced": [b.id for b in replaced]},
        )
    )
    return BindResult(binding=binding, identity=identity, replaced=replaced)


def add_office_chat(
    session: Session, *, platform: str, chat_id: str, jurisdiction_id: int, person_id: int, now: datetime
) -> bool:
    """Make a group chat an office group chat of the jurisdiction; False when it already was one."""
    existing = session.scalar(select(OfficeChat).where(OfficeChat.platform == platform, OfficeChat.chat_id == chat_id))
    if existing is not None:
        return False
    session.add(
        OfficeChat(
            platform=platform,
            chat_id=chat_id,
            jurisdiction_id=jurisdiction_id,
            added_by_person_id=person_id,
            added_at=now,
        )
    )
    session.add(
        AuditLog(at=now, actor=f"person:{person_id}", action="office_chat.add", subject=f"{platform}:{chat_id}")
    )
    session.flush()
    return True


def unbind(session: Session, identity: Identity, *, now: datetime) -> list[Binding]:
    """Revoke every binding of the person behind this identity."""
    revoked = active_bindings(session, identity.person_id)
    for binding in revoked:
        binding.revoked_at = now
    if revoked:
        session.add(
            AuditLog(
                at=now,
                actor=f"{identity.platform}:{identity.external_id}",
                action="unbind",
                subject=", ".join(b.unit.name for b in revoked),
                detail={"person_id": identity.person_id},
            )
        )
    return revoked


def invite(
    session: Session,
    settings: Settings,
    unit_name: str,
    role: str,
    *,
    now: datetime,
    created_by: str,
    plan: Plan | None = None,
) -> IssuedCode | None:
    """A code for a unit named as people write it (name or alias) in the plan's (or the configured) jurisdiction."""
    from core.runtime import current_plan
    from storage.queries import find_unit

    if role not in {r.value for r in PersonRole}:
        return None
    plan = plan or current_plan(session, settings)
    unit = find_unit(session, plan.jurisdiction_id, unit_name) if plan else None
    if unit is None:
        return None
    return issue_code(session, unit, PersonRole(role), now=now, ttl=settings.binding.code_ttl, created_by=created_by)
