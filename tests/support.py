"""Helpers that drive the conversation core directly and read what it queued."""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from core.binding import issue_code
from core.config import PersonRole
from core.conversation import Conversation, Handled, Incoming, IncomingFile
from core.reporting import StagedFile
from core.runtime import Runtime
from messages import Messages
from storage.models import OutboxMessage
from storage.queries import find_unit

_updates = itertools.count(1)


def make_conversation(runtime: Runtime) -> Conversation:
    settings = runtime.settings
    return Conversation(settings, runtime.sessions, runtime.clock, Messages(settings.service.language, settings.tz))


def invite(runtime: Runtime, unit_name: str, role: PersonRole = PersonRole.LIAISON) -> str:
    with runtime.transaction() as session:
        from core.runtime import current_plan

        plan = current_plan(session, runtime.settings)
        assert plan is not None
        unit = find_unit(session, plan.jurisdiction_id, unit_name)
        assert unit is not None, unit_name
        return issue_code(
            session, unit, role, now=runtime.clock.now(), ttl=runtime.settings.binding.code_ttl, created_by="test"
        ).code


def say(
    conversation: Conversation,
    user: int,
    text: str = "",
    *,
    reply_to: str | None = None,
    callback: str | None = None,
    files: tuple[IncomingFile, ...] = (),
    edited: bool = False,
    update_key: str | None = None,
    platform: str = "sandbox",
) -> Handled:
    key = update_key or f"u{next(_updates)}"
    return conversation.handle(
        Incoming(
            platform=platform,
            user_id=str(user),
            chat_id=str(user),
            update_key=key,
            message_id=f"m-{key}",
            text=text,
            reply_to=reply_to,
            callback=callback,
            button_message_id="menu" if callback else None,
            files=files,
            display_name=f"用户{user}",
            edited=edited,
        )
    )


def outbox(runtime: Runtime, chat: int | str | None = None, *, kind: str | None = None) -> list[OutboxMessage]:
    with runtime.transaction() as session:
        query = select(OutboxMessage).order_by(OutboxMessage.id)
        if chat is not None:
            query = query.where(OutboxMessage.chat_id == str(chat))
        if kind is not None:
            query = query.where(OutboxMessage.kind == kind)
        return list(session.scalars(query))


def last_text(runtime: Runtime, chat: int | str) -> str:
    rows = outbox(runtime, chat)
    assert rows, f"nothing queued for {chat}"
    return rows[-1].payload["text"]


def last_buttons(runtime: Runtime, chat: int | str) -> list[dict[str, Any]]:
    rows = outbox(runtime, chat)
    return [b for row in rows[-1].payload.get("buttons", []) for b in row]


def mark_sent(runtime: Runtime, outbox_id: int, platform_message_id: str, at: datetime | None = None) -> None:
    with runtime.transaction() as session:
        row = session.get(OutboxMessage, outbox_id)
        assert row is not None
        row.state = "sent"
        row.platform_message_id = platform_message_id
        row.sent_at = at or runtime.clock.now()


def staged_file(folder: Path, name: str, content: bytes = b"%PDF-1.4 refined plan") -> IncomingFile:
    """A PDF as an adapter hands it to the core: downloaded into ``folder`` and described."""
    path = folder / f"staged-{name}"
    path.write_bytes(content)
    stage = StagedFile(
        file_name=name,
        size=len(content),
        mime_type="application/pdf",
        file_id=f"file-{name}",
        file_unique_id=f"u-{name}",
        staged_path=path,
        sha256=StagedFile.digest(path),
        platform="sandbox",
    )
    return IncomingFile(
        file_id=stage.file_id, file_name=name, size=len(content), mime_type="application/pdf", staged=stage
    )


def report_figures(
    session: Any,
    settings: Any,
    task_ref: str,
    figures: dict[str, float],
    at: datetime,
    *,
    note: str = "完成情况见数字",
    checkpoint_key: str | None = None,
) -> None:
    """The task's lead unit reports (to the named round, else the one the core picks), with a figure per metric."""
    from core.progress import record_values
    from core.reporting import StatusCode, record_report
    from core.tasks import parse_task_ref
    from storage.models import Checkpoint, Target, Task

    ref = parse_task_ref(task_ref)
    assert ref is not None, task_ref
    task = session.scalar(select(Task).where(Task.annex == ref[0].value, Task.number == ref[1]))
    assert task is not None, task_ref
    lead = next(a.unit for a in task.assignments if a.role == "lead" and a.active)
    checkpoint = (
        session.scalar(select(Checkpoint.id).where(Checkpoint.key == checkpoint_key)) if checkpoint_key else None
    )
    recorded = record_report(
        session,
        task=task,
        unit=lead,
        person_id=None,
        status=StatusCode.ON_TRACK,
        note=note,
        files=[],
        platform="sandbox",
        platform_message_id=None,
        via="test",
        now=at,
        uploads_dir=settings.uploads.dir,
        checkpoint_id=checkpoint,
    )
    ids = {t.metric: t.id for t in session.scalars(select(Target).where(Target.task_id == task.id))}
    record_values(session, recorded.report, {ids[m]: v for m, v in figures.items()}, reported_at=at)
