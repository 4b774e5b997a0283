"""The office dashboard: checkpoints, the task × state matrix, scorecards, the overdue list, the outbox, bindings.

The office's actions here (urge, accept, return, a new ad-hoc round, invite
codes) call the same core functions as the chat commands.  Every page needs a
signed-in session when sign-in is required (see :mod:`bot.webui`); every form
carries the session's CSRF token.
"""

from __future__ import annotations

import re
import shutil
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import segno
from markupsafe import Markup
from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response

from bot.dashboard_import import ImportPages
from bot.dashboard_outbox import OutboxPages
from bot.dashboard_targets import TargetPages
from bot.webui import FORM_EXPIRED
from core.binding import invite, telegram_link
from core.checkpoints import (
    CheckpointError,
    add_adhoc_checkpoint,
    cancel_checkpoint,
    edit_checkpoint,
    live_checkpoints,
    parse_task_scope,
)
from core.config import PersonRole
from core.conversation import parse_local_datetime
from core.inbox import counts as inbound_counts
from core.inbox import failed_updates
from core.office import export_folder
from core.office_actions import OfficeRefusal, audit_view, decide, overdue_view, resolve_unit, urge, who_view
from core.records import recent_reports
from core.runtime import plan_for_person
from core.tasks import task_label
from jobs.sender import outbox_depth
from storage.models import Checkpoint, Identity
from storage.queries import checkpoint_state_counts

if TYPE_CHECKING:
    from bot.service import Service
    from bot.webui import SessionInfo, WebUI

EXPORT_NAME = re.compile(r"^(?P<key>[^\W_][\w-]{0,39})\.(?P<fmt>xlsx|html|md)$")


