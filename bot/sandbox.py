"""The local sandbox chat: one more platform adapter, in the browser, needing no credentials.

A person picks a unit and a role (or types an invite code) and chats with the
bot as that person: the same commands, buttons as buttons, replies to a
message, file upload, and reminders from the scheduler arriving live (Server-
Sent Events).  The bot's side is :class:`SandboxTransport`, an outbox
transport that writes the message into the ``sandbox_message`` table and wakes
the browser.  Only served on a loopback address.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

from core import inbox
from core.binding import invite
from core.config import PersonRole
from core.conversation import Conversation, Handled, Incoming, IncomingFile, file_refusal
from core.inbox import Received
from core.reporting import FileNotStored, StagedFile
from core.runtime import current_plan
from jobs.pacing import SendLimits
from jobs.sender import Delivered, OutgoingRow
from messages import Messages
from storage.models import Attachment, OutboxMessage, SandboxMessage, Unit
from storage.queries import active_bindings, find_identity
from storage.threads import DatabaseThreads

if TYPE_CHECKING:
    from bot.service import Service
    from bot.webui import WebUI
    from core.runtime import Runtime

log = logging.getLogger("duban.sandbox")

PLATFORM = "sandbox"
PERSONA_COOKIE = "duban_sandbox"
KEEPALIVE_SECONDS = 15.0


class SandboxHub:
    """Wakes the browsers watching a chat when the bot writes to it."""

    def __init__(self) -> None:
        self._listeners: dict[str, set[asyncio.Queue[int]]] = defaultdict(set)

    def publish(self, chat_id: str, message_id: int) -> None:
        for queue in list(self._listeners.get(chat_id, ())):
            queue.put_nowait(message_id)

    @contextmanager
    def subscription(self, chat_id: str) -> Iterator[asyncio.Queue[int]]:
        """A queue of the ids of messages written to ``chat_id`` while the ``with`` block lasts."""
        queue: asyncio.Queue[int] = asyncio.Queue()
        self._listeners[chat_id].add(queue)
        try:
            yield queue
        finally:
            self._listeners[chat_id].discard(queue)
            if not self._listeners[chat_id]:
                del self._listeners[chat_id]

    def watching(self, chat_id: str) -> int:
        """How many browsers watch the chat (for tests and metrics)."""
        return len(self._listeners.get(chat_id, ()))


async def event_stream(
    hub: SandboxHub, chat_id: str, is_disconnected: Callable[[], Awaitable[bool]], keepalive: float
) -> AsyncIterator[bytes]:
    """Server-Sent Events for one chat: a line per new message, a comment while idle.

    A queue read with a timeout, not an async generator raced against one: a
    cancelled ``anext()`` closes the generator and the next read raises
    ``StopAsyncIteration`` (Python turns it into a RuntimeError).  A browser
    that goes away ends the stream quietly.
    """
    with hub.subscription(chat_id) as queue:
        yield b": connected\n\n"
        while True:
            try:
                message_id = await asyncio.wait_for(queue.get(), keepalive)
            except TimeoutError:
                if await is_disconnected():
                    return
                yield b": keep-alive\n\n"
                continue
            yield f"data: {json.dumps({'id': message_id})}\n\n".encode()


class SandboxTransport:
    """The outbox's sandbox platform: a bot message is a row the chat page shows."""

    platform = PLATFORM
    limits = SendLimits()

    def __init__(self, runtime: Runtime, hub: SandboxHub, threads: DatabaseThreads) -> None:
        self.runtime = runtime
        self.hub = hub
        self.threads = threads

    async def send(self, row: OutgoingRow) -> Delivered:
        message_id = await self.threads.run(self._write, row)
        self.hub.publish(row.chat_id, message_id)
        return Delivered(str(message_id))

    def _write(self, row: OutgoingRow) -> int:
        payload = row.payload
        now = self.runtime.clock.now()
        files = [{"name": payload["document"]["file_name"], "outbox_id": row.id}] if payload.get("document") else None
        with self.runtime.transaction() as session:
            edit_of = payload.get("edit_of")
            if edit_of and str(edit_of).isdigit():
                existing = session.get(SandboxMessage, int(edit_of))
                if existing is not None and existing.chat_id == row.chat_id:
                    if not payload.get("close"):  # closing keeps the text and takes the buttons off
                        existing.text = payload["text"]
                    existing.buttons = None if payload.get("close") else payload.get("buttons")
                    existing.edited_at = now
                    return existing.id
            message = SandboxMessage(
                chat_id=row.chat_id,
                direction="out",
                text=payload["text"],
                buttons=payload.get("buttons"),
                reply_to=int(payload["reply_to"]) if str(payload.get("reply_to") or "").isdigit() else None,
                files=files,
                created_at=now,
            )
            session.add(message)
            session.flush()
            return message.id


