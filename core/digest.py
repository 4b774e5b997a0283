"""The overdue digest: every working morning (and on demand), who is late, on what, by how much.

Per unit: what it owes past its deadline (task labels and short titles), how
many days late, how far the escalation ladder has climbed, and who cannot be
reached; then totals and what changed since the previous morning's digest.

A chat answer is one screen: the totals, the change since the previous digest
and the worst units; the full list goes with it as an XLSX file (and a link to
the dashboard where one is configured).  On WeCom every message counts against
a member's 30 a minute and 1,000 an hour, so a digest of hundreds of messages
would crowd out the reminders themselves.  /overdue answers the same way, and
narrows to one unit or one task on request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config import PersonRole, Settings
from core.documents import Cell, write_table_xlsx
from core.notices import days_late, task_view
from core.outbox import About, Message, enqueue
from core.workdays import CalendarNotCovered, WorkCalendar
from messages import Messages
from storage.models import Binding, DigestRun, Identity, OfficeChat, Plan, RungRun
from storage.queries import identities_with_role, overdue_rows

log = logging.getLogger("duban.digest")
RUNG_ORDER = [PersonRole.LIAISON.value, PersonRole.HEAD.value, PersonRole.OFFICE.value, PersonRole.LEADER.value]
SCREEN_UNITS = 5  # the worst units a chat answer names; the rest are in the file
SCREEN_ITEMS = 10  # one unit's or one task's overdue items shown in chat


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
        return build_view(session, self.m, plan, now)

    def render_summary(self, view: DigestView, *, file_name: str | None) -> str:
        """The digest as one screen: totals, change, the worst units, and where the full list is."""
        if not view.units:
            return self.m.render("digest_empty", view=view)
        return self.m.render(
            "digest_header",
            view=view,
            worst=[(block, self._rung_label(block.rung)) for block in view.units[:SCREEN_UNITS]],
            more=max(0, len(view.units) - SCREEN_UNITS),
            file_name=file_name,
            link=dashboard_link(self.settings),
        )

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
        until: datetime | None = None,
    ) -> list[int]:
        """One message per target: the screen-long summary, with the full list as an XLSX file.

        ``until``: when it stops mattering (the scheduled digest: the next one); None: the outbox's day.
        """
        document = None
        if view.units and targets:
            path = overdue_file(view, self.settings.path(self.settings.service.data_dir) / "exports", self.m)
            document = {"path": str(path), "file_name": path.name}
        text = self.render_summary(view, file_name=document["file_name"] if document else None)
        ids: list[int] = []
        for platform, chat_id, person_id in targets:
            queued = enqueue(
                session,
                platform=platform,
                chat_id=chat_id,
                kind="digest",
                dedup_key=f"{key}:{platform}:{chat_id}",
                message=Message(
                    text=text,
                    reply_to=reply_to,
                    document=document,
                    format="markdown" if platform == "wecom_robot" else "text",
                ),
                now=now,
                person_id=person_id,
                about=About(until=until),
            )
            if queued is not None:
                ids.append(queued)
        return ids

    def next_digest_at(self, day: date) -> datetime | None:
        """When the digest after ``day``'s goes out (the next working day's digest time); None past the calendar.

        A morning digest delivered once the next one is out would only repeat an older list.
        """
        following = day
        try:
            for _ in range(60):
                following += timedelta(days=1)
                if self.calendar.is_workday(following):
                    return datetime.combine(following, self.settings.digest.time, tzinfo=self.settings.tz)
        except CalendarNotCovered:
            return None
        return None

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
            session,
            view,
            self.targets(session, plan),
            key=f"digest:{plan.id}:{local_day.isoformat()}",
            now=now,
            until=self.next_digest_at(local_day),
        )
        if ids:
            session.add(DigestRun(plan_id=plan.id, at=now, scheduled=True, snapshot=view.snapshot()))
        return ids


def build_view(
    session: Session,
    messages: Messages,
    plan: Plan,
    now: datetime,
    *,
    unit_id: int | None = None,
    task_id: int | None = None,
) -> DigestView:
    """Who owes what past its deadline, worst first; narrowed to one unit or one task when asked."""
    rows = [
        row
        for row in overdue_rows(session, plan.id, now)
        if (unit_id is None or row[3].id == unit_id) and (task_id is None or row[1].id == task_id)
    ]
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
            (f"{name}({messages.label('role', binding.role)})", identity.reachable)
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
                **task_view(task, messages.language),
                "obligation_id": obligation.id,
                "checkpoint": checkpoint.title,
                "due": checkpoint.due_at,
                "late_days": late,
                "returned": obligation.state == "returned",
            }
        )
        block.max_days_late = max(block.max_days_late, late)
        rung = reached.get(checkpoint.id)
        if rung is not None and (block.rung is None or RUNG_ORDER.index(rung) > RUNG_ORDER.index(block.rung)):
            block.rung = rung
    view = DigestView(now=now, units=sorted(blocks.values(), key=lambda b: (-b.max_days_late, -len(b.items), b.name)))
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


def dashboard_link(settings: Settings) -> str | None:
    """The dashboard's overview, where the office sees every list in full (None without a public URL)."""
    return f"{settings.web.public_url.rstrip('/')}/office" if settings.web.public_url else None


def overdue_file(view: DigestView, folder: Path, messages: Messages, *, scope: str = "") -> Path:
    """The full overdue list as an XLSX file in ``folder``: one row per unit and task."""
    stamp = view.now.astimezone(messages.tz).strftime("%Y%m%d-%H%M")
    name = messages.render("overdue_file_name", scope=scope, stamp=stamp)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for block in view.units:
        reach = messages.label("overdue_reach", "nobody") if block.nobody_bound else "、".join(block.unreachable)
        rung = messages.label("role", block.rung) if block.rung else ""
        for item in block.items:
            rows.append(
                [
                    Cell(block.name),
                    Cell(item["label"], "center"),
                    Cell(item["text"], "wrap"),
                    Cell(item["checkpoint"]),
                    Cell(item["due"], "datetime"),
                    Cell(item["late_days"], "int"),
                    Cell(messages.label("state", "returned") if item["returned"] else ""),
                    Cell(rung),
                    Cell(reach),
                ]
            )
    columns = messages.labels("overdue_columns")
    sheet = messages.label("overdue_sheet", "title")
    title = f"{sheet} {messages.local(view.now)}{' ' + scope if scope else ''}"
    return write_table_xlsx(folder / name, messages, sheet, title, list(columns.values()), rows)