def local_path(path: str) -> str:
    """``path`` when it is a path on this site, else the dashboard: a form's ``back`` must not lead away."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path or any(c in path for c in "\r\n"):
        return "/office"
    return path


class Dashboard:
    def __init__(self, service: Service, ui: WebUI) -> None:
        self.service = service
        self.ui = ui
        self.settings = service.settings
        self.m = service.messages
        self.imports = ImportPages(self)
        self.targets = TargetPages(self)
        self.outboxes = OutboxPages(self)

    # --- guards --------------------------------------------------------------

    async def _guard(self, request: Request) -> Response | None:
        if not await self.ui.office_allowed(request):
            return RedirectResponse("/office/login", status_code=303)
        return None

    async def _viewer(self, request: Request) -> int | None:
        """The signed-in person, whose county the pages show (one service may hold a province).

        Passed to the database thread as an argument: a context variable would not reach it.
        """
        return (await self.ui.session(request)).person_id

    def _plan(self, session: Any, viewer: int | None) -> Any:
        return plan_for_person(session, self.settings, viewer)

    async def _guard_form(self, request: Request) -> tuple[Any, Response | None]:
        refused = await self._guard(request)
        if refused is not None:
            return None, refused
        form = await request.form()
        if not await self.ui.csrf_ok(request, form):
            return None, await self.ui.refused(request, FORM_EXPIRED, status=403)
        return form, None

    @staticmethod
    def _actor(info: SessionInfo) -> str:
        if info.person_id is not None:
            return f"web:person:{info.person_id}"
        return f"web:{info.how or 'local'}"

    @staticmethod
    def _back(path: str, message: str, kind: str = "ok") -> RedirectResponse:
        return RedirectResponse(f"{local_path(path)}?flash={quote(message)}&kind={kind}", status_code=303)

    def _refusal_text(self, refusal: OfficeRefusal, missing: str) -> str:
        """A refusal as a web form's answer: what to fill in, not chat syntax (no 用法:/urge …, no 发送 /tasks)."""
        if refusal.code == "usage":
            return missing
        if refusal.code == "unknown_task":
            return f"没有编号为“{refusal.detail}”的任务:县级任务直接写编号(如 22),市级任务写“市3”。"
        return self.m.render("error", code=refusal.code, detail=refusal.detail, **({"limit": ""} | refusal.extra))

    def _flash(self, request: Request) -> dict[str, Any]:
        flash = request.query_params.get("flash", "")[:500]
        kind = request.query_params.get("kind", "ok")
        return {"flash": flash, "flash_kind": kind if kind in ("ok", "warn", "error") else "ok"}

    # --- pages ---------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        if (refused := await self._guard(request)) is not None:
            return refused
        data = await self.service.threads.run(self._overview, await self._viewer(request))
        return await self.ui.page(request, "office.html.j2", **data, **self._flash(request))

    def _overview(self, viewer: int | None) -> dict[str, Any]:
        now = self.service.runtime.clock.now()
        with self.service.runtime.transaction() as session:
            plan = self._plan(session, viewer)
            if plan is None:
                return {"plan": None, "now": now}
            checkpoints = []
            for checkpoint in live_checkpoints(session, plan.id):
                counts = checkpoint_state_counts(session, checkpoint.id)
                total = sum(counts.values())
                answered = counts.get("answered", 0) + counts.get("accepted", 0)
                checkpoints.append(
                    {
                        "key": checkpoint.key,
                        "title": checkpoint.title,
                        "due": checkpoint.due_at,
                        "past": checkpoint.due_at < now,
                        "total": total,
                        "answered": answered,
                        "returned": counts.get("returned", 0),
                        "share": answered / total if total else 0,
                        "document": checkpoint.satisfied_by == "document",
                    }
                )
            overdue = overdue_view(session, self.m, plan, now)
            depth = outbox_depth(session, now)
            unreachable = (
                session.scalar(select(func.count()).select_from(Identity).where(Identity.reachable.is_(False))) or 0
            )
            who = who_view(session, self.settings, self.m, plan)
            return {
                "plan": {"name": plan.name, "year": plan.year, "jurisdiction": plan.jurisdiction.name},
                "now": now,
                "checkpoints": checkpoints,
                "overdue": overdue,
                "depth": depth,
                "queued": sum(p.get("queued", 0) + p.get("sending", 0) for p in depth.values()),
                "failed": sum(
                    p.get("failed", 0) + p.get("unreachable", 0) + p.get("expired", 0) for p in depth.values()
                ),
                "unreachable": unreachable,
                "bound_units": len(who["bound"]),
                "unbound_units": len(who["unbound"]),
                "audit": audit_view(session, self.m),
                "recent": recent_reports(session, self.m, plan),
                # what people sent that still waits to be handled, or could not be
                "inbound": inbound_counts(session),
                "inbound_failed": failed_updates(session, limit=20),
            }

    async def checkpoints(self, request: Request) -> Response:
        if (refused := await self._guard(request)) is not None:
            return refused
        return await self._checkpoints_page(request)

    async def _checkpoints_page(
        self, request: Request, typed: dict[str, str] | None = None, refusal: str = ""
    ) -> Response:
        """The rounds page; after a refused form, with the error and what was typed, to correct and send again."""
        data = await self.service.threads.run(self._overview, await self._viewer(request))
        flash = {"flash": refusal, "flash_kind": "warn"} if refusal else self._flash(request)
        return await self.ui.page(
            request,
            "office_checkpoints.html.j2",
            status_code=400 if refusal else 200,
            typed=typed or {},
            **data,
            **flash,
        )

    async def checkpoint(self, request: Request) -> Response:
        if (refused := await self._guard(request)) is not None:
            return refused
        key = request.path_params["key"]
        notification = await self.service.threads.run(self._notification, key, await self._viewer(request))
        if notification is None:
            return await self.ui.missing(request, "没有这个督查轮次,可能已被撤销,或不属于您所在的地区。")
        editable = await self.service.threads.run(self._editable_round, key, await self._viewer(request))
        return await self.ui.page(
            request, "office_checkpoint.html.j2", n=notification, editable=editable, **self._flash(request)
        )

    def _editable_round(self, key: str, viewer: int | None) -> dict[str, str] | None:
        """An ad-hoc round's fields as its edit form shows them; None for a configured round."""
        with self.service.runtime.transaction() as session:
            plan = self._plan(session, viewer)
            checkpoint = (
                session.scalar(select(Checkpoint).where(Checkpoint.plan_id == plan.id, Checkpoint.key == key))
                if plan is not None
                else None
            )
            if checkpoint is None or checkpoint.source == "config":
                return None
            scope = checkpoint.task_scope
            tasks = (
                scope
                if isinstance(scope, str)
                else ",".join(task_label(annex, int(number)) for annex, number in (k.split("-", 1) for k in scope))
            )
            return {
                "title": checkpoint.title,
                "due": checkpoint.due_at.astimezone(self.settings.tz).strftime("%Y-%m-%dT%H:%M"),
                "tasks": tasks,
            }

    async def do_round_change(self, request: Request) -> Response:
        """Edit or cancel an ad-hoc round from its page."""
        form, refused = await self._guard_form(request)
        if refused is not None:
            return refused
        info = await self.ui.session(request)
        key = request.path_params["key"]
        action = request.path_params["action"]
        if action not in ("edit", "cancel"):
            return await self.ui.missing(request, "没有这个页面。")
        page = f"/office/checkpoint/{quote(key)}"
        try:
            await self.service.threads.run(
                self._round_change, key, action, dict(form), self._actor(info), info.person_id
            )
        except CheckpointError as exc:
            verb = "撤销" if action == "cancel" else "修改"
            return self._back(page, f"无法{verb}:{exc.explain(self.m)}", "warn")
        if action == "cancel":
            return self._back("/office/checkpoints", "已撤销该督查轮次,不再发送提醒;已报送的内容保留。")
        return self._back(page, "已修改督查轮次,修改已记入操作记录。")

    def _round_change(self, key: str, action: str, form: dict[str, Any], actor: str, viewer: int | None) -> None:
        now = self.service.runtime.clock.now()
        with self.service.runtime.transaction() as session:
            plan = self._plan(session, viewer)
            assert plan is not None
            if action == "cancel":
                cancel_checkpoint(
                    session, plan, key, now=now, actor=actor, reason=str(form.get("reason") or "").strip()
                )
                return
            due = str(form.get("due") or "")
            edit_checkpoint(
                session,
                plan,
                key,
                now=now,
                actor=actor,
                title=str(form.get("title") or ""),
                due_at=parse_local_datetime(due.replace("T", " ")[:16], self.settings),
                tasks=parse_task_scope(str(form.get("tasks") or "all")),
            )

    def _notification(self, key: str, viewer: int | None) -> Any:
        from core.notification import build_notification

        with self.service.runtime.transaction() as session:
            plan = self._plan(session, viewer)
            if plan is None:
                return None
            try:
                return build_notification(session, self.settings, plan, key, self.service.runtime.clock.now())
            except ValueError:
                return None

    async def export(self, request: Request) -> Response:
        if (refused := await self._guard(request)) is not None:
            return refused
        match = EXPORT_NAME.match(request.path_params["name"])
        if match is None:
            return await self.ui.missing(request, "没有这个文件:文件名应为 轮次.xlsx、轮次.html 或 轮次.md。")
        path = await self.service.threads.run(self._export, match["key"], match["fmt"], await self._viewer(request))
        if path is None:
            return await self.ui.missing(request, "没有这个督查轮次,可能已被撤销,或不属于您所在的地区。")
        # The HTML 通报 opens in the browser, to read and print; the others are files to keep.
        disposition = "inline" if match["fmt"] == "html" else "attachment"
        return FileResponse(path, filename=path.name, content_disposition_type=disposition)

    def _export(self, key: str, fmt: str, viewer: int | None) -> Any:
        from core.documents import export, file_format, stored_notification

        folder = export_folder(self.settings) / uuid.uuid4().hex[:8]  # one per request: names may repeat
        with self.service.runtime.transaction() as session:
            plan = self._plan(session, viewer)
            if plan is None:
                return None
            # The round's XLSX as the quarter-end job sent it, while no answer changed since.
            stored = stored_notification(
                session,
                self.settings,
                plan,
                None if key == "year" else key,
                file_format(fmt),
                export_folder(self.settings),
            )
            if stored is not None:
                return stored
            folder.mkdir(parents=True, exist_ok=True)
            try:
                return export(
                    session,
                    self.settings,
                    self.m,
                    plan,
                    None if key == "year" else key,
                    file_format(fmt),
                    self.service.runtime.clock.now(),
                    folder,
                )
            except ValueError:
                shutil.rmtree(folder, ignore_errors=True)  # nothing was written for a round that is not there
                return None

    async def people(self, request: Request) -> Response:
        if (refused := await self._guard(request)) is not None:
            return refused
        return await self._people_page(request)

    async def _people_page(self, request: Request, issued: dict[str, str] | None = None) -> Response:
        data = await self.service.threads.run(self._people, await self._viewer(request))
        issued = issued or {k: "" for k in ("code", "unit", "role", "expires", "link", "qr")}
        return await self.ui.page(request, "office_people.html.j2", **data, issued=issued, **self._flash(request))

    def _people(self, viewer: int | None) -> dict[str, Any]:
        with self.service.runtime.transaction() as session:
            plan = self._plan(session, viewer)
            if plan is None:
                return {"bound": [], "unbound": [], "units": []}
            data = who_view(session, self.settings, self.m, plan)
            from storage.models import Unit

            data["units"] = list(
                session.scalars(select(Unit.name).where(Unit.jurisdiction_id == plan.jurisdiction_id).order_by(Unit.id))
            )
            data["roles"] = [(r.value, self.m.label("role", r.value)) for r in PersonRole]
            return data

    async def outbox(self, request: Request) -> Response:
        return await self.outboxes.page(request)

    # --- actions -------------------------------------------------------------

    async def do_urge(self, request: Request) -> Response:
        form, refused = await self._guard_form(request)
        if refused is not None:
            return refused
        info = await self.ui.session(request)
        target = str(form.get("target") or "")
        try:
            result = await self.service.threads.run(self._urge, target, self._actor(info), info.person_id)
        except OfficeRefusal as refusal:
            return self._back(
                str(form.get("back") or "/office"),
                self._refusal_text(refusal, "请填写要催办的单位或任务编号。"),
                "warn",
            )
        self.service.sender.wake()
        text = self.m.render("urge_done", sent=result.sent, unreachable=result.unreachable, nothing=result.nothing)
        return self._back(str(form.get("back") or "/office"), text, "ok" if result.sent else "warn")

    def _urge(self, target: str, actor: str, viewer: int | None) -> Any:
        with self.service.runtime.transaction() as session:
            plan = self._plan(session, viewer)
            assert plan is not None
            return urge(
                session,
                self.m,
                plan,
                target,
                now=self.service.runtime.clock.now(),
                actor=actor,
                key=f"web:{uuid.uuid4().hex}",
            )

    async def do_review(self, request: Request) -> Response:
        form, refused = await self._guard_form(request)
        if refused is not None:
            return refused
        info = await self.ui.session(request)
        decision = "returned" if form.get("decision") == "returned" else "accepted"
        back = str(form.get("back") or "/office")
        try:
            result = await self.service.threads.run(
                self._review,
                str(form.get("task") or ""),
                str(form.get("unit") or ""),
                decision,
                str(form.get("reason") or ""),
                info,
                bool(form.get("confirm")),
            )
        except OfficeRefusal as refusal:
            if refusal.code == "confirm_return":
                return self._back(
                    back,
                    f"{refusal.detail} 的报送已审核通过。退回将撤销“通过”(首次报送时间和按时情况保留):"
                    "请填写退回原因,勾选“确认撤销通过并退回”后再提交。",
                    "warn",
                )
            return self._back(back, self._refusal_text(refusal, "退回需要填写原因。"), "warn")
        self.service.sender.wake()
        text = self.m.render(
            "review_done",
            decision=result.decision,
            task={"label": form.get("task")},
            unit=result.unit.name,
            checkpoint=result.checkpoint_title,
            reason=result.reason,
            notified=result.notified,
        )
        return self._back(back, text)

    def _review(
        self, task: str, unit: str, decision: str, reason: str, info: SessionInfo, confirmed: bool = False
    ) -> Any:
        with self.service.runtime.transaction() as session:
            plan = self._plan(session, info.person_id)
            assert plan is not None
            return decide(
                session,
                self.m,
                plan,
                task,
                unit,
                decision,
                reason,
                now=self.service.runtime.clock.now(),
                actor=self._actor(info),
                person_id=info.person_id,
                key=f"web:{uuid.uuid4().hex}",
                confirmed=confirmed,
            )

    async def do_round(self, request: Request) -> Response:
        form, refused = await self._guard_form(request)
        if refused is not None:
            return refused
        info = await self.ui.session(request)
        typed = {name: str(form.get(name) or "") for name in ("key", "title", "due", "tasks", "document")}
        try:
            key = await self.service.threads.run(
                self._round,
                str(form.get("key") or "").strip(),
                str(form.get("due") or ""),
                str(form.get("tasks") or "all"),
                str(form.get("title") or ""),
                bool(form.get("document")),
                self._actor(info),
                info.person_id,
            )
        except CheckpointError as exc:
            return await self._checkpoints_page(request, typed, f"无法新增:{exc.explain(self.m)}")
        return self._back(f"/office/checkpoint/{quote(key)}", "已新增督查轮次,提醒将按升级规则自动发出。")

    def _round(self, key: str, due: str, tasks: str, title: str, document: bool, actor: str, viewer: int | None) -> str:
        now = self.service.runtime.clock.now()
        with self.service.runtime.transaction() as session:
            plan = self._plan(session, viewer)
            assert plan is not None
            checkpoint = add_adhoc_checkpoint(
                session,
                plan,
                key=key,
                title=title,
                due_at=parse_local_datetime(due.replace("T", " ")[:16], self.settings),
                now=now,
                tasks=parse_task_scope(tasks),
                satisfied_by="document" if document else "status",
                actor=actor,
            )
            return checkpoint.key

    async def do_invite(self, request: Request) -> Response:
        form, refused = await self._guard_form(request)
        if refused is not None:
            return refused
        info = await self.ui.session(request)
        role = str(form.get("role") or "liaison")
        unit_name = str(form.get("unit") or "")
        try:
            issued = await self.service.threads.run(self._invite, unit_name, role, self._actor(info), info.person_id)
        except OfficeRefusal as refusal:
            text = self._refusal_text(refusal, "请选择单位。")
            return self._back("/office/people", text, "warn")
        if issued is None:
            return self._back("/office/people", f"未知单位或角色:{unit_name}", "warn")
        code, unit, expires = issued
        link = telegram_link(self.settings, code) or ""
        # Shown in this answer only: a code in a redirect's URL would sit in the history and the logs.
        shown = {"code": code, "unit": unit, "role": role, "expires": expires, "link": link, "qr": qr_svg(link)}
        return await self._people_page(request, shown)

    def _invite(self, unit_name: str, role: str, actor: str, viewer: int | None) -> tuple[str, str, str] | None:
        with self.service.runtime.transaction() as session:
            plan = self._plan(session, viewer)
            if plan is not None:
                unit_name = resolve_unit(session, plan, unit_name).name
            issued = invite(
                session,
                self.settings,
                unit_name,
                role,
                now=self.service.runtime.clock.now(),
                created_by=actor,
                plan=plan,
            )
            return (issued.code, issued.unit.name, self.m.local(issued.expires_at)) if issued else None


def qr_svg(text: str) -> Markup:
    """``text`` as a QR code, an inline SVG to scan from the screen (empty for no text)."""
    if not text:
        return Markup("")
    return Markup(segno.make(text, error="m").svg_inline(scale=4, title="Telegram 绑定二维码"))