class SandboxReader:
    """The inbox's sandbox platform: a stored chat post or button press back into an Incoming."""

    platform = PLATFORM
    refetches_files = False  # the upload was staged once; a retry uses the same file

    def __init__(self, conversation: Conversation) -> None:
        self.conversation = conversation

    async def read(self, payload: dict[str, Any]) -> Incoming | None:
        files = tuple(
            IncomingFile(
                file_id=f["file_id"],
                file_name=f["file_name"],
                size=f["size"],
                mime_type=f.get("mime_type", ""),
                file_unique_id=f.get("file_unique_id", ""),
                staged=StagedFile(**{**f["staged"], "staged_path": Path(f["staged"]["staged_path"])})
                if f.get("staged")
                else None,
            )
            for f in payload.get("files", [])
        )
        return Incoming(
            platform=PLATFORM,
            user_id=payload["persona"],
            chat_id=payload["persona"],
            update_key=payload["update_key"],
            message_id=payload.get("message_id"),
            text=payload.get("text", ""),
            reply_to=payload.get("reply_to"),
            callback=payload.get("callback"),
            button_message_id=payload.get("button_message_id"),
            files=files,
            display_name=payload.get("name", ""),
        )

    async def answered(self, payload: dict[str, Any], handled: Handled) -> None:
        """The browser gets its answer through the chat's event stream."""


def _file_json(file: IncomingFile) -> dict[str, Any]:
    staged = file.staged
    return {
        "file_id": file.file_id,
        "file_name": file.file_name,
        "size": file.size,
        "mime_type": file.mime_type,
        "file_unique_id": file.file_unique_id,
        "staged": {**staged.__dict__, "staged_path": str(staged.staged_path)} if staged else None,
    }


MAX_ROW_ID = 2**63 - 1  # the databases' integer keys; a larger number names no row


def _row_id(value: object) -> int | None:
    """A row id from a path or query; None when it cannot name a row (too big, negative, not a number)."""
    try:
        number = int(str(value))
    except ValueError:
        return None
    return number if 0 <= number <= MAX_ROW_ID else None


def _persona(request: Request) -> str | None:
    value = request.cookies.get(PERSONA_COOKIE, "")
    return value if value.startswith("sb-") and len(value) <= 40 else None


def _files_view(message: SandboxMessage, stored: set[str]) -> list[dict[str, Any]]:
    """The message's files as the page shows them: name, size and a link where there is one to follow.

    A file the bot sent links to its outbox row; a file the person sent links
    to the report attachment it became (none if it was refused or dropped).
    """
    shown = []
    for raw in message.files or []:
        if not isinstance(raw, dict):
            continue
        href = None
        if raw.get("outbox_id"):
            href = f"/sandbox/file/{raw['outbox_id']}"
        elif raw.get("file_id") in stored:
            href = f"/sandbox/upload/{raw['file_id']}"
        size = raw.get("size")
        shown.append(
            {"name": str(raw.get("name") or "?"), "size": size if isinstance(size, int) else None, "href": href}
        )
    return shown


def _message_json(message: SandboxMessage, messages: Messages, now: datetime, stored: set[str]) -> dict[str, Any]:
    return {
        "id": message.id,
        "direction": message.direction,
        "text": message.text or "",
        "buttons": message.buttons or [],
        "reply_to": message.reply_to,
        "files": _files_view(message, stored),
        "at": messages.when(message.created_at, now),
        "at_iso": message.created_at.isoformat(),
        "edited": message.edited_at is not None,
    }


def _stored_uploads(session: Session, rows: Sequence[SandboxMessage]) -> set[str]:
    """Which of these messages' sent files were kept as report attachments."""
    ids = [f["file_id"] for m in rows for f in m.files or [] if isinstance(f, dict) and f.get("file_id")]
    if not ids:
        return set()
    return set(
        session.scalars(select(Attachment.file_id).where(Attachment.platform == PLATFORM, Attachment.file_id.in_(ids)))
    )


