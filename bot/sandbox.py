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
import uuid
from collections import defaultdict
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
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

from core.binding import invite
from core.config import PersonRole
from core.conversation import Incoming, IncomingFile, file_refusal
from core.reporting import StagedFile
from core.runtime import current_plan
from jobs.sender import Delivered, OutgoingRow, SendLimits
from storage.models import OutboxMessage, SandboxMessage, Unit
from storage.queries import active_bindings, find_identity
from storage.threads import DatabaseThreads

if TYPE_CHECKING:
    from bot.service import Service
    from bot.webui import WebUI
    from core.runtime import Runtime

PLATFORM = "sandbox"
PERSONA_COOKIE = "duban_sandbox"


class SandboxHub:
    """Wakes the browsers watching a chat when the bot writes to it."""

    def __init__(self) -> None:
        self._listeners: dict[str, set[asyncio.Queue[int]]] = defaultdict(set)

    def publish(self, chat_id: str, message_id: int) -> None:
        for queue in list(self._listeners.get(chat_id, ())):
            queue.put_nowait(message_id)

    async def listen(self, chat_id: str) -> AsyncGenerator[int, None]:
        queue: asyncio.Queue[int] = asyncio.Queue()
        self._listeners[chat_id].add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._listeners[chat_id].discard(queue)


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
        now = datetime.now(UTC)
        files = [{"name": payload["document"]["file_name"], "outbox_id": row.id}] if payload.get("document") else None
        with self.runtime.transaction() as session:
            edit_of = payload.get("edit_of")
            if edit_of and str(edit_of).isdigit():
                existing = session.get(SandboxMessage, int(edit_of))
                if existing is not None and existing.chat_id == row.chat_id:
                    existing.text = payload["text"]
                    existing.buttons = payload.get("buttons")
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


def _persona(request: Request) -> str | None:
    value = request.cookies.get(PERSONA_COOKIE, "")
    return value if value.startswith("sb-") and len(value) <= 40 else None


def _message_json(message: SandboxMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "direction": message.direction,
        "text": message.text,
        "buttons": message.buttons or [],
        "reply_to": message.reply_to,
        "files": message.files or [],
        "at": message.created_at.isoformat(),
        "edited": message.edited_at is not None,
    }


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
            messages=messages,
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
            return [_message_json(m) for m in rows]

    async def fragment(self, request: Request) -> Response:
        """One message as HTML, for the page to insert or replace when the event stream names it."""
        persona = _persona(request)
        message_id = int(request.path_params["message_id"])
        message = await self.service.threads.run(self._one, persona, message_id)
        if message is None:
            return PlainTextResponse("", status_code=404)
        return HTMLResponse(self.ui.env.get_template("sandbox_message.html.j2").render(m=message))

    async def fragments(self, request: Request) -> Response:
        """Every message after ``after``, as HTML: what the page missed before its event stream opened."""
        persona = _persona(request)
        if persona is None:
            return PlainTextResponse("", status_code=401)
        after = int(request.query_params.get("after", "0") or 0)
        rows = await self.service.threads.run(self._history, persona, after)
        template = self.ui.env.get_template("sandbox_message.html.j2")
        return HTMLResponse("".join(template.render(m=m) for m in rows if m["id"] > after))

    def _one(self, persona: str | None, message_id: int) -> dict[str, Any] | None:
        with self.service.runtime.transaction() as session:
            message = session.get(SandboxMessage, message_id)
            if message is None or message.chat_id != persona:
                return None
            return _message_json(message)

    async def events(self, request: Request) -> Response:
        persona = _persona(request)
        if persona is None:
            return PlainTextResponse("no persona", status_code=401)

        async def stream() -> AsyncIterator[bytes]:
            yield b": connected\n\n"
            listener = self.hub.listen(persona)
            while True:
                try:
                    message_id = await asyncio.wait_for(anext(listener), 15)
                except TimeoutError:
                    if await request.is_disconnected():
                        break
                    yield b": keep-alive\n\n"
                    continue
                yield f"data: {json.dumps({'id': message_id})}\n\n".encode()
            await listener.aclose()

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

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
        if upload is not None and hasattr(upload, "filename") and upload.filename:
            files = (await self._stage(persona, upload),)
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
        handled = await self.service.runner.handle(
            Incoming(
                platform=PLATFORM,
                user_id=persona,
                chat_id=persona,
                update_key=f"press-{uuid.uuid4().hex}",
                callback=data,
                button_message_id=message_id or None,
            ),
        )
        self.service.sender.wake()
        return JSONResponse({"ok": True, "toast": handled.toast})

    async def _stage(self, persona: str, upload: Any) -> IncomingFile:
        """Stream an upload to the staging folder, stopping at the size cap (nothing kept over it)."""
        name = Path(upload.filename).name[:200]
        limit = self.settings.uploads.max_bytes
        declared = IncomingFile(file_id=f"sandbox-{uuid.uuid4().hex}", file_name=name, size=0)
        if file_refusal(self.settings, declared):  # wrong type: don't even read it
            return declared
        target = self.service.conversation.staging_dir() / f"{uuid.uuid4().hex}{Path(name).suffix}"
        size = 0
        with target.open("wb") as handle:
            while chunk := await upload.read(1 << 16):
                size += len(chunk)
                if size > limit:
                    break
                handle.write(chunk)
        if size > limit:
            target.unlink(missing_ok=True)
            return IncomingFile(declared.file_id, name, size)
        staged = StagedFile(
            file_name=name,
            size=size,
            mime_type=getattr(upload, "content_type", "") or "",
            file_id=declared.file_id,
            file_unique_id=declared.file_id,
            staged_path=target,
            sha256=await asyncio.to_thread(StagedFile.digest, target),
            platform=PLATFORM,
        )
        return IncomingFile(declared.file_id, name, size, staged.mime_type, declared.file_id, staged)

    async def _say(
        self, persona: str, name: str, text: str, *, reply_to: str | None = None, files: tuple[IncomingFile, ...] = ()
    ) -> None:
        message_id = await self.service.threads.run(self._record_in, persona, text, reply_to, files)
        self.hub.publish(persona, message_id)
        await self.service.runner.handle(
            Incoming(
                platform=PLATFORM,
                user_id=persona,
                chat_id=persona,
                update_key=f"in-{message_id}",
                message_id=str(message_id),
                text=text,
                reply_to=reply_to,
                files=files,
                display_name=name,
            ),
        )
        self.service.sender.wake()

    def _record_in(self, persona: str, text: str, reply_to: str | None, files: tuple[IncomingFile, ...]) -> int:
        with self.service.runtime.transaction() as session:
            message = SandboxMessage(
                chat_id=persona,
                direction="in",
                text=text,
                reply_to=int(reply_to) if reply_to and reply_to.isdigit() else None,
                files=[{"name": f.file_name, "size": f.size} for f in files] or None,
                created_at=datetime.now(UTC),
            )
            session.add(message)
            session.flush()
            return message.id

    async def download(self, request: Request) -> Response:
        """A file the bot sent to this chat (an exported 通报)."""
        persona = _persona(request)
        outbox_id = int(request.path_params["outbox_id"])
        path = await self.service.threads.run(self._document_path, persona, outbox_id)
        if path is None:
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(path, filename=path.name)

    def _document_path(self, persona: str | None, outbox_id: int) -> Path | None:
        with self.service.runtime.transaction() as session:
            row = session.get(OutboxMessage, outbox_id)
            if row is None or row.platform != PLATFORM or row.chat_id != persona or not row.payload.get("document"):
                return None
            path = Path(row.payload["document"]["path"])
            return path if path.is_file() else None
