"""The overdue digest: every working morning (and on demand), who is late, on what, by how much.

Per unit: what it owes past its deadline (task labels and short titles), how
many days late, how far the escalation ladder has climbed, and who cannot be
reached; then totals and what changed since the previous morning's digest.
A long digest is split at the platform's message limit between units, never
inside a unit's block unless that one block is itself too long.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config import PersonRole, Settings
from core.notices import days_late, task_view
from core.outbox import TEXT_LIMITS, About, Message, enqueue, split_text
from core.workdays import CalendarNotCovered, WorkCalendar
from messages import Messages
from storage.models import Binding, DigestRun, Identity, OfficeChat, Plan, RungRun
from storage.queries import identities_with_role, overdue_rows

log = logging.getLogger("duban.digest")
RUNG_ORDER = [PersonRole.LIAISON.value, PersonRole.HEAD.value, PersonRole.OFFICE.value, PersonRole.LEADER.value]


@dataclass
class UnitBlock:
    unit_id: int
    name: str
    items: list[dict[str, Any]]
    max_days_late: int
    rung: str | None
    unreachable: list[str]
    nobody_bound: bool


@dataclass
class DigestView:
    now: datetime
    units: list[UnitBlock] = field(default_factory=list)
    total: int = 0
    previous_at: datetime | None = None
    new_items: int = 0
    resolved_items: int = 0
    unreachable_people: int = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "units": {str(block.unit_id): [item["obligation_id"] for item in block.items] for block in self.units},
            "total": self.total,
        }


class Digest:
    """Builds, splits and queues the digest."""

    def __init__(self, settings: Settings, messages: Messages, calendar: WorkCalendar) -> None:
        self.settings = settings
        self.m = messages
        self.calendar = calendar

    def build(self, session: Session, plan: Plan, now: datetime) -> DigestView:
        rows = overdue_rows(session, plan.id, now)
        checkpoint_ids = {checkpoint.id for _, _, checkpoint, _ in rows}
        reached: dict[int, str] = {}
        for checkpoint_id, role in session.execute(
            select(RungRun.checkpoint_id, RungRun.role).where(
                RungRun.checkpoint_id.in_(checkpoint_ids), RungRun.outcome == "sent", RungRun.processed_at <= now
            )
        ):
            current = reached.get(checkpoint_id)
            if current is None or RUNG_ORDER.index(role) > RUNG_ORDER.index(current):
                reached[checkpoint_id] = role
        people: dict[int, list[tuple[str, bool]]] = {}
        unit_ids = {unit.id for _, _, _, unit in rows}
        for binding, identity in session.execute(
            select(Binding, Identity)
            .join(Identity, Identity.person_id == Binding.person_id)
            .where(Binding.unit_id.in_(unit_ids), Binding.revoked_at.is_(None), Binding.role.in_(("liaison", "head")))
        ):
            name = binding.person.display_name or identity.username or identity.external_id
            people.setdefault(binding.unit_id, []).append(
                (f"{name}({self.m.label('role', binding.role)})", identity.reachable)
            )
        blocks: dict[int, UnitBlock] = {}
        for obligation, task, checkpoint, unit in rows:
            block = blocks.get(unit.id)
            if block is None:
                bound = people.get(unit.id, [])
                block = UnitBlock(
                    unit_id=unit.id,
                    name=unit.name,
                    items=[],
                    max_days_late=0,
                    rung=None,
                    unreachable=sorted({name for name, reachable in bound if not reachable}),
                    nobody_bound=not bound,
                )
                blocks[unit.id] = block
            late = days_late(checkpoint.due_at, now)
            block.items.append(
                {
                    **task_view(task, self.m.language),
                    "obligation_id": obligation.id,
                    "checkpoint": checkpoint.title,
                    "late_days": late,
                    "returned": obligation.state == "returned",
                }
            )
            block.max_days_late = max(block.max_days_late, late)
            rung = reached.get(checkpoint.id)
            if rung is not None and (block.rung is None or RUNG_ORDER.index(rung) > RUNG_ORDER.index(block.rung)):
                block.rung = rung
        view = DigestView(
            now=now, units=sorted(blocks.values(), key=lambda b: (-b.max_days_late, -len(b.items), b.name))
        )
        view.total = len(rows)
        view.unreachable_people = sum(len(b.unreachable) for b in view.units)
        previous = session.scalar(
            select(DigestRun)
            .where(DigestRun.plan_id == plan.id, DigestRun.scheduled.is_(True), DigestRun.at < now)
            .order_by(DigestRun.at.desc())
            .limit(1)
        )
        if previous is not None:
            before = {oid for ids in previous.snapshot.get("units", {}).values() for oid in ids}
            now_ids = {item["obligation_id"] for b in view.units for item in b.items}
            view.previous_at = previous.at
            view.new_items = len(now_ids - before)
            view.resolved_items = len(before - now_ids)
        return view

    def render_parts(self, view: DigestView, limit: int, unit: str = "chars") -> list[str]:
        """The digest as messages no longer than ``limit``; a unit's block stays whole when it fits."""
        if not view.units:
            return [self.m.render("digest_empty", view=view)]
        header = self.m.render("digest_header", view=view)
        blocks = [self.m.render("digest_unit", block=block, role=self._rung_label(block.rung)) for block in view.units]
        footer = self.m.render("digest_footer", view=view)
        measure = (lambda text: len(text.encode("utf-8"))) if unit == "bytes" else len
        parts: list[str] = []
        current = header
        continued = self.m.render("digest_continued")
        for block in [*blocks, footer]:
            candidate = f"{current}\n\n{block}"
            if measure(candidate) <= limit:
                current = candidate
                continue
            parts.append(current)
            current = f"{continued}\n\n{block}"
            if measure(current) > limit:  # one unit's block alone is too long: cut it at line ends
                pieces = split_text(current, limit, unit)
                parts += pieces[:-1]
                current = pieces[-1]
        parts.append(current)
        return parts

    def _rung_label(self, rung: str | None) -> str | None:
        return self.m.label("role", rung) if rung else None

    def targets(self, session: Session, plan: Plan) -> list[tuple[str, str, int | None]]:
        """(platform, chat id, person id) of every office-role identity and configured group chat."""
        targets: list[tuple[str, str, int | None]] = [
            (identity.platform, identity.chat_id, identity.person_id)
            for _, identity in identities_with_role(session, plan.jurisdiction_id, PersonRole.OFFICE.value)
            if identity.reachable
        ]
        for chat in self.settings.digest.chats:
            platform, _, chat_id = chat.partition(":")
            targets.append((platform, chat_id, None))
        added = session.scalars(select(OfficeChat).where(OfficeChat.jurisdiction_id == plan.jurisdiction_id))
        targets += [(chat.platform, chat.chat_id, None) for chat in added.all()]
        return list(dict.fromkeys(targets))

    def queue(
        self,
        session: Session,
        view: DigestView,
        targets: list[tuple[str, str, int | None]],
        *,
        key: str,
        now: datetime,
        reply_to: str | None = None,
    ) -> list[int]:
        ids: list[int] = []
        for platform, chat_id, person_id in targets:
            limit, unit = TEXT_LIMITS.get(platform, (self.settings.digest.max_message_chars, "chars"))
            limit = min(limit, self.settings.digest.max_message_chars) if unit == "chars" else limit
            fmt = "markdown" if platform == "wecom_robot" else "text"
            for number, part in enumerate(self.render_parts(view, limit, unit), start=1):
                queued = enqueue(
                    session,
                    platform=platform,
                    chat_id=chat_id,
                    kind="digest",
                    dedup_key=f"{key}:{platform}:{chat_id}:{number}",
                    message=Message(text=part, reply_to=reply_to if number == 1 else None, format=fmt),
                    now=now,
                    person_id=person_id,
                    about=About(),
                )
                if queued is not None:
                    ids.append(queued)
        return ids

    def send_scheduled(self, session: Session, plan: Plan, now: datetime) -> list[int]:
        """The working-morning digest; nothing on a non-working day; once per day whatever restarts."""
        local_day = now.astimezone(self.settings.tz).date()
        try:
            if not self.calendar.is_workday(local_day):
                return []
        except CalendarNotCovered as exc:
            log.error("no digest today: %s", exc)
            return []
        view = self.build(session, plan, now)
        ids = self.queue(
            session, view, self.targets(session, plan), key=f"digest:{plan.id}:{local_day.isoformat()}", now=now
        )
        if ids:
            session.add(DigestRun(plan_id=plan.id, at=now, scheduled=True, snapshot=view.snapshot()))
        return ids