class SandboxRoutes:
    """The sandbox pages and their form and event endpoints."""

    def __init__(self, service: Service, hub: SandboxHub, ui: WebUI) -> None:
        self.service = service
        self.hub = hub
        self.ui = ui
        self.settings = service.settings

    @property
    def quick_join(self) -> bool:
        """Picking a unit without a code is a demo convenience, only with no real platform configured."""
        return not (self.settings.telegram.enabled or self.settings.wecom.enabled)

    async def home(self, request: Request) -> Response:
        persona = _persona(request)
        whoami = await self.service.threads.run(self._whoami, persona) if persona else []
        if persona and whoami:
            return RedirectResponse("/chat", status_code=303)
        units = await self.service.threads.run(self._units)
        return await self.ui.page(
            request,
            "sandbox_join.html.j2",
            units=units,
            roles=[(r.value, self.service.messages.label("role", r.value)) for r in PersonRole],
            quick_join=self.quick_join,
            error=request.query_params.get("error"),
        )

    def _units(self) -> list[str]:
        with self.service.runtime.transaction() as session:
            plan = current_plan(session, self.settings)
            if plan is None:
                return []
            return list(
                session.scalars(select(Unit.name).where(Unit.jurisdiction_id == plan.jurisdiction_id).order_by(Unit.id))
            )

    def _whoami(self, persona: str) -> list[str]:
        with self.service.runtime.transaction() as session:
            identity = find_identity(session, PLATFORM, persona)
            if identity is None:
                return []
            return [
                f"{b.unit.name} · {self.service.messages.label('role', b.role)}"
                for b in active_bindings(session, identity.person_id)
            ]

    async def join(self, request: Request) -> Response:
        form = await request.form()
        if not await self.ui.csrf_ok(request, form):
            return PlainTextResponse("forbidden", status_code=403)
        persona = _persona(request) or f"sb-{uuid.uuid4().hex[:12]}"
        name = str(form.get("name") or "").strip()[:40] or "沙盒用户"
        code = str(form.get("code") or "").strip()
        if not code:
            if not self.quick_join:
                return RedirectResponse("/?error=code", status_code=303)
            issued = await self.service.threads.run(
                self._quick_code, str(form.get("unit") or ""), str(form.get("role") or "liaison")
            )
            if issued is None:
                return RedirectResponse("/?error=unit", status_code=303)
            code = issued
        await self._say(persona, name, f"/start {code}")
        response = RedirectResponse("/chat", status_code=303)
        response.set_cookie(PERSONA_COOKIE, persona, httponly=True, samesite="lax", max_age=30 * 86400)
        return response

    def _quick_code(self, unit_name: str, role: str) -> str | None:
        with self.service.runtime.transaction() as session:
            issued = invite(
                session, self.settings, unit_name, role, now=self.service.runtime.clock.now(), created_by="sandbox"
            )
            return issued.code if issued else None

    async def leave(self, request: Request) -> Response:
        form = await request.form()
        if not await self.ui.csrf_ok(request, form):
            return PlainTextResponse("forbidden", status_code=403)
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(PERSONA_COOKIE)
        return response

    async def chat(self, request: Request) -> Response:
        persona = _persona(request)
        if persona is None:
            return RedirectResponse("/", status_code=303)
        whoami = await self.service.threads.run(self._whoami, persona)
        messages = await self.service.threads.run(self._history, persona, 0)
        return await self.ui.page(
            request,
            "sandbox_chat.html.j2",
            whoami=whoami,
            messages=[self._render(m) for m in messages],
            persona=persona,
            max_mb=self.settings.uploads.max_bytes // (1 << 20),
        )

    def _history(self, persona: str, after: int) -> list[dict[str, Any]]:
        with self.service.runtime.transaction() as session:
            rows = session.scalars(
                select(SandboxMessage)
                .where(SandboxMessage.chat_id == persona, SandboxMessage.id > after)
                .order_by(SandboxMessage.id)
            ).all()
            now = self.service.runtime.clock.now()
            stored = _stored_uploads(session, rows)
            return [_message_json(m, self.service.messages, now, stored) for m in rows]

    async def fragment(self, request: Request) -> Response:
        """One message as HTML, for the page to insert or replace when the event stream names it."""
        persona = _persona(request)
        message_id = _row_id(request.path_params["message_id"])
        if message_id is None:
            return PlainTextResponse("", status_code=404)
        message = await self.service.threads.run(self._one, persona, message_id)
        if message is None:
            return PlainTextResponse("", status_code=404)
        return HTMLResponse(self._render(message))

    async def fragments(self, request: Request) -> Response:
        """Every message after ``after``, as HTML: what the page missed before its event stream opened."""
        persona = _persona(request)
        if persona is None:
            return PlainTextResponse("", status_code=401)
        after = _row_id(request.query_params.get("after") or 0)
        if after is None:
            return PlainTextResponse("", status_code=400)
        rows = await self.service.threads.run(self._history, persona, after)
        return HTMLResponse("".join(self._render(m) for m in rows if m["id"] > after))

    def _render(self, message: dict[str, Any]) -> Markup:
        """One message as HTML; a message that cannot be shown becomes a note, never a broken page."""
        try:
            return Markup(self.ui.env.get_template("sandbox_message.html.j2").render(m=message))
        except Exception:  # one odd row must not take the whole chat down with it
            log.exception("sandbox message %s could not be rendered", message.get("id"))
            return Markup(self.ui.env.get_template("sandbox_message_broken.html.j2").render(m=message))

    def _one(self, persona: str | None, message_id: int) -> dict[str, Any] | None:
        with self.service.runtime.transaction() as session:
            message = session.get(SandboxMessage, message_id)
            if message is None or message.chat_id != persona:
                return None
            now = self.service.runtime.clock.now()
            return _message_json(message, self.service.messages, now, _stored_uploads(session, [message]))

    async def events(self, request: Request) -> Response:
        persona = _persona(request)
        if persona is None:
            return PlainTextResponse("no persona", status_code=401)

        return StreamingResponse(
            event_stream(self.hub, persona, request.is_disconnected, KEEPALIVE_SECONDS),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )

    async def send(self, request: Request) -> Response:
        persona = _persona(request)
        if persona is None:
            return JSONResponse({"error": "no persona"}, status_code=401)
        form = await request.form()
        if not await self.ui.csrf_ok(request, form):
            return JSONResponse({"error": "forbidden"}, status_code=403)
        text = str(form.get("text") or "")[:5000]
        reply_to = str(form.get("reply_to") or "") or None
        upload = form.get("file")
        files: tuple[IncomingFile, ...] = ()
        try:
            if upload is not None and hasattr(upload, "filename") and upload.filename:
                files = (await self._stage(persona, upload),)
        except FileNotStored as exc:  # nothing recorded, nothing left behind: the person sends it again
            error = self.service.messages.render("error", code="file_not_stored", detail=exc.file_name, limit="")
            return JSONResponse({"ok": False, "error": error}, status_code=507)
        finally:
            await form.close()  # the upload's temporary file, now copied to staging
        await self._say(persona, "", text, reply_to=reply_to, files=files)
        return JSONResponse({"ok": True})

    async def press(self, request: Request) -> Response:
        persona = _persona(request)
        if persona is None:
            return JSONResponse({"error": "no persona"}, status_code=401)
        form = await request.form()
        if not await self.ui.csrf_ok(request, form):
            return JSONResponse({"error": "forbidden"}, status_code=403)
        message_id = str(form.get("message_id") or "")
        data = str(form.get("data") or "")[:200]
        key = f"press-{uuid.uuid4().hex}"
        payload = {"persona": persona, "update_key": key, "callback": data, "button_message_id": message_id or None}
        try:
            handled = await self.service.inbox.handle_now(Received(PLATFORM, key, payload, persona, persona))
        except Exception:  # not stored: the press did nothing, and the page may say so
            return JSONResponse({"ok": False, "error": self.service.messages.render("inbound_failed", reference="—")})
        return JSONResponse({"ok": True, "toast": handled.toast if handled else None})

    async def _stage(self, persona: str, upload: Any) -> IncomingFile:
        """Stream an upload to the staging folder, stopping at the size cap (nothing kept over it)."""
        name = Path(upload.filename).name[:200]
        limit = self.settings.uploads.max_bytes
        declared = IncomingFile(file_id=f"sandbox-{uuid.uuid4().hex}", file_name=name, size=0)
        if file_refusal(self.settings, declared):  # wrong type: don't even read it
            return declared
        size = 0
        with self.service.conversation.stage(name) as target:
            with target.open("wb") as handle:
                while chunk := await upload.read(1 << 16):
                    size += len(chunk)
                    if size > limit:
                        break
                    handle.write(chunk)
            if size > limit:
                target.unlink(missing_ok=True)
                return IncomingFile(declared.file_id, name, size)
            sha256 = await asyncio.to_thread(StagedFile.digest, target)
        staged = StagedFile(
            file_name=name,
            size=size,
            mime_type=getattr(upload, "content_type", "") or "",
            file_id=declared.file_id,
            file_unique_id=declared.file_id,
            staged_path=target,
            sha256=sha256,
            platform=PLATFORM,
        )
        return IncomingFile(declared.file_id, name, size, staged.mime_type, declared.file_id, staged)

    async def _say(
        self, persona: str, name: str, text: str, *, reply_to: str | None = None, files: tuple[IncomingFile, ...] = ()
    ) -> None:
        message_id, received, update_id = await self.service.threads.run(
            self._record_in, persona, name, text, reply_to, files
        )
        self.hub.publish(persona, message_id)
        await self.service.inbox.handle_stored(update_id, received)

    def _record_in(
        self, persona: str, name: str, text: str, reply_to: str | None, files: tuple[IncomingFile, ...]
    ) -> tuple[int, Received, int]:
        """The message in the chat's history and in the inbox, in one transaction."""
        now = datetime.now(UTC)
        with self.service.runtime.transaction() as session:
            message = SandboxMessage(
                chat_id=persona,
                direction="in",
                text=text,
                reply_to=int(reply_to) if reply_to and reply_to.isdigit() else None,
                files=[{"name": f.file_name, "size": f.size, "file_id": f.file_id} for f in files] or None,
                created_at=self.service.runtime.clock.now(),
            )
            session.add(message)
            session.flush()
            key = f"in-{message.id}"
            payload = {
                "persona": persona,
                "name": name,
                "update_key": key,
                "message_id": str(message.id),
                "text": text,
                "reply_to": reply_to,
                "files": [_file_json(f) for f in files],
            }
            received = Received(PLATFORM, key, payload, persona, persona)
            update_id = inbox.store(session, received, now)
            assert update_id is not None  # the key is the new message's own id
            return message.id, received, update_id

    async def download(self, request: Request) -> Response:
        """A file the bot sent to this chat (an exported 通报)."""
        persona = _persona(request)
        outbox_id = _row_id(request.path_params["outbox_id"])
        if outbox_id is None:
            return await self.ui.missing(request, "没有这个文件,或它不是发给您的。")
        path = await self.service.threads.run(self._document_path, persona, outbox_id)
        if path is None:
            return await self.ui.missing(request, "没有这个文件,或它不是发给您的。")
        return FileResponse(path, filename=path.name)

    async def upload(self, request: Request) -> Response:
        """A file this chat's person sent, as kept with their report."""
        persona = _persona(request)
        file_id = str(request.path_params["file_id"])
        found = await self.service.threads.run(self._upload_path, persona, file_id)
        if found is None:
            return await self.ui.missing(request, "没有这个文件,或它不是您发送的。")
        path, name = found
        return FileResponse(path, filename=name)

    def _upload_path(self, persona: str | None, file_id: str) -> tuple[Path, str] | None:
        with self.service.runtime.transaction() as session:
            sent_here = session.scalars(
                select(SandboxMessage.files).where(SandboxMessage.chat_id == persona, SandboxMessage.direction == "in")
            ).all()
            if persona is None or not any(
                isinstance(f, dict) and f.get("file_id") == file_id for files in sent_here for f in files or []
            ):
                return None
            attachment = session.scalar(
                select(Attachment).where(Attachment.platform == PLATFORM, Attachment.file_id == file_id)
            )
            if attachment is None or not Path(attachment.stored_path).is_file():
                return None
            return Path(attachment.stored_path), attachment.file_name

    def _document_path(self, persona: str | None, outbox_id: int) -> Path | None:
        with self.service.runtime.transaction() as session:
            row = session.get(OutboxMessage, outbox_id)
            if row is None or row.platform != PLATFORM or row.chat_id != persona or not row.payload.get("document"):
                return None
            path = Path(row.payload["document"]["path"])
            return path if path.is_file() else None
