"""The office's on-demand requests in chat: /digest now, /export a notification file."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config import Settings
from core.conversation import Incoming
from core.digest import Digest
from core.documents import FILE_FORMATS, export, file_format, stored_notification
from core.outbox import Message, enqueue
from core.records import round_archive_name, round_files, write_round_archive
from messages import Messages
from storage.models import Checkpoint, Plan

ARCHIVE_FORMAT = "zip"


class OfficeRequests:
    """Registered with the conversation core as its ``on_office_request``."""

    def __init__(self, settings: Settings, messages: Messages, digest: Digest) -> None:
        self.settings = settings
        self.m = messages
        self.digest = digest

    def __call__(
        self, session: Session, what: str, plan: Plan, incoming: Incoming, args: list[str], now: datetime
    ) -> list[int] | str:
        if what == "digest":
            view = self.digest.build(session, plan, now)
            target: list[tuple[str, str, int | None]] = [(incoming.platform, incoming.chat_id, None)]
            return self.digest.queue(
                session,
                view,
                target,
                key=f"digest-now:{incoming.platform}:{incoming.update_key}",
                now=now,
                reply_to=incoming.message_id,
            )
        if what == "export":
            return self._export(session, plan, incoming, args, now)
        return f"unknown request {what}"

    def _export(
        self, session: Session, plan: Plan, incoming: Incoming, args: list[str], now: datetime
    ) -> list[int] | str:
        keys = list(
            session.scalars(
                select(Checkpoint.key)
                .where(Checkpoint.plan_id == plan.id, Checkpoint.cancelled_at.is_(None))
                .order_by(Checkpoint.due_at)
            )
        )
        key = args[0] if args else ""
        fmt = args[1].lower() if len(args) > 1 else "xlsx"
        formats = (*FILE_FORMATS, ARCHIVE_FORMAT)
        if key not in [*keys, "year"] or fmt not in formats or (fmt == ARCHIVE_FORMAT and key == "year"):
            return self.m.render(
                "export_usage",
                usage=self.m.label("usage", "export"),
                keys=keys,
                bad_format=fmt not in formats,
                formats=formats,
            )
        folder = self.settings.path(self.settings.service.data_dir) / "exports"
        folder.mkdir(parents=True, exist_ok=True)
        if fmt == ARCHIVE_FORMAT:  # every file units sent for the round, named by unit and task
            entries = round_files(session, plan, key) or []
            path = write_round_archive(entries, folder / round_archive_name(plan, key))
        else:
            round_key = None if key == "year" else key
            # The round's XLSX as the quarter-end job sent it, while no answer changed since.
            path = stored_notification(session, self.settings, plan, round_key, file_format(fmt), folder) or export(
                session, self.settings, self.m, plan, round_key, file_format(fmt), now, folder
            )
        queued = enqueue(
            session,
            platform=incoming.platform,
            chat_id=incoming.chat_id,
            kind="export",
            dedup_key=f"export:{incoming.platform}:{incoming.update_key}",
            message=Message(
                text=self.m.render("export_ready", file_name=path.name, now=now),
                document={"path": str(path), "file_name": path.name},
                reply_to=incoming.message_id,
            ),
            now=now,
        )
        return [queued] if queued is not None else []


def export_folder(settings: Settings) -> Path:
    return settings.path(settings.service.data_dir) / "exports"
